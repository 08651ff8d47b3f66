"""Run a fuzz target: with atheris (coverage-guided) if installed, else a seeded smoke fuzz.

    python fuzz/run.py TARGET [libFuzzer args]     # atheris; falls back to --smoke 2000
    python fuzz/run.py --smoke N [--seed S] all    # N mutations per target, no dependencies
    python fuzz/run.py --repro TARGET HEX          # run one input, show the traceback

TARGET is ``parsers``, ``server``, ``client`` or ``all``. The smoke fuzz loads
``fuzz/corpus/<target>/`` (or builds it in memory), runs every seed once unmutated, then
N seeded mutations: bit flips, byte sets, inserted/deleted/duplicated ranges,
truncation, splicing with another seed, and structure-aware edits of record headers
(length, epoch, sequence number, content type, version) and of handshake headers
(type, length, message_seq, fragment offset and length), plus dropping, duplicating,
swapping and borrowing whole records. It stops a target at its first unexpected
exception, prints the reproducer in hex, and exits non-zero (``--keep-going`` collects
every distinct failure instead). ``all`` runs the targets in parallel processes.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Nothing of dtls is imported at module level: atheris must instrument it first.
TARGET_NAMES = ("parsers", "server", "client")
CORPUS_DIR = Path(__file__).resolve().parent / "corpus"

HEADER = 13  # record header
HS_HEADER = 12  # handshake header
INTERESTING = (0, 1, 2, 3, 0x0C, 0x0E, 0x10, 0x14, 0x15, 0x16, 0x17, 0x7F, 0x80, 0xFE, 0xFD, 0xFF)
CONTENT_TYPES = (20, 21, 22, 23)
HANDSHAKE_TYPES = (0, 1, 2, 3, 4, 11, 12, 13, 14, 15, 16, 20)


# -- structure of a datagram ----------------------------------------------------------


def record_offsets(data: bytes | bytearray) -> list[int]:
    """Offsets of the record headers that frame (headers whose length fits)."""
    out, pos = [], 0
    while len(data) - pos >= HEADER:
        length = int.from_bytes(data[pos + 11 : pos + 13], "big")
        if pos + HEADER + length > len(data):
            break
        out.append(pos)
        pos += HEADER + length
    return out


def handshake_offsets(data: bytes | bytearray) -> list[tuple[int, int]]:
    """(record offset, handshake header offset) of every plaintext handshake header."""
    out = []
    for rec in record_offsets(data):
        if data[rec] != 22 or data[rec + 3 : rec + 5] != b"\0\0":
            continue
        end = rec + HEADER + int.from_bytes(data[rec + 11 : rec + 13], "big")
        pos = rec + HEADER
        while end - pos >= HS_HEADER:
            out.append((rec, pos))
            pos += HS_HEADER + int.from_bytes(data[pos + 9 : pos + 12], "big")
    return out


def split_records(data: bytes) -> list[bytes]:
    """The records that frame, as whole byte strings (the unframed tail is dropped)."""
    return [
        data[p : p + HEADER + int.from_bytes(data[p + 11 : p + 13], "big")]
        for p in record_offsets(data)
    ]


def _put(buf: bytearray, pos: int, size: int, value: int) -> None:
    buf[pos : pos + size] = (value % (1 << (8 * size))).to_bytes(size, "big")


def _get(buf: bytearray, pos: int, size: int) -> int:
    return int.from_bytes(buf[pos : pos + size], "big")


def _tweak(rng: random.Random, value: int, size: int) -> int:
    top = (1 << (8 * size)) - 1
    return rng.choice(
        (
            value + 1,
            value - 1,
            value + rng.randint(2, 64),
            value - rng.randint(2, 64),
            0,
            top,
            top - rng.randint(1, 16),
            top >> 1,
            rng.randint(0, top),
            value * 2,
            value // 2,
        )
    ) % (top + 1)


# -- mutators -------------------------------------------------------------------------

Mutator = Callable[[random.Random, bytearray, list[bytes]], None]


def m_bitflip(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    if buf:
        for _ in range(rng.choice((1, 1, 1, 2, 4))):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)


def m_byteset(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    if buf:
        pos = rng.randrange(len(buf))
        buf[pos] = rng.choice(INTERESTING) if rng.random() < 0.5 else rng.randrange(256)


def m_truncate(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    if buf:
        del buf[rng.randrange(len(buf)) :]


def m_chop_front(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    if buf:
        del buf[: rng.randrange(1, min(len(buf), 16) + 1)]


def m_delete(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    if buf:
        pos = rng.randrange(len(buf))
        del buf[pos : pos + rng.randint(1, 16)]


def m_insert(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    pos = rng.randint(0, len(buf))
    buf[pos:pos] = rng.randbytes(rng.randint(1, 16))


def m_duplicate(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    if buf:
        a = rng.randrange(len(buf))
        chunk = buf[a : a + rng.randint(1, 32)]
        pos = rng.randint(0, len(buf))
        buf[pos:pos] = chunk


def m_splice(rng: random.Random, buf: bytearray, corpus: list[bytes]) -> None:
    other = rng.choice(corpus)
    cut = rng.randint(0, len(buf))
    buf[cut:] = other[rng.randint(0, len(other)) :]


def m_append_seed(rng: random.Random, buf: bytearray, corpus: list[bytes]) -> None:
    buf += rng.choice(corpus)


TOKENS = (
    b"\x00",
    b"\x00\x00",
    b"\x00\x01",
    b"\x01\x00",
    b"\xff\xff",
    b"\x00\x17\x00\x00",  # extended_master_secret, empty
    b"\x00\x16\x00\x00",  # encrypt_then_mac, empty
    b"\xff\x01\x00\x01\x00",  # renegotiation_info, empty
    b"\x00\x0b\x00\x02\x01\x00",  # ec_point_formats: uncompressed
    b"\x00\x0a\x00\x04\x00\x02\x00\x1d",  # supported_groups: x25519
    b"\x03\x00\x1d",  # named_curve x25519
    b"\x14\xfe\xfd\x00\x00\x00\x00\x00\x00\x00\x09\x00\x01\x01",  # ChangeCipherSpec
    b"\x15\xfe\xfd\x00\x00\x00\x00\x00\x00\x00\x09\x00\x02\x02\x0a",  # fatal alert
)


def m_token(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    """Put a dictionary token at a random place, at the end, or over the tail."""
    token = rng.choice(TOKENS)
    where = rng.randrange(3)
    if where == 0:
        pos = rng.randint(0, len(buf))
        buf[pos:pos] = token
    elif where == 1:
        buf += token
    else:
        del buf[rng.randint(0, len(buf)) :]
        buf += token


def m_record_field(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    offs = record_offsets(buf)
    if not offs:
        return m_byteset(rng, buf, _c)
    rec = rng.choice(offs)
    which = rng.randrange(6)
    if which == 0:  # length
        _put(buf, rec + 11, 2, _tweak(rng, _get(buf, rec + 11, 2), 2))
    elif which == 1:  # epoch
        _put(buf, rec + 3, 2, rng.choice((0, 1, 2, _get(buf, rec + 3, 2) ^ 1, 0xFFFF)))
    elif which == 2:  # sequence number
        _put(buf, rec + 5, 6, _tweak(rng, _get(buf, rec + 5, 6), 6))
    elif which == 3:
        buf[rec] = rng.choice((*CONTENT_TYPES, rng.randrange(256)))
    elif which == 4:
        _put(buf, rec + 1, 2, rng.choice((0xFEFD, 0xFEFF, 0x0303, 0xFEFC, rng.randrange(65536))))
    else:  # keep the record consistent: change its length and its body together
        length = _get(buf, rec + 11, 2)
        end = rec + HEADER + length
        if rng.random() < 0.5 and length:
            cut = rng.randint(0, length - 1)
            del buf[rec + HEADER + cut : end]
            _put(buf, rec + 11, 2, cut)
        else:
            extra = rng.randbytes(rng.randint(1, 24))
            buf[end:end] = extra
            _put(buf, rec + 11, 2, length + len(extra))
    return None


def m_handshake_field(rng: random.Random, buf: bytearray, _c: list[bytes]) -> None:
    hs = handshake_offsets(buf)
    if not hs:
        return m_record_field(rng, buf, _c)
    rec, pos = rng.choice(hs)
    which = rng.randrange(7)
    if which == 0:
        buf[pos] = rng.choice((*HANDSHAKE_TYPES, rng.randrange(256)))
    elif which == 1:  # message length
        _put(buf, pos + 1, 3, _tweak(rng, _get(buf, pos + 1, 3), 3))
    elif which == 2:  # message_seq
        _put(buf, pos + 4, 2, _tweak(rng, _get(buf, pos + 4, 2), 2))
    elif which == 3:  # fragment offset
        _put(buf, pos + 6, 3, _tweak(rng, _get(buf, pos + 6, 3), 3))
    elif which == 4:  # fragment length
        _put(buf, pos + 9, 3, _tweak(rng, _get(buf, pos + 9, 3), 3))
    elif which == 5:  # split the message in two fragments inside the same record
        length, frag_len = _get(buf, pos + 1, 3), _get(buf, pos + 9, 3)
        body_at = pos + HS_HEADER
        if frag_len >= 2 and _get(buf, pos + 6, 3) == 0 and frag_len == length:
            cut = rng.randint(1, frag_len - 1)
            second = bytearray(buf[pos : pos + HS_HEADER])
            _put(second, 6, 3, cut)
            _put(second, 9, 3, frag_len - cut)
            _put(buf, pos + 9, 3, cut)
            buf[body_at + cut : body_at + cut] = second
            _put(buf, rec + 11, 2, _get(buf, rec + 11, 2) + HS_HEADER)
    else:  # shrink or grow the body, keeping all three lengths consistent
        length, frag_len = _get(buf, pos + 1, 3), _get(buf, pos + 9, 3)
        body_at = pos + HS_HEADER
        if frag_len != length or body_at + frag_len > len(buf):
            return None
        if rng.random() < 0.5 and frag_len:
            cut = rng.randint(0, frag_len - 1)
            del buf[body_at + cut : body_at + frag_len]
            delta = cut - frag_len
        else:
            extra = rng.randbytes(rng.randint(1, 24))
            buf[body_at + frag_len : body_at + frag_len] = extra
            delta = len(extra)
        _put(buf, pos + 1, 3, length + delta)
        _put(buf, pos + 9, 3, frag_len + delta)
        _put(buf, rec + 11, 2, _get(buf, rec + 11, 2) + delta)
    return None


def m_records(rng: random.Random, buf: bytearray, corpus: list[bytes]) -> None:
    recs = split_records(bytes(buf))
    if not recs:
        return m_append_seed(rng, buf, corpus)
    which = rng.randrange(4)
    if which == 0 and len(recs) > 1:
        del recs[rng.randrange(len(recs))]
    elif which == 1:
        i = rng.randrange(len(recs))
        recs.insert(rng.randint(0, len(recs)), recs[i])
    elif which == 2 and len(recs) > 1:
        i, j = rng.sample(range(len(recs)), 2)
        recs[i], recs[j] = recs[j], recs[i]
    else:  # borrow a record from another seed
        donor = split_records(rng.choice(corpus))
        if donor:
            recs.insert(rng.randint(0, len(recs)), rng.choice(donor))
    buf[:] = b"".join(recs)
    return None


MUTATORS: tuple[tuple[Mutator, int], ...] = (
    (m_bitflip, 4),
    (m_byteset, 4),
    (m_truncate, 2),
    (m_chop_front, 1),
    (m_delete, 2),
    (m_insert, 2),
    (m_duplicate, 1),
    (m_splice, 2),
    (m_append_seed, 1),
    (m_record_field, 5),
    (m_handshake_field, 6),
    (m_records, 3),
    (m_token, 2),
)
_FUNCS = [m for m, _w in MUTATORS]
_WEIGHTS = [w for _m, w in MUTATORS]


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        rng.choices(_FUNCS, _WEIGHTS)[0](rng, buf, corpus)
    return bytes(buf[:65507])  # one UDP payload at most


# -- the smoke loop -------------------------------------------------------------------


@dataclass
class Result:
    target: str
    iterations: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, bytes, str]] = field(default_factory=list)  # (key, input, tb)
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures


def _failure_key(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    frame = tb[-1] if tb else None
    where = f"{Path(frame.filename).name}:{frame.lineno}" if frame else "?"
    return f"{type(exc).__name__} at {where}: {str(exc)[:120]}"


def smoke(
    target: str,
    iterations: int,
    seed: int = 0,
    keep_going: bool = False,
    max_seconds: float | None = None,
    corpus: list[bytes] | None = None,
) -> Result:
    """Seeds once each, then ``iterations`` mutations; stops at the first failure."""
    from fuzz import targets
    from fuzz.corpus import load

    fn = targets.TARGETS[target]
    seeds = corpus if corpus is not None else load(target)
    rng = random.Random(f"{target}:{seed}")
    result = Result(target)
    seen: set[str] = set()
    start = time.perf_counter()
    targets.STATS.clear()
    inputs = ((None, s) for s in seeds)
    mutated = ((i, mutate(rng, rng.choice(seeds), seeds)) for i in range(iterations))
    for i, data in itertools.chain(inputs, mutated):
        result.iterations += 1
        try:
            fn(data)
        except Exception as exc:
            key = _failure_key(exc)
            if key not in seen:
                seen.add(key)
                result.failures.append((key, data, traceback.format_exc()))
            if not keep_going:
                break
        if i is not None and max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    result.seconds = time.perf_counter() - start
    result.stats = dict(targets.STATS)
    return result


def _smoke_job(args: tuple[str, int, int, bool, float | None]) -> Result:
    return smoke(*args)


def report(result: Result, verbose: bool = False) -> None:
    status = "ok" if result.ok else f"{len(result.failures)} FAILURE(S)"
    print(f"[{result.target}] {result.iterations} inputs in {result.seconds:.1f} s: {status}")
    if verbose:
        for key, count in sorted(result.stats.items()):
            print(f"    {key}: {count}")
    for key, data, tb in result.failures:
        print(f"  --- {key}")
        print("  " + tb.rstrip().replace("\n", "\n  "))
        print(f"  reproducer ({len(data)} bytes): {data.hex()}")
        print(f"  rerun: python fuzz/run.py --repro {result.target} {data.hex()}")


# -- atheris --------------------------------------------------------------------------


def run_atheris(target: str, libfuzzer_args: list[str]) -> None:
    import atheris  # type: ignore[import-not-found]

    with atheris.instrument_imports():
        import dtls  # noqa: F401  (instrument the engine before the targets import it)
        from fuzz import targets
    assert targets.TARGET_NAMES == TARGET_NAMES
    fn = targets.TARGETS[target]

    def one_input(data: bytes) -> None:
        fn(data)

    dirs = [a for a in libfuzzer_args if not a.startswith("-")]
    args = list(libfuzzer_args)
    if not dirs:
        # libFuzzer writes new inputs to its first corpus directory: keep the committed
        # seeds read-only behind a scratch directory.
        scratch = tempfile.mkdtemp(prefix=f"dtls-fuzz-{target}-")
        print(f"new inputs go to {scratch}; seeds from {CORPUS_DIR / target}")
        args += [scratch, str(CORPUS_DIR / target)]
    from fuzz.corpus import load

    seeds = load(target)

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        # half libFuzzer's own mutations, half ours: ours know the record and handshake
        # headers (a sequence number of 2^48-1 is one step away, not six lucky bytes)
        rng = random.Random(seed)
        if rng.random() < 0.5:
            return bytes(atheris.Mutate(data, max_size))
        return mutate(rng, data or rng.choice(seeds), seeds)[:max_size]

    atheris.Setup([sys.argv[0], *args], one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


# -- command line ---------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=(*TARGET_NAMES, "all"))
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="libFuzzer arguments")
    parser.add_argument("--smoke", type=int, metavar="N", help="N mutations per target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-going", action="store_true", help="collect every failure")
    parser.add_argument("--max-seconds", type=float, help="time limit per target")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--stats", action="store_true", help="print outcome counters")
    parser.add_argument(
        "--repro", action="store_true", help="run TARGET on one input given in hex after it"
    )
    opts = parser.parse_args(argv)

    names = list(TARGET_NAMES) if opts.target == "all" else [opts.target]
    if opts.repro:
        from fuzz import targets

        if len(opts.rest) != 1:
            parser.error("--repro TARGET HEX")
        data = bytes.fromhex(opts.rest[0])
        for name in names:
            targets.TARGETS[name](data)  # let the traceback out
            print(f"[{name}] ok")
        return 0

    if opts.smoke is None:
        try:
            import atheris  # type: ignore[import-not-found]  # noqa: F401
        except ImportError:
            print("atheris is not installed: running the smoke fuzz (--smoke 2000)")
            opts.smoke = 2000
        else:
            if len(names) != 1:
                parser.error("atheris runs one target at a time")
            run_atheris(names[0], opts.rest)
            return 0

    jobs = [(n, opts.smoke, opts.seed, opts.keep_going, opts.max_seconds) for n in names]
    start = time.perf_counter()
    if len(jobs) > 1 and opts.jobs > 1:
        with ProcessPoolExecutor(max_workers=min(opts.jobs, len(jobs))) as pool:
            results = list(pool.map(_smoke_job, jobs))
    else:
        results = [_smoke_job(j) for j in jobs]
    for result in results:
        report(result, opts.stats)
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Run a fuzz target: with atheris (coverage-guided) if installed, else a seeded smoke fuzz.

    python fuzz/run.py TARGET [libFuzzer args]     # atheris; falls back to --smoke 2000
    python fuzz/run.py --atheris --seconds 60 all  # atheris required, each target in turn
    python fuzz/run.py --smoke N [--seed S] all    # N mutations per target, no dependencies
    python fuzz/run.py --repro TARGET HEX          # run one input, show the traceback
    python fuzz/run.py --replay TARGET PATH...     # run files/directories once (coverage)

TARGET is ``parsers``, ``server``, ``client``, ``cid_records``, ``cid``, ``dhe``,
``resume``, ``records13``, ``intake13``, ``hellofrags``, ``acks13``, ``handshake13`` or
``all``. The smoke fuzz loads ``fuzz/corpus/<target>/`` (or builds it in memory), runs
every seed once unmutated, then N seeded mutations (:mod:`fuzz.mutators`): bit flips,
byte sets, inserted/deleted/duplicated ranges, truncation, splicing with another seed,
structure-aware edits of record headers (length, epoch, sequence number, content type,
version) and of handshake headers (type, length, message_seq, fragment offset and
length), dropping, duplicating, swapping and borrowing whole records, edits of the
sequence of datagrams (:mod:`fuzz.inputs`) for the targets whose inputs are sequences,
for ``dhe`` integer edits of its messages' vectors and for ``records13`` and
``intake13`` edits of DTLS 1.3 record headers (``mutators.TARGET_MUTATORS``). It stops a
target at its first unexpected exception, prints the reproducer in hex, and exits
non-zero (``--keep-going`` collects
every distinct failure instead). ``all`` runs the targets in parallel processes.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sys
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Nothing of dtls is imported at module level: atheris must instrument it first.
from fuzz.inputs import SINGLE_INPUT_TARGETS  # noqa: E402
from fuzz.mutators import (  # noqa: E402  (re-exported: tests use run.mutate & co.)
    CONTROLS,
    TARGET_CONTROLS,
    TARGET_MUTATORS,
    handshake_offsets,
    mutate,
    record_offsets,
    split_records,
)

__all__ = ["handshake_offsets", "mutate", "record_offsets", "smoke", "split_records"]

#: as fuzz.corpus.TARGET_NAMES (which imports dtls)
TARGET_NAMES = (
    "parsers",
    "server",
    "client",
    "cid_records",
    "cid",
    "dhe",
    "resume",
    "records13",
    "intake13",
    "hellofrags",
    "acks13",
    "handshake13",
)
CORPUS_DIR = Path(__file__).resolve().parent / "corpus"

# -- memory bound (optional) ----------------------------------------------------------


class MemoryBoundExceeded(AssertionError):
    pass


#: the largest tracemalloc peak of one input so far (bytes), with --max-alloc-mb
PEAK = {"bytes": 0}


def memory_bounded(fn: Callable[[bytes], None], limit_mb: float) -> Callable[[bytes], None]:
    """``fn`` with a tracemalloc check: one input may allocate at most ``limit_mb`` MiB
    at its peak beyond what was live before it (slows the run down about twofold)."""
    limit = int(limit_mb * 1024 * 1024)
    if not tracemalloc.is_tracing():
        tracemalloc.start()

    def bounded(data: bytes) -> None:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn(data)
        peak = tracemalloc.get_traced_memory()[1] - base
        PEAK["bytes"] = max(PEAK["bytes"], peak)
        if peak > limit:
            raise MemoryBoundExceeded(f"one input peaked at {peak / 2**20:.1f} MiB (> {limit_mb})")

    return bounded


# -- the smoke loop -------------------------------------------------------------------


@dataclass
class Result:
    target: str
    iterations: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, bytes, str]] = field(default_factory=list)  # (key, input, tb)
    stats: dict[str, int] = field(default_factory=dict)
    peak: int = 0  # largest tracemalloc peak of one input (with max_alloc_mb)

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
    max_alloc_mb: float | None = None,
    seed_sample: int | None = None,
) -> Result:
    """Seeds once each (or a seeded sample of ``seed_sample`` of them), then
    ``iterations`` mutations of any seed; stops at the first failure."""
    from fuzz import targets
    from fuzz.corpus import load

    fn = targets.TARGETS[target]
    if max_alloc_mb is not None:
        PEAK["bytes"] = 0
        fn = memory_bounded(fn, max_alloc_mb)
    seeds = corpus if corpus is not None else load(target)
    sequences = target not in SINGLE_INPUT_TARGETS
    controls = TARGET_CONTROLS.get(target, CONTROLS)
    extra = TARGET_MUTATORS.get(target, ())
    rng = random.Random(f"{target}:{seed}")
    result = Result(target)
    seen: set[str] = set()
    start = time.perf_counter()
    targets.STATS.clear()
    unmutated = seeds
    if seed_sample is not None and seed_sample < len(seeds):
        unmutated = random.Random(f"{target}:{seed}:sample").sample(seeds, seed_sample)
    inputs = ((None, s) for s in unmutated)
    mutated = (
        (i, mutate(rng, rng.choice(seeds), seeds, sequences, controls, extra))
        for i in range(iterations)
    )
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
    result.peak = PEAK["bytes"] if max_alloc_mb is not None else 0
    return result


def _smoke_job(args: tuple[str, int, int, bool, float | None, None, float | None]) -> Result:
    return smoke(*args)


def report(result: Result, verbose: bool = False) -> None:
    status = "ok" if result.ok else f"{len(result.failures)} FAILURE(S)"
    peak = f", largest peak {result.peak / 2**20:.2f} MiB" if result.peak else ""
    print(f"[{result.target}] {result.iterations} inputs in {result.seconds:.1f} s{peak}: {status}")
    if verbose:
        for key, count in sorted(result.stats.items()):
            print(f"    {key}: {count}")
    for key, data, tb in result.failures:
        print(f"  --- {key}")
        print("  " + tb.rstrip().replace("\n", "\n  "))
        print(f"  reproducer ({len(data)} bytes): {data.hex()}")
        print(f"  rerun: python fuzz/run.py --repro {result.target} {data.hex()}")


def corpus_files(paths: Iterable[str]) -> list[Path]:
    """Files, and the files directly inside directories, sorted by name within each."""
    out: list[Path] = []
    for p in map(Path, paths):
        out += sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
    return out


# -- command line ---------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=(*TARGET_NAMES, "all"))
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="libFuzzer arguments")
    parser.add_argument("--smoke", type=int, metavar="N", help="N mutations per target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-going", action="store_true", help="collect every failure")
    parser.add_argument("--max-seconds", type=float, help="smoke: time limit per target")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--stats", action="store_true", help="print outcome counters")
    parser.add_argument("--atheris", action="store_true", help="fail if atheris is missing")
    parser.add_argument(
        "--seconds", type=int, help="atheris: -max_total_time per target (needed for all)"
    )
    parser.add_argument(
        "--max-alloc-mb",
        type=float,
        help="fail an input whose tracemalloc peak exceeds this many MiB",
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="CHECK",
        help="set aside a named check that fails on a known engine bug (repeatable)",
    )
    parser.add_argument(
        "--repro", action="store_true", help="run TARGET on one input given in hex after it"
    )
    parser.add_argument(
        "--replay", action="store_true", help="run TARGET once on each file or directory after it"
    )
    opts = parser.parse_args(argv)
    if opts.allow:
        # through the environment, read by fuzz.invariants when it is imported (not now:
        # it imports dtls, which atheris must instrument first), also in worker processes
        known = {n for n in os.environ.get("DTLS_FUZZ_ALLOW", "").split(",") if n}
        os.environ["DTLS_FUZZ_ALLOW"] = ",".join(sorted(known | set(opts.allow)))

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
    if opts.replay:
        files = corpus_files(opts.rest)
        corpus = [f.read_bytes() for f in files]
        results = [
            smoke(n, 0, keep_going=True, corpus=corpus, max_alloc_mb=opts.max_alloc_mb)
            for n in names
        ]
        for result in results:
            report(result, opts.stats)
        return 0 if all(r.ok for r in results) else 1

    if opts.smoke is None:
        try:
            import atheris  # type: ignore[import-not-found]  # noqa: F401
        except ImportError:
            if opts.atheris:
                parser.error("--atheris: atheris is not installed (pip install atheris)")
            print("atheris is not installed: running the smoke fuzz (--smoke 2000)")
            opts.smoke = 2000
        else:
            from fuzz import atheris_run

            rest = list(opts.rest)
            if opts.seconds is not None:
                rest.insert(0, f"-max_total_time={opts.seconds}")
            if len(names) != 1:
                if opts.seconds is None:
                    parser.error("all with atheris: give --seconds (time per target)")
                return atheris_run.run_each(names, rest, opts.seconds, opts.max_alloc_mb)
            atheris_run.run(names[0], rest, opts.max_alloc_mb)
            return 0

    jobs = [
        (n, opts.smoke, opts.seed, opts.keep_going, opts.max_seconds, None, opts.max_alloc_mb)
        for n in names
    ]
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

"""Coverage-guided fuzzing with atheris (libFuzzer for Python): ``python fuzz/run.py TARGET``.

Only the engine (``dtls``) is instrumented: every ``dtls`` module is imported inside
``atheris.instrument_imports(include=["dtls"])``, and it is an error if any was imported
before (it would run uninstrumented, and libFuzzer would fly blind). The harness
(``fuzz``), ``cryptography`` and the standard library are not instrumented, so the
coverage figures (libFuzzer's ``cov``/``ft``) are the engine's alone.

Half of the mutations are libFuzzer's own (with the dictionary ``fuzz/dtls.dict``), half
the structure-aware ones of :mod:`fuzz.mutators` (a custom mutator). Defaults added
unless given: ``-max_len=8192``, ``-dict=fuzz/dtls.dict``, and, without a corpus
directory, a fresh scratch directory for new inputs in front of the read-only
``fuzz/corpus/<target>``. ``-jobs``/``-fork`` work: libFuzzer re-runs
``python fuzz/run.py TARGET`` for its workers.
"""

from __future__ import annotations

import importlib
import pkgutil
import random
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from fuzz.inputs import SINGLE_INPUT_TARGETS
from fuzz.mutators import CONTROLS, TARGET_CONTROLS, TARGET_MUTATORS, mutate

HERE = Path(__file__).resolve().parent
RUN_PY = HERE / "run.py"
CORPUS_DIR = HERE / "corpus"
DICTIONARY = HERE / "dtls.dict"
DEFAULT_MAX_LEN = 8192
#: a target run past its -max_total_time by this much is killed (libFuzzer itself
#: stops at the first input that ends after the deadline)
GRACE_SECONDS = 300


def libfuzzer_args(target: str, args: list[str]) -> list[str]:
    out = list(args)
    flags = [a.split("=", 1)[0] for a in out if a.startswith("-")]
    if "-max_len" not in flags:
        out.insert(0, f"-max_len={DEFAULT_MAX_LEN}")
    if "-dict" not in flags and DICTIONARY.is_file():
        out.insert(0, f"-dict={DICTIONARY}")
    if not [a for a in out if not a.startswith("-")]:
        # libFuzzer writes new inputs to its first corpus directory: keep the committed
        # seeds read-only behind a scratch directory.
        scratch = tempfile.mkdtemp(prefix=f"dtls-fuzz-{target}-")
        print(f"new inputs go to {scratch}; seeds from {CORPUS_DIR / target}", flush=True)
        out += [scratch, str(CORPUS_DIR / target)]
    return out


def instrument_engine() -> None:
    """Import every ``dtls`` module instrumented (and ``fuzz.targets`` with them)."""
    import atheris  # type: ignore[import-not-found]

    early = sorted(m for m in sys.modules if m == "dtls" or m.startswith("dtls."))
    if early:
        raise RuntimeError(f"imported before atheris could instrument them: {early}")
    with atheris.instrument_imports(include=["dtls"]):
        import dtls

        for mod in pkgutil.iter_modules(dtls.__path__):
            if mod.name != "__main__":  # the CLI, which lives in dtlspipe
                importlib.import_module(f"dtls.{mod.name}")
        importlib.import_module("fuzz.targets")


def run(target: str, args: list[str], max_alloc_mb: float | None = None) -> None:
    """Fuzz ``target`` until libFuzzer stops (does not return: libFuzzer exits)."""
    import atheris

    instrument_engine()
    from fuzz import targets
    from fuzz.corpus import load
    from fuzz.run import memory_bounded

    fn = targets.TARGETS[target]
    if max_alloc_mb is not None:
        fn = memory_bounded(fn, max_alloc_mb)
    seeds = load(target)
    sequences = target not in SINGLE_INPUT_TARGETS
    controls = TARGET_CONTROLS.get(target, CONTROLS)
    extra = TARGET_MUTATORS.get(target, ())

    def one_input(data: bytes) -> None:
        try:
            fn(data)
        except BaseException:
            print(f"\nreproducer ({len(data)} bytes): {data.hex()}", file=sys.stderr)
            print(f"rerun: python fuzz/run.py --repro {target} <hex above>", file=sys.stderr)
            raise

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        # half libFuzzer's own mutations, half ours: ours know the record and handshake
        # headers (a sequence number of 2^48-1 is one step away, not six lucky bytes)
        # and the sequence format of fuzz/inputs.py
        rng = random.Random(seed)
        if rng.random() < 0.5:
            return bytes(atheris.Mutate(data, max_size))
        return mutate(rng, data or rng.choice(seeds), seeds, sequences, controls, extra)[:max_size]

    # libFuzzer runs argv[0] through the shell for -jobs/-fork workers: make it a whole
    # command line that lands back here with the same target
    argv0 = f"{shlex.quote(sys.executable)} {shlex.quote(str(RUN_PY))} --atheris"
    if max_alloc_mb is not None:
        argv0 += f" --max-alloc-mb {max_alloc_mb:g}"
    argv0 += f" {target}"
    atheris.Setup([argv0, *libfuzzer_args(target, args)], one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


def run_each(names: list[str], args: list[str], seconds: int, max_alloc_mb: float | None) -> int:
    """Each target in turn, in its own process, ``seconds`` each; non-zero if any failed."""
    if [a for a in args if not a.startswith("-")]:
        raise SystemExit("all: corpus directories would be shared by the targets; name one")
    failed = []
    for name in names:
        cmd = [sys.executable, str(RUN_PY), "--atheris", name, *args]
        if max_alloc_mb is not None:
            cmd[3:3] = ["--max-alloc-mb", f"{max_alloc_mb:g}"]
        print(f"=== {name}: {shlex.join(cmd)}", flush=True)
        proc = subprocess.Popen(cmd)
        try:
            rc = proc.wait(timeout=seconds + GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait(timeout=30)
            print(f"=== {name}: killed after {seconds + GRACE_SECONDS} s", flush=True)
        except BaseException:
            proc.kill()
            proc.wait(timeout=30)
            raise
        print(f"=== {name}: exit status {rc}", flush=True)
        if rc != 0:
            failed.append(name)
    print(f"=== fuzzed {', '.join(names)} for {seconds} s each; failed: {failed or 'none'}")
    return 1 if failed else 0

"""Pick the inputs of a campaign's corpus that add the most coverage over the seed corpus.

    python fuzz/pick_new.py TARGET DIR [--max 15] [--max-size 2048] [--write]

Runs libFuzzer's merge (``python fuzz/run.py --atheris TARGET -merge=1``, atheris needed)
of ``DIR`` into a copy of ``fuzz/corpus/TARGET``, reads the merge control file, and ranks
the inputs that add coverage greedily: each next one is the one adding the most engine
edges (then features, then the smaller) not covered by the seeds and the inputs already
picked. Inputs over ``--max-size`` bytes, and inputs that fail the target with every
check on (a known finding set aside during the campaign), are skipped. ``--write``
stores the picks as ``fuzz/corpus/TARGET/campaign-<date>-<sha1 prefix>.bin`` (kept by
fuzz/corpus.py); without it they are only listed. Names the checks set aside during the
campaign with ``--allow CHECK`` (passed to the merge).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz.run import TARGET_NAMES  # noqa: E402  (imports nothing of dtls)

CORPUS_DIR = ROOT / "fuzz" / "corpus"
MERGE_TIMEOUT = 3600


def merge(target: str, new_dir: Path, work: Path, allow: list[str]) -> Path:
    """Run the merge; the control file it leaves."""
    base = work / "base"
    shutil.copytree(CORPUS_DIR / target, base)
    control = work / "control.txt"
    cmd = [sys.executable, str(ROOT / "fuzz" / "run.py"), "--atheris"]
    cmd += [a for name in allow for a in ("--allow", name)]
    cmd += [target, "-merge=1", f"-merge_control_file={control}", str(base), str(new_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _out, err = proc.communicate(timeout=MERGE_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=30)
        raise SystemExit(f"merge of {new_dir} still running after {MERGE_TIMEOUT} s") from None
    if proc.returncode != 0:
        raise SystemExit(f"merge failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    return control


def rank(control: Path) -> list[tuple[Path, int, int]]:
    """(input, new edges, new features) in greedy order, from a merge control file."""
    lines = control.read_text().splitlines()
    n_files, n_first = int(lines[0]), int(lines[1])
    paths = [Path(p) for p in lines[2 : 2 + n_files]]
    feats: dict[int, set[int]] = {}
    cov: dict[int, set[int]] = {}
    for line in lines[2 + n_files :]:
        kind, _, rest = line.partition(" ")
        if kind in ("FT", "COV"):
            idx, *values = (int(v) for v in rest.split())
            (feats if kind == "FT" else cov)[idx] = set(values)
    seen_f = set().union(*(feats.get(i, set()) for i in range(n_first)))
    seen_c = set().union(*(cov.get(i, set()) for i in range(n_first)))
    left = set(range(n_first, n_files))
    order = []

    def gain(i: int, seen_c: set[int], seen_f: set[int]) -> tuple[int, int, int]:
        size = paths[i].stat().st_size
        return (len(cov.get(i, set()) - seen_c), len(feats.get(i, set()) - seen_f), -size)

    while left:
        best = max(left, key=lambda i: gain(i, seen_c, seen_f))
        edges, features, _ = gain(best, seen_c, seen_f)
        if not edges and not features:
            break
        order.append((paths[best], edges, features))
        seen_f |= feats.get(best, set())
        seen_c |= cov.get(best, set())
        left.discard(best)
    return order


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=TARGET_NAMES)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--max", type=int, default=15)
    parser.add_argument("--max-size", type=int, default=2048)
    parser.add_argument("--allow", action="append", default=[])
    parser.add_argument("--write", action="store_true")
    opts = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="pick-new-") as tmp:
        order = rank(merge(opts.target, opts.dir, Path(tmp), opts.allow))
    os.environ.pop("DTLS_FUZZ_ALLOW", None)  # every check on: picks must pass the smoke test
    from fuzz import targets

    picked = []
    for path, edges, features in order:
        data = path.read_bytes()
        if len(data) > opts.max_size:
            continue
        try:
            targets.TARGETS[opts.target](data)
        except Exception as exc:  # a finding: reported elsewhere, not a seed
            print(f"skip {path.name}: {type(exc).__name__}: {str(exc)[:100]}")
            continue
        picked.append((data, edges, features))
        if len(picked) == opts.max:
            break
    print(f"{len(order)} inputs add coverage over the seeds; picked {len(picked)}:")
    date = time.strftime("%Y%m%d")
    for data, edges, features in picked:
        name = f"campaign-{date}-{hashlib.sha1(data).hexdigest()[:12]}.bin"
        print(f"  {name}: {len(data)} bytes, +{edges} edges, +{features} features")
        if opts.write:
            (CORPUS_DIR / opts.target / name).write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

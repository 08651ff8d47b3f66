"""Reports for the hostile-network matrix (tests/hostile/test_lossy_handshakes.py).

python tests/hostile/lossy_report.py table RUN.md.json [RUN.md.json ...]
    one markdown table (per condition and pairing: handshakes, failures, median and
    worst seconds, most datagrams) over the raw outcomes that LOSSY_REPORT=RUN.md
    wrote next to its table, e.g. several runs merged
python tests/hostile/lossy_report.py trace RECORD --seed SEED [--dtls13] -- RELAY-OPTIONS...
    what the relay did to each datagram of a --record file (the decisions are
    repeated from the seed and the options), e.g. to read a failed cell; --dtls13 for
    a DTLS 1.3 cell whose relay forged records (tests/hostile/impair13.py)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import hostilekit as hk
import relaytrace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    table = sub.add_parser("table", help="merge raw outcomes into one markdown table")
    table.add_argument("runs", nargs="+", type=Path)
    trace = sub.add_parser("trace", help="annotate a --record file")
    trace.add_argument("record", type=Path)
    trace.add_argument("--seed", required=True)
    trace.add_argument(
        "--dtls13", action="store_true", help="the relay was impair13.py (DTLS 1.3 forgeries)"
    )
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    argv, relay_options = argv[:split], argv[split + 1 :]
    args = parser.parse_args(argv)
    if args.command == "table":
        outcomes = [o for run in args.runs for o in json.loads(run.read_text())]
        from test_lossy_handshakes import CONDITION_NAMES

        print(hk.markdown_table(outcomes, CONDITION_NAMES), end="")
        failed = [o for o in outcomes if not o["ok"]]
        for o in failed:
            print(f"\nfailed: {o['cell']} (seed {o['seed']}): {o['error'].splitlines()[0]}")
    else:
        record = relaytrace.read_record(args.record)
        print(relaytrace.annotate(record, args.seed, relay_options, dtls13=args.dtls13))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

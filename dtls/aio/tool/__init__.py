"""``python -m dtls``: an ``openssl s_client``/``s_server``-style interop tool on
:mod:`dtls.aio` (docs/cli-dtls.md), and the impairing relay (docs/hostile-network.md)::

    python -m dtls client --connect HOST:PORT --psk HEX [options]
    python -m dtls server --accept HOST:PORT --psk HEX [options]
    python -m dtls demo
    python -m dtls impair --listen HOST:PORT --connect HOST:PORT [options]

options.py has the command line and its checks, client.py and server.py run the two
roles, sessionfile.py reads and writes --sess-in/--sess-out, report.py makes the status
lines, console.py handles the standard streams, and impair/ is the relay.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from . import impair
from .client import run_client
from .demo import run_demo
from .options import UsageError, make_parser
from .server import run_server

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command: its exit status (2 for bad options, 130 when interrupted)."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["impair"]:
        return impair.main(words[1:], prog="python -m dtls impair")
    args = make_parser().parse_args(words)
    try:
        if args.command == "client":
            return run_client(args)
        if args.command == "server":
            return run_server(args)
        return run_demo()
    except UsageError as exc:
        print(f"python -m dtls: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

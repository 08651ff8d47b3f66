"""The ``dtlspipe`` console script and ``python -m dtlspipe``: a Ctrl-C while the modules
load (cryptography takes a moment) exits quietly, like one later on, instead of printing
a traceback from an import; so does a reader that goes away (``| head``). Another
``dtls`` package in the way is one line on stderr."""

from __future__ import annotations

import os
import sys

from . import require_our_dtls

#: the exit status of a Ctrl-C before the tunnel started (128 + SIGINT, as shells do)
INTERRUPTED = 130


def main() -> int:
    try:
        require_our_dtls()
        from .cli import main as cli_main

        return cli_main()
    except ImportError as exc:
        if "dtlspipe's engine" not in str(exc):
            raise
        print(f"dtlspipe: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:  # `dtlspipe ciphers | head -3`: the reader left, no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # (the interpreter flushes stdout at exit)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""The ``dtlspipe`` console script and ``python -m dtlspipe``: a Ctrl-C while the modules
load (cryptography takes a moment) exits quietly, like one later on, instead of printing
a traceback from an import; so does a reader that goes away (``| head``)."""

from __future__ import annotations

import os
import sys

#: the exit status of a Ctrl-C before the tunnel started (128 + SIGINT, as shells do)
INTERRUPTED = 130


def main() -> int:
    try:
        from .cli import main as cli_main

        return cli_main()
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:  # `dtlspipe ciphers | head -3`: the reader left, no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # (the interpreter flushes stdout at exit)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""``python -m dtls``: the interop tool and the impairing relay. Both live in
:mod:`dtls.aio.tool`, on the I/O layer, so that the engine itself stays free of sockets,
clocks and OS randomness."""

from dtls.aio.tool import main

if __name__ == "__main__":
    raise SystemExit(main())

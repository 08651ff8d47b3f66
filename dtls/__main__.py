"""``python -m dtls``: the interop tool. Its I/O lives in :mod:`dtlspipe.dtls_tool`,
so that the ``dtls`` package itself stays free of sockets, clocks and OS randomness."""

from dtlspipe.dtls_tool import main

if __name__ == "__main__":
    raise SystemExit(main())

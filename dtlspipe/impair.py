"""``python -m dtlspipe.impair``: the old name of the impairing relay, which now lives in
:mod:`dtls.aio.tool.impair` (``python -m dtls impair``, docs/hostile-network.md)."""

from dtls.aio.tool.impair import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m dtlspipe.impair"))

"""``python -m dtlspipe``: the same as the ``dtlspipe`` console script."""

from .entry import main

if __name__ == "__main__":
    raise SystemExit(main())

"""Fixtures for the hostile-network tests (helpers: hostilekit.py, relay: dtls/aio/tool/impair/)."""

from __future__ import annotations

import pytest
from hostilekit import peers  # hostilekit puts tests/interop on sys.path

# fixtures shared with tests/interop and tests/e2e
launcher = peers.launcher


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "hostile: runs peers through the impairing relay (python -m dtls impair)"
    )

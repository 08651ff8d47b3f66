"""Fixtures for the end-to-end tests of the ``dtlspipe`` CLI (helpers: tunnelkit.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tunnelkit import Upstream, peers  # tunnelkit puts tests/interop on sys.path

# fixtures shared with tests/interop
launcher = peers.launcher
pion_bin = peers.pion_bin


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: runs the dtlspipe CLI as separate processes (end to end)"
    )


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """A UDP echo service on 127.0.0.1 (``sink:``/``stream:`` payloads: see Upstream)."""
    service = Upstream()
    try:
        yield service
    finally:
        service.close()

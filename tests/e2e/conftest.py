"""Fixtures for the end-to-end tests of the ``dtlspipe`` CLI (helpers: tunnelkit.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tunnelkit import Launcher, Upstream, peers


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: runs the dtlspipe CLI as separate processes (end to end)"
    )


@pytest.fixture(scope="session")
def pion_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pion/dtls v2 peer of tests/interop, built once (skips/fails without Go+pion)."""
    peers.require_peer("pion")
    return peers.build_pion_peer(tmp_path_factory.mktemp("pionpeer"))


@pytest.fixture
def launcher(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Launcher]:
    """Starts processes for one test; at teardown every process group is killed by PID."""
    pion = request.getfixturevalue("pion_bin") if "pion_bin" in request.fixturenames else None
    launch = Launcher(tmp_path, pion_bin=pion)
    try:
        yield launch
    finally:
        launch.stop_all()
        leftovers = [p.name for p in launch.procs if p.group_alive()]
        assert not leftovers, f"processes survived teardown: {leftovers}"


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """A UDP echo service on 127.0.0.1 (``sink:``/``stream:`` payloads: see Upstream)."""
    service = Upstream()
    try:
        yield service
    finally:
        service.close()

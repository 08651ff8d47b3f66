"""Fixtures for the interop tests (see peers.py for the helpers themselves)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import peers
import pytest


@pytest.fixture(scope="session")
def pion_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pion/dtls v2 peer, built once per session (skips/fails when Go or pion is missing)."""
    peers.require_peer("pion")
    return peers.build_pion_peer(tmp_path_factory.mktemp("pionpeer"))


@pytest.fixture(scope="session")
def gnutls_shim(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """LD_PRELOAD shim for gnutls-cli's ECDHE-PSK crash, or None without a C compiler."""
    return peers.build_gnutls_cli_shim(tmp_path_factory.mktemp("gnutls-shim"))


@pytest.fixture
def launcher(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[peers.Launcher]:
    """Starts peers for one test; at teardown every process group is killed by its PID."""
    pion = request.getfixturevalue("pion_bin") if "pion_bin" in request.fixturenames else None
    shim = request.getfixturevalue("gnutls_shim") if "gnutls_shim" in request.fixturenames else None
    launch = peers.Launcher(tmp_path, pion_bin=pion, gnutls_shim=shim)
    try:
        yield launch
    finally:
        launch.stop_all()
        leftovers = [p.name for p in launch.procs if p.group_alive()]
        assert not leftovers, f"processes survived teardown: {leftovers}"


@pytest.fixture
def openssl() -> None:
    peers.require_peer("openssl")


@pytest.fixture
def gnutls() -> None:
    peers.require_peer("gnutls")

"""Fixtures for the interop tests (see peers.py for the helpers themselves)."""

from __future__ import annotations

from pathlib import Path

import peers
import pytest
from peers import launcher, pion_bin  # noqa: F401 - shared fixtures


@pytest.fixture(scope="session")
def gnutls_shim(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """LD_PRELOAD shim for gnutls-cli's ECDHE-PSK crash, or None without a C compiler."""
    return peers.build_gnutls_cli_shim(tmp_path_factory.mktemp("gnutls-shim"))


@pytest.fixture
def openssl() -> None:
    peers.require_peer("openssl")


@pytest.fixture
def gnutls() -> None:
    peers.require_peer("gnutls")

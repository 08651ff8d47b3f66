"""RFC 5705 keying material exporters on an established connection (interop with
OpenSSL's -keymatexport is in tests/interop)."""

from __future__ import annotations

import pytest
from helpers import assert_no_keys
from test_cid import ADDR, GCM, Pair

from dtls import LocalProtocolError
from dtls.keyschedule import prf
from dtls.suites import ALL_SUITES


@pytest.mark.parametrize("suite", [GCM, next(s for s in ALL_SUITES if s.prf_hash == "sha384")])
def test_both_ends_agree(suite) -> None:
    pair = Pair(None, None, suite=suite).start()
    server = pair.server.connections[ADDR]
    for context in (None, b"", b"ctx"):
        ours = pair.client.export_keying_material(b"EXPERIMENTAL test", 42, context)
        assert ours == server.export_keying_material(b"EXPERIMENTAL test", 42, context)
        assert len(ours) == 42
    no_context = pair.client.export_keying_material(b"EXPERIMENTAL test", 32)
    empty = pair.client.export_keying_material(b"EXPERIMENTAL test", 32, b"")
    other_label = pair.client.export_keying_material(b"EXPERIMENTAL other", 32)
    assert len({no_context, empty, other_label}) == 3  # RFC 5705 §4 keeps them apart
    # the seed, spelled out: client_random + server_random + uint16 length + context
    master = bytes.fromhex(pair.masters[0].split()[2])
    hs = pair.client._hs
    seed = hs.client_random + hs.server_random + b"\x00\x03ctx"
    expected = prf(suite.prf_hash, master, b"EXPERIMENTAL test", seed, 20)
    assert pair.client.export_keying_material(b"EXPERIMENTAL test", 20, b"ctx") == expected


def test_refusals() -> None:
    pair = Pair(None, None)
    with pytest.raises(LocalProtocolError):
        pair.client.export_keying_material(b"EXPERIMENTAL x", 16)  # no handshake yet
    pair.start()
    for label in (b"master secret", b"key expansion", b"client finished"):
        with pytest.raises(LocalProtocolError):
            pair.client.export_keying_material(label, 16)
    for length, context in ((0, None), (65536, None), (16, bytes(65536))):
        with pytest.raises(LocalProtocolError):
            pair.client.export_keying_material(b"EXPERIMENTAL x", length, context)
    pair.client.close()
    with pytest.raises(LocalProtocolError):
        pair.client.export_keying_material(b"EXPERIMENTAL x", 16)
    assert_no_keys(pair.client)

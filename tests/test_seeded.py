"""Seeded handshakes are reproducible byte for byte, for every suite, in both roles.

The digests in ``vectors/seeded_handshakes.json`` pin the exact wire image of a
loss-free handshake plus one application record each way. They were produced by this
implementation (``python tests/test_seeded.py --write``) after its key schedule and
record protection were checked against OpenSSL (``test_vectors.py``) and its handshakes
against OpenSSL, GnuTLS and pion (``tests/interop``). A change to any of them means the
bytes on the wire changed: regenerate only when that is intended.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

import pytest

from dtls import (
    ApplicationData,
    DTLSConfiguration,
    DTLSConnection,
    DTLSServer,
    HandshakeCompleted,
)
from dtls.suites import ALL_SUITES, CipherSuite

GOLDEN = Path(__file__).parent / "vectors" / "seeded_handshakes.json"
PSK = bytes(range(16))
ADDR = ("192.0.2.1", 4444)


def seeded(seed: int):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    return rng.randbytes


def run(suite: CipherSuite, seed: int, hello_verify: bool = True) -> list[bytes]:
    """A loss-free handshake and one record each way; returns every datagram in order."""
    client = DTLSConnection(
        DTLSConfiguration(
            random=seeded(seed), psk=PSK, psk_identity=b"Client_identity", cipher_suites=(suite,)
        ),
        is_client=True,
    )
    server = DTLSServer(
        DTLSConfiguration(
            random=seeded(seed + 1), psk=PSK, cipher_suites=(suite,), hello_verify=hello_verify
        ),
    )
    wire: list[bytes] = []
    client.connect(0.0)
    got: list[object] = []
    for _ in range(8):
        for d in client.datagrams_to_send():
            wire.append(d)
            server.receive_datagram(d, ADDR, 0.0)
        for d, _addr in server.datagrams_to_send():
            wire.append(d)
            client.receive_datagram(d, 0.0)
        while (item := server.next_event()) is not None:
            if isinstance(item[1], ApplicationData):
                server.connections[ADDR].send(item[1].data.upper())
        while (ev := client.next_event()) is not None:
            got.append(ev)
            if isinstance(ev, HandshakeCompleted):
                client.send(b"ping")
    assert any(isinstance(e, HandshakeCompleted) for e in got)
    assert ApplicationData(b"PING") in got
    return wire


def digest(wire: list[bytes]) -> str:
    h = hashlib.sha256()
    for d in wire:
        h.update(len(d).to_bytes(2, "big") + d)
    return h.hexdigest()


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
def test_same_seed_same_bytes(suite: CipherSuite) -> None:
    assert run(suite, 7) == run(suite, 7)
    assert run(suite, 7) != run(suite, 8)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
@pytest.mark.parametrize("hello_verify", [True, False], ids=["cookie", "nocookie"])
def test_golden_wire_image(suite: CipherSuite, hello_verify: bool) -> None:
    golden = json.loads(GOLDEN.read_text())
    assert digest(run(suite, 7, hello_verify)) == golden[f"{suite.name}/{hello_verify}"]


def test_flight_count() -> None:
    wire = run(ALL_SUITES[0], 7, hello_verify=True)
    # CH, HVR, CH, SH..SHD, CKE+CCS+Fin, CCS+Fin, data each way
    assert len(wire) == 8


if __name__ == "__main__" and "--write" in sys.argv:
    GOLDEN.write_text(
        json.dumps(
            {f"{s.name}/{hv}": digest(run(s, 7, hv)) for s in ALL_SUITES for hv in (True, False)},
            indent=1,
            sort_keys=True,
        )
        + "\n"
    )

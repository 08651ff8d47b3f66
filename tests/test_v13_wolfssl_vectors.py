"""wolfSSL 5.9.2's DTLS 1.3 handshakes, read back with the engine's DTLS 1.3 code.

tests/vectors/wolfssl13/ holds handshakes between wolfSSL's own client and server
(recorded by tests/vectors/capture_wolfssl.py): the datagrams, the PSK and their key log.
Our key schedule, binder, record number masks, sequence reconstruction, record
protection, Finished and ACK parsing must open every record and agree with wolfSSL's
secrets and with the plaintexts the capture script (an independent reading written
with ``cryptography`` alone) saved beside them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import v13_capture as capture

from dtls.config import PSK_DHE_KE, PSK_KE

VECTORS = sorted((Path(__file__).parent / "vectors" / "wolfssl13").glob("*.json"))
CONTENT = {"handshake": 22, "alert": 21, "application_data": 23, "ack": 26}


def load(path: Path) -> tuple[dict[str, Any], capture.Decoded]:
    data = json.loads(path.read_text())
    keylog = {k: bytes.fromhex(v) for k, v in data["keylog"][data["client_random"]].items()}
    datagrams = [(d["dir"], bytes.fromhex(d["hex"])) for d in data["datagrams"]]
    return data, capture.decode(bytes.fromhex(data["psk"]), datagrams, keylog)


def test_every_case_is_there() -> None:
    names = {p.stem for p in VECTORS}
    for suite in ("aes128-gcm-sha256", "aes256-gcm-sha384", "chacha20-poly1305-sha256",
                  "aes128-ccm-sha256", "aes128-ccm-8-sha256"):  # fmt: skip
        assert {f"{suite}-psk-ke", f"{suite}-psk-dhe-ke-x25519"} <= names
    assert {"aes128-gcm-sha256-psk-ke-no-hrr", "aes128-gcm-sha256-psk-ke-cid"} <= names


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_capture_opens_with_our_code(path: Path) -> None:
    data, decoded = load(path)
    assert decoded.suite is not None and decoded.suite.code == int(data["suite"]["id"], 16)
    assert decoded.binder_ok, "our binder differs from wolfSSL's"
    assert decoded.finished_ok == {"s2c": True, "c2s": True}
    assert decoded.hrr == data["negotiated"]["hello_retry_request"]
    assert decoded.failed == 0, "a record did not open"
    if "psk-ke" in path.stem and "dhe" not in path.stem:
        assert decoded.psk_mode == PSK_KE
        assert decoded.derived_from_psk, "secrets derived from the PSK differ from the key log"
    else:
        assert decoded.psk_mode == PSK_DHE_KE and decoded.group == 29
    # the same records, in the same order, as the independent reading found
    ours = [(d, e, t, c.hex()) for d, e, t, c in decoded.opened]
    theirs = [(r["dir"], r["epoch"], CONTENT[r["content_type"]], r["plaintext"]) for r in
              data["records"]]  # fmt: skip
    assert ours == theirs
    texts = [c for _, _, t, c in decoded.opened if t == 23]
    assert b"hello wolfssl!" in texts and b"I hear you fa shizzle!" in texts
    # the server acknowledges the client's Finished (RFC 9147 §7): epoch 2, record 0
    assert ("s2c", [(2, 0)]) in decoded.acks


def test_connection_ids_are_framed_per_direction() -> None:
    _, decoded = load(next(p for p in VECTORS if p.stem.endswith("-cid")))
    assert decoded.cids == {"c2s": b"srvcid", "s2c": b"clicid7"}


def test_key_update_moves_both_sides_to_epoch_4() -> None:
    _, decoded = load(next(p for p in VECTORS if p.stem.endswith("-keyupdate")))
    # client -I asks for an update and is answered (RFC 8446 §4.6.3)
    assert decoded.key_updates == [("c2s", True), ("s2c", False)]
    epochs = {(d, e) for d, e, _, _ in decoded.opened}
    assert ("c2s", 4) in epochs and ("s2c", 4) in epochs

"""Our key schedule and record protection against vectors made by others.

- ``tests/vectors/prf.json``: the TLS 1.2 PRF vectors posted to the IETF TLS list (sources
  named in the file).
- ``tests/vectors/openssl/*.json``: whole DTLS 1.2 sessions between OpenSSL 3.0.19's
  s_client and s_server, captured with their key logs (see tests/vectors/README.md). For
  each, our code re-derives the master secret from the PSK (RFC 4279 §2 / RFC 7627 §4 /
  RFC 5246 §8.1), expands the keys (RFC 5246 §6.3), opens every epoch-1 record with our
  record protection, and checks both Finished messages and the application data.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dtls.constants import ContentType, HandshakeType
from dtls.fragment import Reassembler, full_message, parse_fragments
from dtls.keyschedule import (
    extended_master_secret,
    key_block,
    master_secret,
    prf,
    psk_premaster,
    transcript_hash,
    verify_data,
)
from dtls.messages import ClientHello, ServerHello
from dtls.protection import make_protection
from dtls.record import iter_records
from dtls.suites import SUITES_BY_CODE, KeyExchange

VECTORS = Path(__file__).parent / "vectors"
OPENSSL_CASES = sorted((VECTORS / "openssl").glob("*.json"))


@pytest.mark.parametrize(
    "vector", json.loads((VECTORS / "prf.json").read_text())["vectors"], ids=lambda v: v["name"]
)
def test_prf_vectors(vector: dict[str, object]) -> None:
    out = prf(
        str(vector["hash"]),
        bytes.fromhex(str(vector["secret"])),
        str(vector["label"]).encode(),
        bytes.fromhex(str(vector["seed"])),
        int(str(vector["length"])),
    )
    assert out.hex() == vector["output"]


class Session:
    """A captured OpenSSL session, split into its records per direction."""

    def __init__(self, path: Path) -> None:
        self.case = json.loads(path.read_text())
        self.suite = SUITES_BY_CODE[int(self.case["suite"]["id"], 16)]
        self.records = {"c2s": [], "s2c": []}  # type: dict[str, list]
        for datagram in self.case["datagrams"]:
            self.records[datagram["dir"]].extend(iter_records(bytes.fromhex(datagram["hex"])))
        self.messages = self._epoch0_messages()

    def _epoch0_messages(self) -> list[tuple[str, int, int, bytes]]:
        """Handshake messages of epoch 0 in order: (dir, type, message_seq, body)."""
        out = []
        for direction in ("c2s", "s2c"):
            reasm = Reassembler()
            for rec in self.records[direction]:
                if rec.epoch == 0 and rec.content_type == ContentType.handshake:
                    for frag in parse_fragments(rec.fragment) or []:
                        reasm.add(frag)
                    while (msg := reasm.pop()) is not None:
                        out.append((direction, *msg))
        return out

    def transcript(self, upto_cke: bool) -> bytes:
        """RFC 6347 §4.2.6: messages after the HelloVerifyRequest round, in flight order."""
        c2s = [m for m in self.messages if m[0] == "c2s"]
        s2c = [m for m in self.messages if m[0] == "s2c"]
        hellos = [m for m in c2s if m[1] == HandshakeType.client_hello]
        hello = hellos[-1]  # the one with the cookie
        server = [m for m in s2c if m[1] != HandshakeType.hello_verify_request]
        cke = next(m for m in c2s if m[1] == HandshakeType.client_key_exchange)
        parts = [hello, *server, cke]
        return b"".join(full_message(t, seq, body) for _, t, seq, body in parts)


@pytest.mark.parametrize("path", OPENSSL_CASES, ids=lambda p: p.stem)
def test_openssl_session(path: Path) -> None:
    s = Session(path)
    case, suite = s.case, s.suite
    hellos = [m for m in s.messages if m[1] == HandshakeType.client_hello]
    client_random = ClientHello.parse(hellos[-1][3]).random
    server_hello = ServerHello.parse(
        next(m for m in s.messages if m[1] == HandshakeType.server_hello)[3]
    )
    assert client_random.hex() == case["client_random"]
    assert server_hello.random.hex() == case["server_random"]

    master = bytes.fromhex(case["master_secret"])
    if suite.kx is KeyExchange.PSK:
        # Re-derive the master secret ourselves from the PSK.
        premaster = psk_premaster(bytes.fromhex(case["psk"]))
        if case["negotiated"]["extended_master_secret"]:
            session_hash = transcript_hash(suite.prf_hash, s.transcript(upto_cke=True))
            ours = extended_master_secret(suite.prf_hash, premaster, session_hash)
        else:
            ours = master_secret(suite.prf_hash, premaster, client_random, server_hello.random)
        assert ours == master

    keys = key_block(suite, master, client_random, server_hello.random)
    etm = case["negotiated"]["encrypt_then_mac"]
    openers = {
        "c2s": make_protection(suite, keys.client_key, keys.client_iv, keys.client_mac, bytes, etm),
        "s2c": make_protection(suite, keys.server_key, keys.server_iv, keys.server_mac, bytes, etm),
    }
    plaintext: dict[str, list[tuple[int, bytes]]] = {"c2s": [], "s2c": []}
    for direction, records in s.records.items():
        for rec in records:
            if rec.epoch == 1:
                data = openers[direction].open(rec.seq8, rec.content_type, rec.fragment)
                plaintext[direction].append((rec.content_type, data))

    # Finished (RFC 5246 §7.4.9) over the transcript, each side's with our verify_data.
    transcript = s.transcript(upto_cke=True)
    client_fin = plaintext["c2s"][0]
    assert client_fin[0] == ContentType.handshake
    (frag,) = parse_fragments(client_fin[1]) or []
    assert frag.msg_type == HandshakeType.finished
    h = transcript_hash(suite.prf_hash, transcript)
    assert frag.body == verify_data(suite.prf_hash, master, True, h)
    transcript += full_message(HandshakeType.finished, frag.message_seq, frag.body)
    (sfrag,) = parse_fragments(plaintext["s2c"][0][1]) or []
    h = transcript_hash(suite.prf_hash, transcript)
    assert sfrag.body == verify_data(suite.prf_hash, master, False, h)

    app = {
        d: b"".join(p for t, p in plaintext[d] if t == ContentType.application_data)
        for d in plaintext
    }
    assert app["c2s"] == case["client_plaintext"].encode()
    assert app["s2c"] == case["server_plaintext"].encode()


@pytest.mark.parametrize("path", OPENSSL_CASES, ids=lambda p: p.stem)
def test_openssl_messages_reencode(path: Path) -> None:
    """Captured ClientHello/ServerHello re-serialise byte for byte through our codecs."""
    s = Session(path)
    for _, msg_type, _, body in s.messages:
        if msg_type == HandshakeType.client_hello:
            assert ClientHello.parse(body).encode() == body
        elif msg_type == HandshakeType.server_hello:
            assert ServerHello.parse(body).encode() == body


def test_openssl_cases_present() -> None:
    # every suite family and key exchange is represented in the captured vectors
    kinds = {(Session(p).suite.kind, Session(p).suite.kx) for p in OPENSSL_CASES}
    assert len(OPENSSL_CASES) >= 20
    assert len(kinds) >= 6

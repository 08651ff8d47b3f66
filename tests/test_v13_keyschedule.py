"""The DTLS 1.3 key schedule (dtls/v13/keyschedule.py) against published vectors.

RFC 5869 Appendix A checks HKDF itself; RFC 8448 §3 (a TLS 1.3 handshake, label prefix
"tls13 ") checks every stage of the chain, traffic keys and Finished; the DTLS prefix is
checked against wolfSSL's captures in tests/test_v13_wolfssl_vectors.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from hypothesis import given
from hypothesis import strategies as st

from dtls.v13 import keyschedule as ks

VECTORS = json.loads((Path(__file__).parent / "vectors" / "rfc8448_simple_1rtt.json").read_text())
MSG = {k: bytes.fromhex(v) for k, v in VECTORS["messages"].items()}
SEC = {k: bytes.fromhex(v) for k, v in VECTORS["secrets"].items()}
TLS = ks.TLS13_PREFIX


def test_hkdf_rfc5869_case_1() -> None:
    ikm = bytes([0x0B] * 22)
    salt = bytes(range(13))
    info = bytes(range(0xF0, 0xFA))
    prk = ks.hkdf_extract("sha256", salt, ikm)
    assert prk.hex() == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
    okm = ks.hkdf_expand("sha256", prk, info, 42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


@given(
    st.sampled_from(["sha256", "sha384"]),
    st.binary(max_size=80),
    st.binary(max_size=80),
    st.binary(max_size=60),
    st.integers(1, 200),
)
def test_hkdf_matches_cryptography(
    name: str, salt: bytes, ikm: bytes, info: bytes, length: int
) -> None:
    algorithm = hashes.SHA256() if name == "sha256" else hashes.SHA384()
    reference = HKDF(algorithm, length, salt or None, info).derive(ikm)
    assert ks.hkdf_expand(name, ks.hkdf_extract(name, salt, ikm), info, length) == reference
    prk = hashlib.sha256(ikm).digest()
    assert ks.hkdf_expand(name, prk, info, length) == HKDFExpand(algorithm, length, info).derive(
        prk
    )


def test_expand_length_is_bounded() -> None:
    with pytest.raises(ValueError):
        ks.hkdf_expand("sha256", bytes(32), b"", 255 * 32 + 1)
    with pytest.raises(ValueError):
        ks.hkdf_expand("sha256", bytes(32), b"", 0)


def test_hkdf_label_layout() -> None:
    # RFC 8446 §7.1: uint16 length, then label and context, each with a one-byte length
    label = ks.hkdf_label(b"key", b"", 16, ks.DTLS13_PREFIX)
    assert label == b"\x00\x10\x09dtls13key\x00"
    assert ks.hkdf_label(b"key", b"ab", 16, TLS) == b"\x00\x10\x09tls13 key\x02ab"


def transcript(*names: str) -> bytes:
    return hashlib.sha256(b"".join(MSG[n] for n in names)).digest()


def test_rfc8448_simple_handshake() -> None:
    schedule = ks.KeySchedule("sha256", None, TLS)
    assert schedule._secret == SEC["early_secret"]
    assert schedule.derive(b"derived", ks.empty_hash("sha256")) == SEC["derived_early"]

    private = X25519PrivateKey.from_private_bytes(MSG["client_x25519_private"])
    server_hello = MSG["server_hello_payload"]
    # the server's key_share: x25519 (0x001d), 32 bytes, the last extension but one
    at = server_hello.index(bytes.fromhex("001d0020")) + 4
    shared = private.exchange(X25519PublicKey.from_public_bytes(server_hello[at : at + 32]))
    assert shared == SEC["x25519_shared"]

    schedule.advance(shared)
    assert schedule._secret == SEC["handshake_secret"]
    hello_hash = transcript("client_hello_plaintext", "server_hello_payload")
    c_hs = schedule.derive(b"c hs traffic", hello_hash)
    s_hs = schedule.derive(b"s hs traffic", hello_hash)
    assert c_hs == SEC["client_handshake_traffic_secret"]
    assert s_hs == SEC["server_handshake_traffic_secret"]
    keys = ks.traffic_keys("sha256", s_hs, 16, TLS)
    assert (keys.key, keys.iv) == (SEC["server_handshake_key"], SEC["server_handshake_iv"])
    keys = ks.traffic_keys("sha256", c_hs, 16, TLS)
    assert (keys.key, keys.iv) == (SEC["client_handshake_key"], SEC["client_handshake_iv"])
    assert "hidden" in repr(keys) and keys.key.hex() not in repr(keys)

    finished_key = ks.expand_label("sha256", s_hs, b"finished", b"", 32, TLS)
    assert finished_key == SEC["server_finished_key"]
    before_finished = transcript(
        "client_hello_plaintext",
        "server_hello_payload",
        "server_encrypted_extensions",
        "server_certificate_message",
        "server_certificateverify_message",
    )
    verify = schedule.verify_data(s_hs, before_finished)
    assert verify == SEC["server_finished_verify_data"]

    schedule.advance()
    assert schedule._secret == SEC["master_secret"]
    finished_message = b"\x14\x00\x00\x20" + verify  # RFC 8446 §4: type, uint24 length
    after_finished = hashlib.sha256(
        b"".join(
            MSG[n]
            for n in (
                "client_hello_plaintext",
                "server_hello_payload",
                "server_encrypted_extensions",
                "server_certificate_message",
                "server_certificateverify_message",
            )
        )
        + finished_message
    ).digest()
    s_ap = schedule.derive(b"s ap traffic", after_finished)
    assert (
        schedule.derive(b"c ap traffic", after_finished)
        == SEC["client_application_traffic_secret_0"]
    )
    assert s_ap == SEC["server_application_traffic_secret_0"]
    assert schedule.derive(b"exp master", after_finished) == SEC["exporter_master_secret"]
    keys = schedule.keys(s_ap, 16)
    assert (keys.key, keys.iv) == (SEC["server_application_key"], SEC["server_application_iv"])
    with pytest.raises(ValueError):
        schedule.advance()


def test_dtls_prefix_changes_every_secret() -> None:
    # RFC 9147 §5.9: the same inputs under "dtls13" give other secrets
    tls = ks.KeySchedule("sha256", None, TLS)
    dtls = ks.KeySchedule("sha256", None)
    assert tls._secret == dtls._secret  # HKDF-Extract has no label
    empty = ks.empty_hash("sha256")
    assert tls.derive(b"derived", empty) != dtls.derive(b"derived", empty)


def test_binder_key_labels_and_stage() -> None:
    schedule = ks.KeySchedule("sha384", b"\x01" * 48)
    external, resumption = schedule.binder_key(True), schedule.binder_key(False)
    assert len(external) == 48 and external != resumption
    schedule.advance()
    with pytest.raises(ValueError):
        schedule.binder_key()
    assert "hidden" in repr(schedule)


def test_key_update_and_resumption_formulas() -> None:
    secret = bytes(range(32))
    upd = ks.next_traffic_secret("sha256", secret)
    assert upd == ks.expand_label("sha256", secret, b"traffic upd", b"", 32)
    schedule = ks.KeySchedule("sha256", bytes(32))
    assert schedule.next_secret(secret) == upd
    assert schedule.resumption_psk(secret, b"\x00\x01") == ks.expand_label(
        "sha256", secret, b"resumption", b"\x00\x01", 32
    )
    inner = ks.derive_secret("sha256", secret, b"EXPERIMENTAL x", ks.empty_hash("sha256"))
    assert schedule.exporter(secret, b"EXPERIMENTAL x", b"ctx", 20) == ks.expand_label(
        "sha256", inner, b"exporter", hashlib.sha256(b"ctx").digest(), 20
    )


def test_rfc8448_resumption_secret_and_ticket_psk() -> None:
    # RFC 8448 §3: "res master" over ClientHello..client Finished, the ticket's PSK from
    # its nonce 00 00; §4: that PSK's early secret
    master = SEC["master_secret"]
    transcript_hash = SEC["client_finished_transcript_hash"]
    res = ks.derive_secret("sha256", master, b"res master", transcript_hash, TLS)
    assert res == SEC["resumption_master_secret"]
    psk = ks.resumption_psk("sha256", res, b"\x00\x00", TLS)
    assert psk == SEC["resumption_psk_nonce_0000"]
    assert ks.KeySchedule("sha256", psk, TLS)._secret == SEC["resumed_early_secret"]
    # and under DTLS's prefix (RFC 9147 §5.9) another PSK
    assert ks.resumption_psk("sha256", res, b"\x00\x00") != psk

"""RFC 9146 connection IDs in the engine: negotiation, the tls12_cid record for every
suite (checked against records built here by hand from the RFC's formulas), and the
strictness of the receiving side."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from helpers import IDENTITY, PSK, seeded_random
from hypothesis import given
from hypothesis import strategies as st

from dtls import DTLSConfiguration, DTLSConnection, DTLSServer, HandshakeCompleted
from dtls.constants import ContentType
from dtls.errors import BadRecordError
from dtls.events import ApplicationData
from dtls.keyschedule import KeyBlock, key_block
from dtls.protection import cid_prefix
from dtls.record import iter_records, unwrap_inner
from dtls.suites import ALL_SUITES, CipherKind, CipherSuite

ADDR = ("192.0.2.7", 5000)
GCM = next(s for s in ALL_SUITES if s.name == "TLS_PSK_WITH_AES_128_GCM_SHA256")


class Pair:
    """A client and a server endpoint on a fake clock; ``keys`` from the key log."""

    def __init__(
        self,
        client_len: int | None,
        server_len: int | None,
        suite: CipherSuite = GCM,
        rrc: tuple[bool, bool] = (True, True),
        etm: bool = True,
    ) -> None:
        self.masters: list[str] = []
        common = {"psk": PSK, "cipher_suites": (suite,), "encrypt_then_mac": etm}
        self.client = DTLSConnection(
            DTLSConfiguration(
                random=seeded_random(1),
                psk_identity=IDENTITY,
                connection_id_length=client_len,
                return_routability_check=rrc[0],
                keylog=self.masters.append,
                **common,  # type: ignore[arg-type]
            ),
            is_client=True,
        )
        self.server = DTLSServer(
            DTLSConfiguration(
                random=seeded_random(2),
                hello_verify=False,
                connection_id_length=server_len,
                return_routability_check=rrc[1],
                **common,  # type: ignore[arg-type]
            )
        )
        self.suite = suite
        self.address = ADDR
        self.now = 0.0
        self.client_events: list[object] = []
        self.server_events: list[tuple[object, object]] = []
        self.wire_c2s: list[bytes] = []
        self.wire_s2c: list[tuple[bytes, object]] = []

    def pump(self) -> None:
        for _ in range(50):
            out = self.client.datagrams_to_send()
            for datagram in out:
                self.wire_c2s.append(datagram)
                self.server.receive_datagram(datagram, self.address, self.now)
            back = self.server.datagrams_to_send()
            for datagram, address in back:
                self.wire_s2c.append((datagram, address))
                if address == self.address:
                    self.client.receive_datagram(datagram, self.now)
            self.collect()
            if not out and not back:
                return
        raise AssertionError("no quiescence")

    def collect(self) -> None:
        while (event := self.client.next_event()) is not None:
            self.client_events.append(event)
        while (pair := self.server.next_event()) is not None:
            self.server_events.append(pair)

    def start(self) -> Pair:
        self.client.connect(self.now)
        self.pump()
        assert self.client.is_established
        return self

    def done(self, side: str) -> HandshakeCompleted:
        events = self.client_events if side == "client" else [e for _, e in self.server_events]
        return next(e for e in events if isinstance(e, HandshakeCompleted))

    def keys(self) -> KeyBlock:
        master = bytes.fromhex(self.masters[0].split()[2])
        hs = self.client._hs
        return key_block(self.suite, master, hs.client_random, hs.server_random)

    def server_received(self) -> list[bytes]:
        return [e.data for _, e in self.server_events if isinstance(e, ApplicationData)]


@pytest.mark.parametrize(
    ("client_len", "server_len", "client_cid", "server_cid"),
    [
        (None, 8, None, None),  # client does not offer: no CID either way
        (0, None, None, None),  # server does not take part
        (0, 8, b"", 8),  # the Go dtlspipe pair: the client only sends CIDs
        (4, 8, 4, 8),
        (4, 0, 4, b""),
        (0, 0, b"", b""),
    ],
)
def test_negotiation(client_len, server_len, client_cid, server_cid) -> None:
    pair = Pair(client_len, server_len).start()
    client, server = pair.done("client"), pair.done("server")

    def shape(cid: bytes | None) -> object:
        return cid if cid in (None, b"") else len(cid)  # type: ignore[arg-type]

    assert shape(client.connection_id) == client_cid
    assert shape(server.connection_id) == server_cid
    assert client.peer_connection_id == server.connection_id
    assert server.peer_connection_id == client.connection_id
    negotiated = client_cid is not None
    assert client.return_routability_check is negotiated
    assert server.return_routability_check is negotiated
    pair.client.send(b"up")
    pair.pump()
    assert pair.server_received() == [b"up"]
    # RFC 9146 §3: records carry a CID exactly when their receiver asked for one
    assert (pair.wire_c2s[-1][0] == ContentType.tls12_cid) is bool(server_cid)
    pair.server.connections[ADDR].send(b"down")
    pair.pump()
    assert [e.data for e in pair.client_events if isinstance(e, ApplicationData)] == [b"down"]
    assert (pair.wire_s2c[-1][0][0] == ContentType.tls12_cid) is bool(client_cid)


def test_rrc_needs_both_sides() -> None:
    pair = Pair(0, 8, rrc=(True, False)).start()
    assert not pair.done("client").return_routability_check
    pair = Pair(0, 8, rrc=(False, True)).start()
    assert not pair.done("server").return_routability_check


def test_pion_additional_data_vector() -> None:
    """The AEAD additional data of pion/dtls's TestGenerateAEADAdditionalDataCID
    (pkg/crypto/ciphersuite/ciphersuite_test.go): epoch 2, sequence 277, CID 1..8,
    an inner plaintext of 1784 bytes."""
    expected = bytes(
        [255] * 8 + [25, 8, 25, 254, 253, 0, 2, 0, 0, 0, 0, 1, 21, 1, 2, 3, 4, 5, 6, 7, 8, 6, 248]
    )
    aad = cid_prefix(2 << 48 | 277, bytes(range(1, 9))) + (1784).to_bytes(2, "big")
    assert aad == expected


def rfc9146_prefix(epoch: int, seq: int, cid: bytes) -> bytes:
    """RFC 9146 §5, written out field by field, independently of dtls.protection."""
    return (
        b"\xff" * 8
        + bytes([25, len(cid), 25])
        + b"\xfe\xfd"
        + epoch.to_bytes(2, "big")
        + seq.to_bytes(6, "big")
        + cid
    )


def seal_by_hand(
    suite: CipherSuite, keys: KeyBlock, etm: bool, seq: int, cid: bytes, inner: bytes
) -> bytes:
    """A client-to-server tls12_cid record of epoch 1, from the RFCs' formulas."""
    epoch = 1
    prefix = rfc9146_prefix(epoch, seq, cid)
    seq8 = (epoch << 48 | seq).to_bytes(8, "big")
    if suite.kind is CipherKind.CHACHA20:
        nonce = bytes(a ^ b for a, b in zip(keys.client_iv, bytes(4) + seq8, strict=True))
        aad = prefix + len(inner).to_bytes(2, "big")
        body = ChaCha20Poly1305(keys.client_key).encrypt(nonce, inner, aad)
    elif suite.kind is CipherKind.CBC:
        digest = getattr(hashlib, suite.prf_hash)
        iv = bytes(range(16))
        enc = Cipher(algorithms.AES(keys.client_key), modes.CBC(iv)).encryptor()

        def padded(data: bytes) -> bytes:
            pad = 15 - len(data) % 16
            return data + bytes([pad]) * (pad + 1)

        if etm:  # RFC 9146 §5.2: the MAC covers DTLSCiphertext.length, IV and ciphertext
            body = iv + enc.update(padded(inner))
            mac_input = prefix + len(body).to_bytes(2, "big") + body
            body += hmac.new(keys.client_mac, mac_input, digest).digest()
        else:  # §5.1: the MAC covers the inner plaintext's length and the inner plaintext
            mac_input = prefix + len(inner).to_bytes(2, "big") + inner
            mac = hmac.new(keys.client_mac, mac_input, digest).digest()
            body = iv + enc.update(padded(inner + mac))
    else:
        aad = prefix + len(inner).to_bytes(2, "big")
        aead = (
            AESGCM(keys.client_key)
            if suite.kind is CipherKind.GCM
            else AESCCM(keys.client_key, tag_length=suite.tag_len)
        )
        body = seq8 + aead.encrypt(keys.client_iv + seq8, inner, aad)
    head = struct.pack(">BHQ", 25, 0xFEFD, epoch << 48 | seq)
    return head + cid + len(body).to_bytes(2, "big") + body


def open_by_hand(suite: CipherSuite, keys: KeyBlock, etm: bool, record: bytes, cid_len: int):
    """The inner plaintext of a client-to-server tls12_cid record, by hand."""
    epoch_seq = int.from_bytes(record[3:11], "big")
    cid = record[11 : 11 + cid_len]
    body = record[13 + cid_len :]
    prefix = rfc9146_prefix(epoch_seq >> 48, epoch_seq & (2**48 - 1), cid)
    seq8 = epoch_seq.to_bytes(8, "big")
    if suite.kind is CipherKind.CHACHA20:
        nonce = bytes(a ^ b for a, b in zip(keys.client_iv, bytes(4) + seq8, strict=True))
        aad = prefix + (len(body) - 16).to_bytes(2, "big")
        return ChaCha20Poly1305(keys.client_key).decrypt(nonce, body, aad)
    if suite.kind is CipherKind.CBC:
        digest = getattr(hashlib, suite.prf_hash)
        mac_len = hashlib.new(suite.prf_hash).digest_size
        if etm:
            data, tag = body[:-mac_len], body[-mac_len:]
            mac_input = prefix + len(data).to_bytes(2, "big") + data
            assert hmac.new(keys.client_mac, mac_input, digest).digest() == tag
            dec = Cipher(algorithms.AES(keys.client_key), modes.CBC(data[:16])).decryptor()
            plain = dec.update(data[16:])
            return plain[: -plain[-1] - 1]
        dec = Cipher(algorithms.AES(keys.client_key), modes.CBC(body[:16])).decryptor()
        plain = dec.update(body[16:])
        plain = plain[: -plain[-1] - 1]
        inner, tag = plain[:-mac_len], plain[-mac_len:]
        mac_input = prefix + len(inner).to_bytes(2, "big") + inner
        assert hmac.new(keys.client_mac, mac_input, digest).digest() == tag
        return inner
    aead = (
        AESGCM(keys.client_key)
        if suite.kind is CipherKind.GCM
        else AESCCM(keys.client_key, tag_length=suite.tag_len)
    )
    aad = prefix + (len(body) - 8 - suite.tag_len).to_bytes(2, "big")
    return aead.decrypt(keys.client_iv + body[:8], body[8:], aad)


CASES = [(s, True) for s in ALL_SUITES] + [
    (s, False) for s in ALL_SUITES if s.kind is CipherKind.CBC
]


@pytest.mark.parametrize(
    ("suite", "etm"), CASES, ids=[f"{s.name}-{'etm' if e else 'mte'}" for s, e in CASES]
)
def test_records_match_rfc9146_formulas(suite: CipherSuite, etm: bool) -> None:
    pair = Pair(0, 8, suite=suite, etm=etm).start()
    cid = pair.done("server").connection_id
    assert cid is not None and len(cid) == 8
    keys = pair.keys()
    # ours, opened by hand: the inner plaintext is content || real type, no padding
    pair.client.send(b"from the engine")
    record = pair.client.datagrams_to_send()[0]
    assert record[0] == 25 and record[11:19] == cid
    assert open_by_hand(suite, keys, etm, record, 8) == b"from the engine\x17"
    pair.server.receive_datagram(record, ADDR, pair.now)
    # built by hand, with RFC 9146 §4 padding zeros, on both of the server's paths
    seq = int.from_bytes(record[5:11], "big") + 1
    by_hand = seal_by_hand(suite, keys, etm, seq, cid, b"made by hand\x17\0\0\0")
    assert pair.server.receive_application_datagram(by_hand, ADDR, pair.now) == b"made by hand"
    again = seal_by_hand(suite, keys, etm, seq + 1, cid, b"slow path\x17")
    pair.server.receive_datagram(again, ADDR, pair.now)
    pair.collect()
    assert pair.server_received() == [b"from the engine", b"slow path"]


def test_strict_receiver() -> None:
    pair = Pair(0, 8).start()
    keys, cid = pair.keys(), pair.done("server").connection_id
    assert cid is not None
    seq = 50
    wrong_cid = seal_by_hand(GCM, keys, True, seq, bytes(8), b"wrong cid\x17")
    all_zeros = seal_by_hand(GCM, keys, True, seq + 1, cid, b"\0\0\0")
    empty = seal_by_hand(GCM, keys, True, seq + 2, cid, b"")
    for datagram in (wrong_cid, all_zeros, empty):
        assert pair.server.receive_application_datagram(datagram, ADDR, pair.now) is None
        pair.server.receive_datagram(datagram, ADDR, pair.now)
    # a plain application_data record where a CID is agreed (RFC 9146 §3)
    write = pair.client._write_epochs[1]
    write.cid = None
    pair.client.send(b"no cid")
    plain = pair.client.datagrams_to_send()[0]
    assert plain[0] == ContentType.application_data
    assert pair.server.receive_application_datagram(plain, ADDR, pair.now) is None
    pair.collect()
    assert pair.server_received() == []
    conn = pair.server.connections[ADDR]
    assert conn.is_established


def test_cid_record_without_agreement_is_dropped() -> None:
    pair = Pair(None, None).start()
    keys = pair.keys()
    record = seal_by_hand(GCM, keys, True, 9, bytes(8), b"cid\x17")
    pair.server.receive_datagram(record, ADDR, pair.now)
    pair.collect()
    assert pair.server_received() == []


def test_unwrap_inner() -> None:
    assert unwrap_inner(b"abc\x17") == (23, b"abc")
    assert unwrap_inner(b"abc\x15\0\0") == (21, b"abc")
    assert unwrap_inner(b"\x17") == (23, b"")
    for bad in (b"", b"\0", b"\0\0\0"):
        with pytest.raises(BadRecordError):
            unwrap_inner(bad)


plain_or_cid = st.tuples(
    st.sampled_from([20, 21, 22, 23, 25, 27]),
    st.integers(0, 0xFFFF),
    st.integers(0, 2**48 - 1),
    st.binary(max_size=40),
)


@given(st.lists(plain_or_cid, max_size=5), st.integers(1, 20))
def test_framing_with_cids(parts: list[tuple[int, int, int, bytes]], cid_length: int) -> None:
    """RFC 9146 §4: a tls12_cid record's header has the CID (of the receiver's length)
    between the sequence number and the length; other records keep RFC 6347's."""
    cid = bytes(range(1, cid_length + 1))
    datagram = b""
    for content_type, epoch, seq, fragment in parts:
        head = struct.pack(">BHQ", content_type, 0xFEFD, epoch << 48 | seq)
        middle = cid if content_type == 25 else b""
        datagram += head + middle + len(fragment).to_bytes(2, "big") + fragment
    got = [(r.content_type, r.epoch, r.seq, r.fragment) for r in iter_records(datagram, cid_length)]
    assert got == parts
    assert all(
        r.cid == (cid if r.content_type == 25 else b"") for r in iter_records(datagram, cid_length)
    )
    # without a CID length, framing stops at the first tls12_cid record
    first_cid = next((i for i, p in enumerate(parts) if p[0] == 25), len(parts))
    assert len(list(iter_records(datagram))) == first_cid


# -- pion's MAC for CBC records with a CID (see dtls/protection.py, CBCHMAC._pion_mac) --------

CBC_MTE = [s for s in ALL_SUITES if s.kind is CipherKind.CBC]


@pytest.mark.parametrize("suite", CBC_MTE, ids=lambda s: s.name)
def test_pion_form_cbc_cid_records_are_accepted(suite: CipherSuite) -> None:
    """pion hashes the inner plaintext twice into the MAC of a MAC-then-encrypt
    tls12_cid record (hmacCID in pkg/crypto/ciphersuite/cbc.go); a Go dtlspipe client's
    records come that way, so the server takes both forms."""
    pair = Pair(0, 8, suite=suite, etm=False).start()
    keys, cid = pair.keys(), pair.done("server").connection_id
    assert cid is not None
    inner = b"pion form\x17"
    prefix = rfc9146_prefix(1, 40, cid)
    mac_input = prefix + len(inner).to_bytes(2, "big") + inner + inner
    mac = hmac.new(keys.client_mac, mac_input, getattr(hashlib, suite.prf_hash)).digest()
    data = inner + mac
    pad = 15 - len(data) % 16
    enc = Cipher(algorithms.AES(keys.client_key), modes.CBC(bytes(16))).encryptor()
    body = bytes(16) + enc.update(data + bytes([pad]) * (pad + 1))
    record = struct.pack(">BHQ", 25, 0xFEFD, 1 << 48 | 40) + cid + len(body).to_bytes(2, "big")
    assert pair.server.receive_application_datagram(record + body, ADDR, 0.0) == b"pion form"


def test_client_seals_pion_form_only_for_a_pion_looking_server() -> None:
    """The client uses pion's form only when the server sent the hint-less
    ServerKeyExchange that pion-based servers send, granted a CID, did not take RFC 9853's
    check, and a MAC-then-encrypt CBC suite was chosen."""
    from dtls.client_handshake import ClientHandshake
    from dtls.constants import NamedGroup
    from dtls.groups import EphemeralKey
    from dtls.messages import ServerKeyExchange

    cbc = next(s for s in ALL_SUITES if s.name == "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256")
    public = EphemeralKey(NamedGroup.x25519, seeded_random(9)).public
    with_length = ServerKeyExchange(b"", NamedGroup.x25519, public).encode()
    pion_form = with_length[2:]  # no psk_identity_hint length: pion's way without a hint

    def decide(body: bytes, *, rrc: bool = False, etm: bool = False, cid: bytes = b"12345678"):
        conn = DTLSConnection(
            DTLSConfiguration(random=seeded_random(3), psk=PSK, cipher_suites=(cbc,)),
            is_client=True,
        )
        hs = conn._hs
        assert isinstance(hs, ClientHandshake)
        hs.suite, hs.peer_cid, hs.rrc, hs.etm = cbc, cid, rrc, etm
        hs.on_server_key_exchange(body)
        return hs.cid_mac_quirk

    assert decide(pion_form) is True
    assert decide(with_length) is False
    assert decide(pion_form, rrc=True) is False
    assert decide(pion_form, etm=True) is False
    assert decide(pion_form, cid=b"") is False


def test_quirk_seals_what_pion_opens() -> None:
    from dtls.protection import CBCHMAC, cid_prefix

    suite = next(s for s in ALL_SUITES if s.name == "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256")
    key, mac_key = bytes(range(16)), bytes(range(32))
    sealer = CBCHMAC(suite, key, mac_key, seeded_random(1), encrypt_then_mac=False)
    sealer.cid_mac_quirk = True
    prefix = cid_prefix(1 << 48 | 5, b"abcdefgh")
    inner = b"to pion\x17"
    fragment = sealer.seal_with(1 << 48 | 5, prefix, inner)
    dec = Cipher(algorithms.AES(key), modes.CBC(fragment[:16])).decryptor()
    plain = dec.update(fragment[16:])
    plain = plain[: -plain[-1] - 1]
    got_inner, tag = plain[:-32], plain[-32:]
    assert got_inner == inner
    doubled = prefix + len(inner).to_bytes(2, "big") + inner + inner
    assert tag == hmac.new(mac_key, doubled, "sha256").digest()
    # and a plain record from the same object keeps RFC 5246's MAC
    opener = CBCHMAC(suite, key, mac_key, seeded_random(1), encrypt_then_mac=False)
    seq8 = (1 << 48 | 6).to_bytes(8, "big")
    assert opener.open(seq8, 23, sealer.seal(seq8, 23, b"plain")) == b"plain"

"""Read a recorded DTLS 1.3 handshake with the engine's DTLS 1.3 building blocks.

Given the datagrams of a PSK handshake between two other implementations, the PSK and
their key log, :func:`decode` checks every step our code takes on its own: the binder
(RFC 8446 §4.2.11.2), the key schedule (against the key log, and derived from the PSK
when no (EC)DHE was used), record number masks and sequence reconstruction (RFC 9147
§4.2.2-4.2.3), record protection, both Finished messages, and the ACKs (§7).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from dtls.config import PSK_DHE_KE, PSK_KE
from dtls.constants import DTLS1_3
from dtls.fragment import parse_fragments
from dtls.messages import ClientHello, ServerHello, parse_connection_id
from dtls.record import Record
from dtls.recordlayer import RecordLayer
from dtls.v13 import header as h
from dtls.v13 import keyschedule as ks
from dtls.v13 import messages as m
from dtls.v13.epochs import ReadEpoch13
from dtls.v13.protection import Protection13
from dtls.v13.suites import Suite13, suite13_by_code

CLIENT, SERVER = "c2s", "s2c"


@dataclass
class Decoded:
    suite: Suite13 | None = None
    hrr: bool = False
    binder_ok: bool = False
    psk_mode: int | None = None
    group: int | None = None
    derived_from_psk: bool = False
    #: (direction, epoch, content type, content) of every protected record that opened
    opened: list[tuple[str, int, int, bytes]] = field(default_factory=list)
    messages: list[tuple[str, int, bytes]] = field(default_factory=list)
    finished_ok: dict[str, bool] = field(default_factory=dict)
    acks: list[tuple[str, list[tuple[int, int]]]] = field(default_factory=list)
    failed: int = 0
    #: the CID each direction's records carry (RFC 9146 §3 extension, RFC 9147 §9)
    cids: dict[str, bytes] = field(default_factory=dict)
    key_updates: list[tuple[str, bool]] = field(default_factory=list)


def binder_transcript(hash_name: str, earlier: bytes, client_hello: bytes) -> tuple[bytes, bytes]:
    """(transcript hash of Truncate(ClientHello), binder sent): the hello is
    TLS-framed, the binders list is cut from its end (RFC 8446 §4.2.11.2)."""
    hello = ClientHello.parse(client_hello)
    ext = dict(hello.extensions)
    offered = m.parse_offered_psks(ext[m.Ext.pre_shared_key])
    if hello.extensions[-1][0] != m.Ext.pre_shared_key:
        raise AssertionError("pre_shared_key must be the last extension")
    framed = m.tls_message(1, client_hello)
    truncated = framed[: len(framed) - offered.binders_len]
    return hashlib.new(hash_name, earlier + truncated).digest(), offered.binders[0]


def decode(psk: bytes, datagrams: list[tuple[str, bytes]], keylog: dict[str, bytes]) -> Decoded:
    out = Decoded()
    # the receiving record layer of each direction: the engine's one intake
    readers = {CLIENT: RecordLayer(8), SERVER: RecordLayer(8)}
    held: list[tuple[str, Record | h.CipherRecord]] = []
    transcript = b""  # TLS-framed messages (RFC 9147 §5.2), message_hash after an HRR
    pending: dict[tuple[str, int], bytearray] = {}
    schedule: ks.KeySchedule | None = None
    secrets: dict[str, bytes] = {}
    hash_name = "sha256"

    def install(direction: str, epoch: int, secret: bytes) -> None:
        assert out.suite is not None
        keys = ks.traffic_keys(out.suite.hash_name, secret, out.suite.key_len)
        layer = readers[direction]
        layer.start_v13()
        cid = out.cids.get(direction)
        read = ReadEpoch13(epoch, out.suite, Protection13(out.suite, keys), cid)
        held.extend((direction, record) for record in layer.install13(read))

    def on_message(direction: str, msg_type: int, body: bytes) -> None:
        nonlocal transcript, schedule, hash_name
        out.messages.append((direction, msg_type, body))
        framed = m.tls_message(msg_type, body)
        if msg_type == 1:
            cid_ext = dict(ClientHello.parse(body).extensions).get(54)
            if cid_ext is not None:
                out.cids[SERVER] = parse_connection_id(cid_ext)  # the client receives it
            if out.hrr or schedule is None:
                # the binder covers what came before this hello, then its truncation
                suite_guess = suite13_by_code(ClientHello.parse(body).cipher_suites[0])
                assert suite_guess is not None
                hash_name = suite_guess.hash_name
                early = ks.KeySchedule(hash_name, psk)
                digest, sent = binder_transcript(hash_name, transcript, body)
                expected = early.verify_data(early.binder_key(external=True), digest)
                out.binder_ok = hmac.compare_digest(expected, sent)
                schedule = early
            transcript += framed
            return
        if msg_type == 2:
            hello = ServerHello.parse(body)
            ext = dict(hello.extensions)
            assert m.parse_version_selected(ext[m.Ext.supported_versions]) == DTLS1_3
            out.suite = suite13_by_code(hello.cipher_suite)
            assert out.suite is not None
            hash_name = out.suite.hash_name
            if hello.random == m.HRR_RANDOM:
                out.hrr = True
                assert m.Ext.cookie in ext
                # RFC 8446 §4.4.1: the first ClientHello is replaced by its hash
                transcript = m.message_hash(hash_name, transcript) + framed
                return
            transcript += framed
            if 54 in ext:
                out.cids[CLIENT] = parse_connection_id(ext[54])
            out.psk_mode = PSK_DHE_KE if m.Ext.key_share in ext else PSK_KE
            if m.Ext.key_share in ext:
                out.group = m.parse_server_share(ext[m.Ext.key_share])[0]
            assert m.parse_selected_identity(ext[m.Ext.pre_shared_key]) == 0
            digest = hashlib.new(hash_name, transcript).digest()
            if out.psk_mode == PSK_KE:
                assert schedule is not None
                schedule.advance()
                c_hs = schedule.derive(b"c hs traffic", digest)
                s_hs = schedule.derive(b"s hs traffic", digest)
                out.derived_from_psk = (
                    c_hs == keylog.get("CLIENT_HANDSHAKE_TRAFFIC_SECRET", c_hs)
                    and s_hs == keylog.get("SERVER_HANDSHAKE_TRAFFIC_SECRET", s_hs)
                )
            else:
                c_hs = keylog["CLIENT_HANDSHAKE_TRAFFIC_SECRET"]
                s_hs = keylog["SERVER_HANDSHAKE_TRAFFIC_SECRET"]
            secrets.update(c_hs=c_hs, s_hs=s_hs)
            install(SERVER, 2, s_hs)
            install(CLIENT, 2, c_hs)
            return
        if msg_type == 20:
            assert out.suite is not None
            base = secrets["s_hs"] if direction == SERVER else secrets["c_hs"]
            digest = hashlib.new(hash_name, transcript).digest()
            expected = ks.finished_verify_data(hash_name, base, digest)
            out.finished_ok[direction] = hmac.compare_digest(
                expected, m.parse_finished13(body, len(expected))
            )
            transcript += framed
            if direction == SERVER:
                digest = hashlib.new(hash_name, transcript).digest()
                if out.psk_mode == PSK_KE and schedule is not None:
                    schedule.advance()
                    c_ap = schedule.derive(b"c ap traffic", digest)
                    s_ap = schedule.derive(b"s ap traffic", digest)
                    out.derived_from_psk = out.derived_from_psk and (
                        c_ap == keylog.get("CLIENT_TRAFFIC_SECRET_0", c_ap)
                        and s_ap == keylog.get("SERVER_TRAFFIC_SECRET_0", s_ap)
                    )
                    secrets.update(c_ap=c_ap, s_ap=s_ap)
                else:
                    secrets.update(
                        c_ap=keylog["CLIENT_TRAFFIC_SECRET_0"],
                        s_ap=keylog["SERVER_TRAFFIC_SECRET_0"],
                    )
                install(SERVER, 3, secrets["s_ap"])
                install(CLIENT, 3, secrets["c_ap"])
            return
        if msg_type == m.Msg.key_update:
            # RFC 8446 §4.6.3: the sender's next records use the next secret (epoch + 1)
            out.key_updates.append((direction, m.parse_key_update(body)))
            assert out.suite is not None
            name = "c_ap" if direction == CLIENT else "s_ap"
            secrets[name] = ks.next_traffic_secret(out.suite.hash_name, secrets[name])
            epochs = readers[direction].v13
            assert epochs is not None
            install(direction, max(epochs) + 1, secrets[name])
            return
        transcript += framed

    def on_handshake_record(direction: str, fragment: bytes) -> None:
        fragments = parse_fragments(fragment)
        assert fragments is not None
        for frag in fragments:
            key = (direction, frag.message_seq)
            buffer = pending.setdefault(key, bytearray(frag.length))
            buffer[frag.offset : frag.end] = frag.body
            got = seen.setdefault(key, set())
            got.update(range(frag.offset, frag.end))
            if len(got) == frag.length and key not in delivered:
                delivered.add(key)
                on_message(direction, frag.msg_type, bytes(buffer))

    seen: dict[tuple[str, int], set[int]] = {}
    delivered: set[tuple[str, int]] = set()
    def on_opened(direction: str, opened: tuple[int, int, int, bytes]) -> None:
        content_type, epoch, _seq, content = opened
        if epoch == 0:
            if content_type == 22:
                on_handshake_record(direction, content)
            return
        out.opened.append((direction, epoch, content_type, content))
        if content_type == 22:
            on_handshake_record(direction, content)
        elif content_type == h.ACK:
            out.acks.append((direction, m.parse_ack(content)))

    for direction, datagram in datagrams:
        layer = readers[direction]
        layer.start_datagram()
        layer.cid_length = len(out.cids.get(direction, b""))
        for opened in layer.records(datagram, True):
            on_opened(direction, opened)
        if layer.failed_open:
            out.failed += 1
        while held:
            held_direction, record = held.pop(0)
            again = readers[held_direction].take(record, True)
            if again is not None:
                on_opened(held_direction, again)
    return out

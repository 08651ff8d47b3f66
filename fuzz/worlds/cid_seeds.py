"""The seeds of the ``cid`` and ``cid_records`` targets, recorded in the worlds of
:mod:`fuzz.worlds.cid`.

As everywhere in the harness, the worlds are seeded (randomness, a fake clock), so a
datagram recorded here is still *valid* when the target rebuilds the same world: a
recorded ``path_response`` echoes the cookie the rebuilt server draws, a recorded record
opens under the rebuilt keys. Seeds: every datagram of each world's handshake; scripted
roaming (both receive paths, a new host, a NAT rebinding, RFC 9853's checks and a late
``path_response``); single records of every inner type, sealed by either end.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from dtls.constants import DTLS1_2, ContentType, HandshakeType
from dtls.fragment import full_message
from dtls.path import COOKIE_LEN, PATH_CHALLENGE, PATH_DROP
from dtls.protection import cid_prefix
from dtls.record import WriteEpoch
from fuzz.inputs import ADDRESSES, FIRE_TIMER, OTHER_PATH, TO_CLIENT, Step, join, split
from fuzz.worlds.cid import CID_SPECS, SERVER_CID_LENGTH, CidSpec, CidWorld


def _seal_inner(
    write: WriteEpoch, cid: bytes, inner_type: int, content: bytes, padding: int = 0
) -> bytes:
    """A tls12_cid record with any DTLSInnerPlaintext (the engine itself never pads)."""
    epoch_seq = write.epoch << 48 | write.next_seq
    write.next_seq += 1
    assert write.protection is not None
    if inner_type < 0:  # no content type at all: only zeros
        inner = bytes(padding or 1)
    else:
        inner = content + bytes((inner_type,)) + bytes(padding)
    fragment = write.protection.seal_with(epoch_seq, cid_prefix(epoch_seq, cid), inner)
    head = struct.pack(">BHQ", ContentType.tls12_cid, DTLS1_2, epoch_seq)
    return head + cid + len(fragment).to_bytes(2, "big") + fragment


def to_client(*datagrams: bytes, control: int = TO_CLIENT) -> bytes:
    """An input whose datagrams go to the client (the first step, always the server's,
    is empty)."""
    return join([Step(b""), *(Step(d, control) for d in datagrams)])


def cid_seeds(spec: CidSpec) -> Iterator[tuple[str, bytes]]:
    """(name, input) seeds of the ``cid`` target for one spec."""
    name = f"cid-{spec.name}"
    world = CidWorld(spec)
    for i, (direction, d) in enumerate(world.wire):
        yield f"{name}-hs-{i:02d}-{direction}.bin", d if direction == "c2s" else to_client(d)
    yield from _cid_script(spec)
    rrc = world.conn.handshake is not None and world.conn.handshake.return_routability_check
    if rrc:
        yield from _cid_slow_response(spec)
    # single records of every inner type, sealed by the client (and the server)
    write = world.client._write_epochs[1]
    cookie = bytes(range(COOKIE_LEN))
    hello_request = full_message(HandshakeType.hello_request, 5, b"")
    inner = {
        "app-padded": (ContentType.application_data, b"padded", 7),
        "app-empty": (ContentType.application_data, b"", 0),
        "alert-warning": (ContentType.alert, b"\x01\x64", 0),
        "alert-fatal": (ContentType.alert, b"\x02\x28", 0),
        "close-notify": (ContentType.alert, b"\x01\x00", 0),
        "handshake": (ContentType.handshake, hello_request, 0),
        "ccs": (ContentType.change_cipher_spec, b"\x01", 0),
        "path-challenge": (ContentType.return_routability_check, b"\x00" + cookie, 0),
        "path-response": (ContentType.return_routability_check, b"\x01" + cookie, 0),
        "path-drop": (ContentType.return_routability_check, bytes((PATH_DROP,)) + cookie, 0),
        "rrc-short": (ContentType.return_routability_check, b"\x00\x01", 0),
        "unknown-type": (99, b"what", 3),
        "nested-cid": (ContentType.tls12_cid, b"inner", 0),
        "zeros-only": (-1, b"", 9),
    }
    for label, (inner_type, content, padding) in inner.items():
        record = _seal_inner(write, world.cid, inner_type, content, padding)
        yield f"{name}-c2s-{label}.bin", record
        if label in ("path-challenge", "close-notify"):
            # from another address: an answer there, or a close from there
            yield f"{name}-c2s-{label}-roaming.bin", join([Step(b""), Step(record, 1)])
    packed = _seal_inner(write, world.cid, 23, b"packed 1") + _seal_inner(
        write, world.cid, 23, b"packed 2"
    )
    yield f"{name}-c2s-packed.bin", packed
    server_write = world.conn._write_epochs[1]
    for label, content_type, payload in (
        ("path-challenge", ContentType.return_routability_check, bytes((PATH_CHALLENGE,)) + cookie),
        ("hello-request", ContentType.handshake, hello_request),
        ("alert-warning", ContentType.alert, b"\x01\x64"),
        ("close-notify", ContentType.alert, b"\x01\x00"),
    ):
        record = server_write.protect(content_type, payload)
        yield f"{name}-s2c-{label}.bin", to_client(record)
        if content_type == ContentType.return_routability_check:
            yield f"{name}-s2c-{label}-fast.bin", to_client(record, control=TO_CLIENT | OTHER_PATH)


class _Script:
    """Plays steps into a fresh world and records them: the target replays them into an
    identical world, where the recorded records authenticate and cookies match."""

    def __init__(self, spec: CidSpec) -> None:
        self.world = CidWorld(spec)
        self.steps: list[Step] = []

    def play(self, datagram: bytes, control: int) -> None:
        step = Step(datagram, control)
        self.steps.append(step)
        self.world.step(step)

    def client_sends(self, data: bytes) -> bytes:
        self.world.client.send(data)
        (datagram,) = self.world.client.datagrams_to_send()
        return datagram

    def server_sends(self, data: bytes) -> bytes:
        self.world.conn.send(data)
        ((datagram, _),) = self.world.server.datagrams_to_send()
        return datagram

    def challenge_to(self, address: object) -> bytes | None:
        sent = [d for d, to in self.world.server_out if to == address]
        return sent[-1] if sent else None

    def roam(self, index: int, control: int) -> None:
        """The client's next record from ``ADDRESSES[index]``; with RFC 9853 the server's
        path_challenge there, the client's answer, and the answer back from there."""
        self.play(self.client_sends(b"roaming to %d" % index), control)
        challenge = self.challenge_to(ADDRESSES[index])
        if challenge is not None:
            self.play(challenge, TO_CLIENT | index)
            response, to = self.world.client_out[-1]
            assert to == ADDRESSES[index]
            self.play(response, control)


def _cid_script(spec: CidSpec) -> Iterator[tuple[str, bytes]]:
    """The client's data from its address, both paths; roaming to a new host, data from
    there; a NAT rebinding (new port); then the server's data to the client; the whole
    side as one sequence, and the same ending in the client's close_notify."""
    script = _Script(spec)
    script.play(script.client_sends(b"c2s 1"), 0)
    script.play(script.client_sends(b"c2s 2"), OTHER_PATH)
    script.roam(1, OTHER_PATH | 1)
    script.play(script.client_sends(b"c2s from the new host"), 1)
    script.roam(2, 2)
    assert script.world.conn.peer == ADDRESSES[2], f"{spec.name}: the script did not roam"
    # the server's sends draw randomness (CBC IVs): only after every cookie
    script.play(script.server_sends(b"s2c 1"), TO_CLIENT)
    script.play(script.server_sends(b"s2c 2"), TO_CLIENT | OTHER_PATH)
    yield f"cid-{spec.name}-seq-roaming.bin", join(script.steps)
    script.world.client.close()
    (close,) = script.world.client.datagrams_to_send()
    script.play(close, 2)
    yield f"cid-{spec.name}-seq-roaming-close.bin", join(script.steps)


def _cid_slow_response(spec: CidSpec) -> Iterator[tuple[str, bytes]]:
    """A path_response that comes after the challenge's resend time, on each path."""
    for control, label in ((1, "general"), (OTHER_PATH | 1, "fast")):
        script = _Script(spec)
        script.play(script.client_sends(b"c2s 1"), 0)
        script.play(script.client_sends(b"roaming"), control)
        challenge = script.challenge_to(ADDRESSES[1])
        assert challenge is not None
        script.play(challenge, TO_CLIENT | 1)
        response, _ = script.world.client_out[-1]
        script.play(response, control | FIRE_TIMER)
        yield f"cid-{spec.name}-seq-slow-response-{label}.bin", join(script.steps)


def cid_corpus() -> dict[str, bytes]:
    return {name: data for spec in CID_SPECS for name, data in cid_seeds(spec)}


def cid_records_corpus(cid_inputs: dict[str, bytes]) -> dict[str, bytes]:
    """``cid_records`` inputs (the CID length, then a datagram): every datagram of the cid
    corpus with the length its receiver frames with, and a few with another."""
    out: dict[str, bytes] = {}
    for name, data in cid_inputs.items():
        for i, step in enumerate(split(data)):
            if not step.datagram:
                continue
            length = 0 if step.control & TO_CLIENT else SERVER_CID_LENGTH
            out[f"{name[:-4]}-{i:02d}.bin"] = bytes((length,)) + step.datagram
    some = [d for n, d in sorted(out.items()) if d[0] == SERVER_CID_LENGTH][:3]
    for i, d in enumerate(some):
        out[f"cid-records-other-length-{i}.bin"] = bytes((4 + i,)) + d[1:]
    out["cid-records-no-length.bin"] = b"\x00" + some[0][1:]
    out["cid-records-max-length.bin"] = b"\xff" + some[0][1:]
    return out

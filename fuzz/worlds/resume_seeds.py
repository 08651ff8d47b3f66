"""The seeds of the ``resume`` target, recorded in the worlds of :mod:`fuzz.worlds.resume`.

Each world's abbreviated handshake (both ways, and only the client's side), followed by
a fatal alert or close_notify, or by a second client resuming from the same address
(RFC 6347 §4.2.8); the client's last flight with a wrong Finished sealed under the right
keys, a plaintext one, twice, without ChangeCipherSpec, without Finished, reordered;
another client resuming each cached session from another address; a new client's full
handshake; the client's handshake after the sessions expired; the client's ClientHello
edited; the server's resuming ServerHello edited. Recorded in the worlds they are
replayed in, so recorded cookies and Finished messages are still right there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from dtls import DTLSConnection
from dtls.constants import ContentType, ExtensionType, HandshakeType
from dtls.fragment import full_message
from dtls.messages import ClientHello, ServerHello
from dtls.record import encode_record
from dtls.session import SessionState
from fuzz.corpus import CLIENT_SEED
from fuzz.inputs import ADDRESSES, PAUSE, TO_CLIENT, Step, join
from fuzz.worlds.common import frame_message, message_records, replace_message, split_records_of
from fuzz.worlds.resume import (
    RESUME_SPECS,
    SESSION_SPECS,
    ResumeSpec,
    ResumeWorld,
    resume_client_config,
    resume_sessions,
)


class _ResumeScript:
    """Plays steps into a fresh ResumeWorld and records them (as _Script for cid): the
    target replays them into an identical world, where recorded cookies and Finished
    messages are still right."""

    def __init__(self, spec: ResumeSpec) -> None:
        self.world = ResumeWorld(spec)
        self.steps: list[Step] = []

    def play(self, datagram: bytes, control: int = 0) -> None:
        if not self.steps and control:
            self.play(b"")  # an input's first datagram has no control byte (fuzz/inputs.py)
        step = Step(datagram, control)
        self.steps.append(step)
        self.world.step(step)

    def client_flight(self) -> list[bytes]:
        """The world's client's queued datagrams, played from ``ADDR``."""
        out, self.world.to_server = self.world.to_server, []
        for d in out:
            self.play(d)
        return out

    def server_flight(self) -> list[bytes]:
        """The server's queued datagrams for the world's client, played to it."""
        out, self.world.to_client = self.world.to_client, []
        for d in out:
            self.play(d, TO_CLIENT)
        return out

    def handshake(self) -> None:
        """The world's client and the server, flight by flight, until both are quiet."""
        while self.client_flight() or self.server_flight():
            pass

    def hello(self) -> None:
        """The world's client's ClientHello (and cookie exchange) only; the server's
        answer stays queued (ServerHello, ChangeCipherSpec, Finished when it resumes)."""
        self.client_flight()
        if self.world.spec.hello_verify:
            self.server_flight()
            self.client_flight()

    def stranger(self, client: DTLSConnection, index: int, rounds: int = 16) -> None:
        """Another client, from ``ADDRESSES[index]``: its datagrams are steps, the server's
        answers reach it outside the input (no client waits there in the target)."""
        address = ADDRESSES[index]
        seen = len(self.world.s2c[address])
        for _ in range(rounds):
            sent = client.datagrams_to_send()
            for d in sent:
                self.play(d, index)
            answers = self.world.s2c[address][seen:]
            seen += len(answers)
            for d in answers:
                client.receive_datagram(d, self.world.now)
            if not sent and not answers:
                return

    def hello_from(self, hello: ClientHello, index: int) -> None:
        """A ClientHello of our own from ``ADDRESSES[index]``, with the cookie exchange if
        the server asks for it."""
        address = ADDRESSES[index]
        seen = len(self.world.s2c[address])
        self.play(frame_message(HandshakeType.client_hello, 0, hello.encode(), 0), index)
        answers = self.world.s2c[address][seen:]
        hvr = [f.body for d in answers for _r, f in message_records(d, 3)]
        if hvr:
            hello.cookie = hvr[0][3:]
            self.play(frame_message(HandshakeType.client_hello, 1, hello.encode(), 1), index)

    def recorded(self) -> bytes:
        return join(self.steps)


@contextlib.contextmanager
def _offering_any_session() -> Iterator[None]:
    """A client that offers any session of a suite it offers, whatever the extensions
    (as this engine's client did before it checked them, and other clients may): the
    no-EMS session then reaches the server from a real client."""
    from dtls.client_handshake import ClientHandshake

    saved = ClientHandshake._can_offer
    ClientHandshake._can_offer = lambda self, session: (  # type: ignore[method-assign]
        session.cipher_suite in self.config.cipher_suites
    )
    try:
        yield
    finally:
        ClientHandshake._can_offer = saved  # type: ignore[method-assign]


def _first_hello(datagrams: list[bytes]) -> ClientHello:
    for d in datagrams:
        for _r, f in message_records(d, HandshakeType.client_hello):
            return ClientHello.parse(f.body)
    raise AssertionError("no ClientHello")


def _edit_extensions(hello: ClientHello, drop: int | None = None, add: int | None = None) -> None:
    hello.extensions = [(t, v) for t, v in hello.extensions if t != drop]
    if add is not None and all(t != add for t, _ in hello.extensions):
        hello.extensions.append((add, b""))


def _as_noems_client(hello: ClientHello, noems: SessionState) -> None:
    """An old client's hello offering the no-EMS session, as it was made: its suite
    only, without extended master secret or encrypt-then-MAC."""
    hello.session_id = noems.session_id
    _edit_extensions(hello, drop=ExtensionType.extended_master_secret)
    _edit_extensions(hello, drop=ExtensionType.encrypt_then_mac)
    hello.cipher_suites = [noems.cipher_suite.code]


def resume_seeds(spec: ResumeSpec) -> Iterator[tuple[str, bytes]]:
    """(name, input) seeds of the ``resume`` target recorded in the world of ``spec``."""
    name = f"resume-{spec.name}"
    server_states, client_states = resume_sessions()
    offered = SESSION_SPECS[spec.offered]
    EXT = ExtensionType

    # the world's client's abbreviated handshake, both ways, then only its side
    script = _ResumeScript(spec)
    script.handshake()
    assert script.world.client.is_established and script.world.client.handshake.resumed  # type: ignore[union-attr]
    yield f"{name}-seq.bin", script.recorded()
    yield f"{name}-seq-c2s.bin", join(s for s in script.steps if not s.control & TO_CLIENT)
    # ... then a fatal alert from the client (the session must go), or close_notify
    client = script.world.client
    write = client._write_epochs[client._write_epoch]
    for label, alert in (("then-fatal", b"\x02\x0a"), ("then-close", b"\x01\x00")):
        yield f"{name}-seq-{label}.bin", join([*script.steps, Step(write.protect(21, alert))])
    # a second client from the same address resumes the same session (RFC 6347 §4.2.8)
    again = DTLSConnection(resume_client_config(offered, CLIENT_SEED + 7), is_client=True)
    again.connect(script.world.now, client_states[spec.offered])
    script.stranger(again, 0)
    yield f"{name}-seq-second.bin", script.recorded()

    # the client's last flight: a wrong Finished under the right keys, a plaintext one,
    # none, no ChangeCipherSpec
    script = _ResumeScript(spec)
    script.hello()
    script.server_flight()
    client = script.world.client
    (last,) = script.world.to_server
    ccs, finished = split_records_of(last)
    seq = client._hs.send_seq - 1
    wrong = full_message(HandshakeType.finished, seq, bytes(12))
    write = client._write_epochs[1]
    before = list(script.steps)
    for label, datagrams in (
        ("finished-wrong", [ccs + write.protect(ContentType.handshake, wrong)]),
        ("finished-plain", [ccs + encode_record(ContentType.handshake, 0, 5, wrong)]),
        ("finished-twice", [ccs + write.protect(ContentType.handshake, wrong), last]),
        ("no-ccs", [finished]),
        ("no-finished", [ccs]),
        ("finished-before-ccs", [finished + ccs]),
    ):
        yield f"{name}-{label}.bin", join([*before, *(Step(d) for d in datagrams)])

    # every session offered from another address by a client that has it
    with _offering_any_session():
        for i, (state, session_spec) in enumerate(zip(client_states, SESSION_SPECS, strict=True)):
            script = _ResumeScript(spec)
            stranger = DTLSConnection(
                resume_client_config(session_spec, CLIENT_SEED + 20 + i), is_client=True
            )
            stranger.connect(0.0, state)
            script.stranger(stranger, 2)
            yield f"{name}-stranger-{session_spec.name}.bin", script.recorded()
    # a new client without a session: a full handshake, a new session, one evicted
    script = _ResumeScript(spec)
    fresh = DTLSConnection(resume_client_config(SESSION_SPECS[0], CLIENT_SEED + 30), is_client=True)
    fresh.connect(0.0)
    script.stranger(fresh, 3)
    assert fresh.is_established, f"{spec.name}: the fresh client's handshake failed"
    yield f"{name}-fresh-full.bin", script.recorded()
    # expired: two pauses, then the world's client's handshake (a full one)
    script = _ResumeScript(spec)
    script.play(b"", PAUSE)
    script.play(b"", PAUSE)
    script.handshake()
    yield f"{name}-expired.bin", script.recorded()

    # the world's client's ClientHello, edited, from another address
    base = _first_hello(ResumeWorld(spec).to_server)
    ids = {s.session_id for s in server_states}
    edits: dict[str, Callable[[ClientHello], None]] = {
        "id-unknown": lambda h: setattr(h, "session_id", bytes(range(32))),
        "id-short": lambda h: setattr(h, "session_id", h.session_id[:16]),
        "id-none": lambda h: setattr(h, "session_id", b""),
        "id-rotated": lambda h: setattr(h, "session_id", server_states[-1].session_id),
        "id-noems": lambda h: setattr(h, "session_id", server_states[3].session_id),
        "other-suites": lambda h: setattr(h, "cipher_suites", h.cipher_suites[1:]),
        "no-ems": lambda h: _edit_extensions(h, drop=EXT.extended_master_secret),
        "etm-added": lambda h: _edit_extensions(h, add=EXT.encrypt_then_mac),
        "etm-dropped": lambda h: _edit_extensions(h, drop=EXT.encrypt_then_mac),
        "noems-session-no-ems": lambda h: _as_noems_client(h, server_states[3]),
    }
    assert base.session_id in ids
    for label, edit in edits.items():
        hello = ClientHello.parse(base.encode())
        edit(hello)
        script = _ResumeScript(spec)
        script.hello_from(hello, 2)
        yield f"{name}-hello-{label}.bin", script.recorded()

    # the server's resuming flight to the world's client, its ServerHello edited
    script = _ResumeScript(spec)
    script.hello()
    (flight,) = script.world.to_client
    ((_r, sh_frag),) = message_records(flight, HandshakeType.server_hello)
    other_suite = [
        s for s in script.world.client.configuration.cipher_suites if s.name != offered.suite
    ]
    sh_edits: dict[str, Callable[[ServerHello], None]] = {
        "other-suite": lambda h: setattr(h, "cipher_suite", other_suite[0].code),
        "no-ems": lambda h: setattr(
            h, "extensions", [(t, v) for t, v in h.extensions if t != EXT.extended_master_secret]
        ),
        "etm-flipped": lambda h: setattr(
            h,
            "extensions",
            [(t, v) for t, v in h.extensions if t != EXT.encrypt_then_mac]
            + (
                []
                if any(t == EXT.encrypt_then_mac for t, _ in h.extensions)
                else [(EXT.encrypt_then_mac, b"")]
            ),
        ),
        "other-id": lambda h: setattr(h, "session_id", bytes(32)),
    }
    for label, sh_edit in sh_edits.items():
        sh = ServerHello.parse(sh_frag.body)
        sh_edit(sh)
        edited = replace_message(flight, HandshakeType.server_hello, sh.encode())
        yield f"{name}-server-hello-{label}.bin", join([*script.steps, Step(edited, TO_CLIENT)])


def resume_corpus() -> dict[str, bytes]:
    return {name: data for spec in RESUME_SPECS for name, data in resume_seeds(spec)}

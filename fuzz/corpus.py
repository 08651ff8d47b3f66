"""Seeded handshakes for the fuzz targets, and the seed corpus they produce.

Everything here is deterministic: the client and the server draw their randomness from
``random.Random(seed).randbytes`` and time is a fake clock, so a handshake is the same
bytes on every run. That is what lets a corpus datagram recorded here stay *valid* for
the targets in :mod:`fuzz.targets`, which rebuild the very same connections: the
recorded second ClientHello carries a cookie the seeded server accepts, the recorded
client Finished verifies against the seeded server's transcript, and so on. A mutation
of a real flight therefore reaches deep into the state machine.

    python fuzz/corpus.py            # rewrite fuzz/corpus/<target>/*.bin
    python fuzz/corpus.py --check    # exit 1 if the files on disk are stale

Sources (``parsers``, ``server``, ``client``): every datagram of the :data:`SCENARIOS`
handshakes (both directions, with one application record each way and close_notify)
and every datagram of the OpenSSL
captures in ``tests/vectors/openssl/*.json``. The ``parsers`` corpus also gets the body
of every epoch-0 handshake message, since that target feeds its input to the message
parsers directly too; ``server`` and ``client`` also get each seeded session's whole
side as one input, a sequence of datagrams (:mod:`fuzz.inputs`): ``<session>-seq-c2s.bin``
takes a fresh seeded server, and ``<session>-seq-s2c.bin`` a fresh seeded client, through
the whole handshake. ``cid`` and ``cid_records`` get the seeds of :mod:`fuzz.worlds`
(the CID worlds' handshakes, scripted roaming sequences, records of every inner type),
and so do ``dhe`` (the DHE_PSK pairs' key exchange messages, and public values, groups,
generators and lengths at their limits) and ``resume`` (abbreviated handshakes recorded
in the resume worlds, other clients resuming every cached session, edited ClientHellos
and ServerHellos, wrong, missing and misplaced Finished messages); ``intake13`` and
``records13`` get :mod:`fuzz.worlds.v13_seeds` (DTLS 1.3 records sealed under the
``intake13`` worlds' fixed keys, scripted; framing edges; ``expect13`` worlds, before the
ServerHello); ``hellofrags`` and ``acks13`` get :mod:`fuzz.worlds.hellofrags_seeds`
(recipes and raw fragments of ClientHellos) and :mod:`fuzz.worlds.acks13_seeds` (small
programs); ``handshake13`` gets :mod:`fuzz.worlds.hs13_seeds` (hello and
NewSessionTicket recipes, and flights recorded in its worlds).

The peer captures written by ``fuzz/capture_peers.py`` (OpenSSL, GnuTLS, pion against
``python -m dtls``; names matching :data:`PEER_CAPTURE`) and the inputs a fuzzing
campaign added (:data:`CAMPAIGN_INPUT`, see fuzz/README.md) live in the same
directories: this script keeps them when it rewrites the rest, and ``--check`` leaves
them out.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``dtls`` and ``fuzz`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dtls import (
    ApplicationData,
    ConnectionClosed,
    DTLSConfiguration,
    DTLSConnection,
    DTLSServer,
    Event,
    HandshakeCompleted,
    suite_by_name,
)
from dtls.constants import ContentType
from dtls.fragment import parse_fragments
from dtls.record import iter_records
from fuzz.inputs import ADDRESSES, sequence

ROOT = Path(__file__).resolve().parent.parent
CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
OPENSSL_DIR = ROOT / "tests" / "vectors" / "openssl"
TARGET_NAMES = (
    "parsers",
    "server",
    "client",
    "cid_records",
    "cid",
    "dhe",
    "resume",
    "records13",
    "intake13",
    "hellofrags",
    "acks13",
    "handshake13",
)

PSK = bytes(range(16))
IDENTITY = b"Client_identity"
ADDR = ADDRESSES[0]
#: names of the peer captures (fuzz/capture_peers.py): ``<peer>-<suite>-<srv|cli>[-nohvr]-
#: <index|seq>-<c2s|s2c>.bin``, the role being the peer's
PEER_CAPTURE = re.compile(
    r"^(openssl|gnutls|pion)-[a-z0-9-]+-(srv|cli)(-nohvr)?-(\d{2}|seq)-(c2s|s2c)\.bin$"
)
#: inputs a fuzzing campaign found and kept: ``campaign-<yyyymmdd>-<sha1 prefix>.bin``
CAMPAIGN_INPUT = re.compile(r"^campaign-\d{8}-[0-9a-f]{12}\.bin$")
CLIENT_SEED = 1
SERVER_SEED = 2
#: pumping stops after this many rounds or once the fake clock passes this time
MAX_ROUNDS = 64
MAX_TIME = 100.0


@dataclass(frozen=True)
class Scenario:
    name: str
    suite: str
    hello_verify: bool
    hint: bytes | None = None


SCENARIOS = (
    Scenario("psk-gcm-cookie", "TLS_PSK_WITH_AES_128_GCM_SHA256", True),
    Scenario("psk-gcm", "TLS_PSK_WITH_AES_128_GCM_SHA256", False),
    Scenario("ecdhe-cbc-cookie", "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256", True),
    Scenario("ecdhe-cbc", "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256", False),
    Scenario("psk-ccm8-hint-cookie", "TLS_PSK_WITH_AES_128_CCM_8", True, b"hint123"),
)
SCENARIO = {s.name: s for s in SCENARIOS}


def seeded(seed: int):  # type: ignore[no-untyped-def]
    return random.Random(seed).randbytes


def client_config(scn: Scenario) -> DTLSConfiguration:
    return DTLSConfiguration(
        random=seeded(CLIENT_SEED),
        psk=PSK,
        psk_identity=IDENTITY,
        cipher_suites=(suite_by_name(scn.suite),),
    )


def server_config(scn: Scenario, hello_verify: bool | None = None) -> DTLSConfiguration:
    return DTLSConfiguration(
        random=seeded(SERVER_SEED),
        psk=PSK,
        psk_identity_hint=scn.hint,
        cipher_suites=(suite_by_name(scn.suite),),
        hello_verify=scn.hello_verify if hello_verify is None else hello_verify,
    )


@dataclass
class Pair:
    """A seeded client and a seeded :class:`DTLSServer` joined by a lossless fake wire.

    Datagrams are queued, not delivered, until :meth:`deliver` is called, so a caller can
    slip a datagram of its own in between two flights. ``wire`` records every datagram
    that was delivered, as ``("c2s" | "s2c", bytes)``.
    """

    scenario: Scenario
    client: DTLSConnection = field(init=False)
    server: DTLSServer = field(init=False)
    now: float = 0.0
    wire: list[tuple[str, bytes]] = field(default_factory=list)
    to_server: list[bytes] = field(default_factory=list)
    to_client: list[bytes] = field(default_factory=list)
    client_events: list[Event] = field(default_factory=list)
    #: every event of the server, in order, whichever connection it came from
    server_events: list[Event] = field(default_factory=list)
    #: the server's current connection to the client, once the server has made one
    server_conn: DTLSConnection | None = None
    #: every connection the server made for the client (a new one may follow a closed
    #: one), each with its own events
    server_conns: list[tuple[DTLSConnection, list[Event]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = DTLSConnection(client_config(self.scenario), is_client=True)
        self.server = DTLSServer(server_config(self.scenario), now=self.now)

    def start(self) -> Pair:
        self.client.connect(self.now)
        self.collect()
        return self

    def collect(self) -> None:
        self.to_server.extend(self.client.datagrams_to_send())
        self.to_client.extend(d for d, _addr in self.server.datagrams_to_send())
        while (ev := self.client.next_event()) is not None:
            self.client_events.append(ev)
        while (item := self.server.next_connection_event()) is not None:
            conn, event = item
            self.server_events.append(event)
            self._events_of(conn).append(event)
        self._track(self.server.connections.get(ADDR))

    def _events_of(self, conn: DTLSConnection) -> list[Event]:
        """The events of one of the server's connections (a new one is tracked)."""
        for known, events in self.server_conns:
            if known is conn:
                return events
        self.server_conns.append((conn, []))
        return self.server_conns[-1][1]

    def _track(self, conn: DTLSConnection | None) -> None:
        """``conn`` is the server's current connection to the client (a new one may
        follow a closed one, or replace one: RFC 6347 §4.2.8, a restarted handshake)."""
        if conn is not None:
            self._events_of(conn)
            self.server_conn = conn

    def client_receive(self, data: bytes) -> None:
        self.client.receive_datagram(data, self.now)
        self.collect()

    def server_receive(self, data: bytes) -> None:
        # (the connection it went to may be a second handshake beside the current one,
        # RFC 6347 §4.2.8, which stays hidden unless it completes: collect() tracks the
        # one filed under ADDR)
        self.server.receive_datagram(data, ADDR, self.now)
        self.collect()

    def deliver(self) -> str | None:
        """Deliver everything queued in one direction (server-bound first)."""
        self.collect()  # output queued by direct calls (send, close) since the last step
        if self.to_server:
            batch, self.to_server = self.to_server, []
            for d in batch:
                self.wire.append(("c2s", d))
                self.server_receive(d)
            return "c2s"
        if self.to_client:
            batch, self.to_client = self.to_client, []
            for d in batch:
                self.wire.append(("s2c", d))
                self.client_receive(d)
            return "s2c"
        return None

    def fire_timers(self) -> bool:
        """Advance the clock to the earliest timer and fire it; False if none is set."""
        timers = [t for t in (self.client.get_timer(), self.server.get_timer()) if t is not None]
        if not timers:
            return False
        self.now = max(self.now, min(timers))
        self._fire()
        self.collect()
        return True

    def _fire(self) -> None:
        """Both ends' timers, at ``now``."""
        self.client.handle_timer(self.now)
        self.server.handle_timer(self.now)

    def pump(self, timers: bool = True) -> None:
        """Run until nothing is queued and (with ``timers``) no timer is left."""
        for _ in range(MAX_ROUNDS):
            if self.deliver() is not None:
                continue
            if not timers or self.now > MAX_TIME or not self.fire_timers():
                return

    @property
    def established(self) -> bool:
        conn = self.server_conn
        return self.client.is_established and conn is not None and conn.is_established


def full_session(scn: Scenario) -> list[tuple[str, bytes]]:
    """Every datagram of a lossless handshake, one record each way and close_notify."""
    pair = Pair(scn).start()
    pair.pump(timers=False)
    assert pair.established, f"{scn.name}: handshake did not complete"
    assert any(isinstance(e, HandshakeCompleted) for e in pair.client_events)
    pair.client.send(b"ping")
    pair.pump(timers=False)
    assert pair.server_conn is not None
    pair.server_conn.send(b"pong")
    pair.pump(timers=False)
    assert ApplicationData(b"ping") in pair.server_events
    assert ApplicationData(b"pong") in pair.client_events
    pair.client.close()
    pair.pump(timers=False)
    assert any(isinstance(e, ConnectionClosed) for e in pair.server_events)
    return pair.wire


def openssl_sessions() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    for path in sorted(OPENSSL_DIR.glob("*.json")):
        case = json.loads(path.read_text())
        yield path.stem, [(d["dir"], bytes.fromhex(d["hex"])) for d in case["datagrams"]]


def handshake_bodies(datagram: bytes) -> Iterator[bytes]:
    """Bodies of the whole epoch-0 handshake messages in one datagram."""
    for record in iter_records(datagram):
        if record.epoch != 0 or record.content_type != ContentType.handshake:
            continue
        for frag in parse_fragments(record.fragment) or []:
            if frag.offset == 0 and len(frag.body) == frag.length:
                yield frag.body


def build() -> dict[str, dict[str, bytes]]:
    """{target: {file name: bytes}}, deduplicated by content within each target."""
    sessions = [(scn.name, full_session(scn)) for scn in SCENARIOS]
    sessions += [(f"openssl-{name}", wire) for name, wire in openssl_sessions()]
    out: dict[str, dict[str, bytes]] = {t: {} for t in TARGET_NAMES}
    seen: dict[str, set[bytes]] = {t: set() for t in TARGET_NAMES}

    def add(target: str, name: str, data: bytes) -> None:
        if data not in seen[target]:
            seen[target].add(data)
            out[target][name] = data

    for source, wire in sessions:
        for i, (direction, datagram) in enumerate(wire):
            name = f"{source}-{i:02d}-{direction}.bin"
            add("parsers", name, datagram)
            add("server" if direction == "c2s" else "client", name, datagram)
            if not source.startswith("openssl-"):
                for j, body in enumerate(handshake_bodies(datagram)):
                    add("parsers", f"{source}-{i:02d}-{direction}-body{j}.bin", body)
        if not source.startswith("openssl-"):
            for target, direction in (("server", "c2s"), ("client", "s2c")):
                side = [d for dirn, d in wire if dirn == direction]
                add(target, f"{source}-seq-{direction}.bin", sequence(side))
    # (they import this module)
    from fuzz.worlds.acks13_seeds import acks13_corpus
    from fuzz.worlds.cid_seeds import cid_corpus, cid_records_corpus
    from fuzz.worlds.dhe import dhe_corpus
    from fuzz.worlds.hellofrags_seeds import hellofrags_corpus
    from fuzz.worlds.hs13_seeds import handshake13_corpus
    from fuzz.worlds.resume_seeds import resume_corpus
    from fuzz.worlds.v13_seeds import (
        intake13_corpus,
        intake13_expect_corpus,
        records13_corpus,
    )

    cid_inputs = cid_corpus()
    for name, data in cid_inputs.items():
        add("cid", name, data)
    for name, data in cid_records_corpus(cid_inputs).items():
        add("cid_records", name, data)
    for name, data in dhe_corpus().items():
        add("dhe", name, data)
    for name, data in resume_corpus().items():
        add("resume", name, data)
    intake13_inputs = intake13_corpus()
    for name, data in intake13_inputs.items():
        add("intake13", name, data)
    for name, data in records13_corpus(intake13_inputs).items():
        add("records13", name, data)
    for name, data in intake13_expect_corpus().items():
        add("intake13", name, data)
    for name, data in hellofrags_corpus().items():
        add("hellofrags", name, data)
    for name, data in acks13_corpus().items():
        add("acks13", name, data)
    for name, data in handshake13_corpus().items():
        add("handshake13", name, data)
    return out


def is_peer_capture(name: str) -> bool:
    return PEER_CAPTURE.match(name) is not None


def is_kept(name: str) -> bool:
    """Not generated here: a peer capture or a campaign's input."""
    return is_peer_capture(name) or CAMPAIGN_INPUT.match(name) is not None


def write(out: dict[str, dict[str, bytes]], root: Path = CORPUS_DIR) -> int:
    total = 0
    for target, files in out.items():
        directory = root / target
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("*.bin"):
            if old.name not in files and not is_kept(old.name):
                old.unlink()
        for name, data in files.items():
            (directory / name).write_bytes(data)
            total += len(data)
    return total


def load(target: str, root: Path = CORPUS_DIR) -> list[bytes]:
    """The corpus of ``target`` from disk, or built in memory if it was never written."""
    files = sorted((root / target).glob("*.bin"))
    if files:
        return [f.read_bytes() for f in files]
    return list(build()[target].values())


def digest(out: dict[str, dict[str, bytes]]) -> str:
    h = hashlib.sha256()
    for target in sorted(out):
        for name in sorted(out[target]):
            h.update(f"{target}/{name}:".encode() + out[target][name])
    return h.hexdigest()


def main(argv: list[str]) -> int:
    out = build()
    if "--check" in argv:
        on_disk = {
            t: {
                f.name: f.read_bytes()
                for f in sorted((CORPUS_DIR / t).glob("*.bin"))
                if not is_kept(f.name)
            }
            for t in TARGET_NAMES
        }
        if digest(on_disk) != digest(out):
            print("fuzz/corpus is stale: run python fuzz/corpus.py")
            return 1
        print("fuzz/corpus is up to date")
        return 0
    total = write(out)
    counts = ", ".join(f"{t}: {len(files)}" for t, files in out.items())
    print(f"wrote {total} bytes to {CORPUS_DIR} ({counts} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

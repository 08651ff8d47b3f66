"""Floods and measurements for the denial-of-service tests (test_e2e_flood.py, amplification.py).

- crafted datagrams: ClientHellos of realistic sizes (:func:`hello_datagram`) and garbage
  of every kind a server port may meet (:func:`garbage_pool`);
- ``python floodkit.py flood ...``: a flood sender in its own process (its CPU and GIL are
  not the test's), bounded in count and time, that counts the replies it gets and prints
  one JSON summary line;
- ``python floodkit.py handshakes ...``: many real DTLS clients (:class:`dtls.DTLSConnection`
  over UDP sockets, all from one IP), each completing its handshake if the server lets it;
- ``python floodkit.py stream ...``: an echo service and a sequence-numbered stream at a
  fixed rate through a tunnel to it, in one process; :class:`StreamResult` counts loss,
  duplicates and the longest silence;
- kernel counters: a UDP socket's receive-buffer drops, a process's CPU time.

The flood and handshake modes print ``ready`` once their datagrams are built, then wait
(bounded) for a line on stdin before they start, so the test can line the flood up with
the stream. Every mode prints one ``result {json}`` line at the end.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import json
import os
import random
import select
import selectors
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO_ROOT))

from dtls import ConnectionClosed, DTLSConfiguration, DTLSConnection, HandshakeCompleted  # noqa: E402
from dtls.constants import DTLS1_2, ContentType, ExtensionType, HandshakeType  # noqa: E402
from dtls.fragment import encode_header, full_message  # noqa: E402
from dtls.messages import ClientHello, Extensions  # noqa: E402
from dtls.record import encode_record  # noqa: E402
from dtlspipe.options import DEFAULT_CIPHERS, DEFAULT_CURVES  # noqa: E402

PSK_HEX = "000102030405060708090a0b0c0d0e0f"  # tests/interop/peers.py PSK
GO_WAIT = 30.0  # a sender gives up if the test never says go
DRAIN_MAX = 3.0  # s: a flood waits at most this long after its last datagram for replies

# --------------------------------------------------------------------------- ClientHellos

# What `openssl s_client -dtls1_2 -psk ...` (OpenSSL 3.0) offers: 54 suites and six
# extensions, a 257-byte datagram (captured once; rebuilt here with a fresh random).
OPENSSL_SUITES = [
    int(h, 16)
    for h in (
        "c02c c030 009f cca9 cca8 ccaa c02b c02f 009e c024 c028 006b c023 c027 0067 c00a "
        "c014 0039 c009 c013 0033 00ad 00ab ccae ccad ccac 009d 00a9 ccab 00ac 00aa 009c "
        "00a8 003d 003c c038 c036 00b7 00b3 0095 0091 0035 00af 008d c037 c035 00b6 00b2 "
        "0094 0090 002f 00ae 008c 00ff"
    ).split()
]
OPENSSL_EXTENSIONS: Extensions = [
    (ExtensionType.ec_point_formats, bytes.fromhex("03000102")),
    (ExtensionType.supported_groups, bytes.fromhex("000a001d0017001e00190018")),
    (ExtensionType.session_ticket, b""),
    (ExtensionType.encrypt_then_mac, b""),
    (ExtensionType.extended_master_secret, b""),
    (
        13,  # signature_algorithms
        bytes.fromhex(
            "0028040305030603080708080809080a080b080408050806040105010601030303010302040205020602"
        ),
    ),
]
PSK_AES128_GCM = 0x00A8

#: name -> what it is; the sizes are those of the whole datagram
HELLO_KINDS = {
    "ours": "our client's (dtlspipe defaults: 6 suites, 5 extensions)",
    "openssl": "OpenSSL 3.0 s_client's (54 suites, 6 extensions)",
    "minimal": "the minimum legal one (1 suite, no extension)",
    "minimal-ems": "the smallest our server answers (1 suite, extended_master_secret)",
}


def _our_client_hello() -> ClientHello:
    """The ClientHello a ``dtlspipe client`` with default options sends, as an object."""
    cfg = DTLSConfiguration(
        random=os.urandom, psk=bytes.fromhex(PSK_HEX), cipher_suites=DEFAULT_CIPHERS,
        groups=DEFAULT_CURVES,
    )  # fmt: skip
    conn = DTLSConnection(cfg, is_client=True)
    conn.connect(0.0)
    datagram = conn.datagrams_to_send()[0]
    body = datagram[13 + 12 :]  # one record, one unfragmented message
    return ClientHello.parse(body)


def client_hello(kind: str, random32: bytes) -> ClientHello:
    if kind == "ours":
        hello = _our_client_hello()
        hello.random = random32
        return hello
    if kind == "openssl":
        return ClientHello(
            DTLS1_2, random32, b"", b"", list(OPENSSL_SUITES), b"\x00", list(OPENSSL_EXTENSIONS)
        )
    if kind == "minimal":
        return ClientHello(DTLS1_2, random32, b"", b"", [PSK_AES128_GCM], b"\x00", [])
    if kind == "minimal-ems":
        ext: Extensions = [(ExtensionType.extended_master_secret, b"")]
        return ClientHello(DTLS1_2, random32, b"", b"", [PSK_AES128_GCM], b"\x00", ext)
    raise ValueError(f"unknown ClientHello kind {kind!r}")


def hello_datagram(kind: str, random32: bytes, record_seq: int = 0) -> bytes:
    """A first ClientHello (no cookie, message_seq 0) as one datagram."""
    body = client_hello(kind, random32).encode()
    message = full_message(HandshakeType.client_hello, 0, body)
    return encode_record(ContentType.handshake, 0, record_seq, message)


# --------------------------------------------------------------------------- garbage


def _record(ct: int, epoch: int, seq: int, payload: bytes, version: int = DTLS1_2) -> bytes:
    return encode_record(ct, epoch, seq, payload, version)


def garbage_datagram(kind: str, rng: random.Random) -> bytes:
    """One datagram of garbage of the given kind (see GARBAGE_KINDS)."""
    rb = rng.randbytes
    seq = rng.randrange(2**48)
    hs = ContentType.handshake
    if kind == "random":
        return rb(rng.randrange(1, 1400))
    if kind == "short":  # shorter than a record header
        return rb(rng.randrange(1, 13))
    if kind == "truncated-record":  # the length field runs past the datagram
        whole = hello_datagram("ours", rb(32))
        return whole[: rng.randrange(13, len(whole) - 1)]
    if kind == "truncated-fragment":  # the record is whole, the handshake header is not
        return _record(hs, 0, seq, rb(rng.randrange(1, 12)))
    if kind == "fragmented-hello":  # a piece of a ClientHello: dropped by the cookie check
        body = client_hello("ours", rb(32)).encode()
        cut = rng.randrange(1, len(body))
        head = encode_header(HandshakeType.client_hello, len(body), 0, 0, cut)
        return _record(hs, 0, 0, head + body[:cut])
    if kind == "broken-hello":  # a whole ClientHello message whose body does not parse
        return _record(hs, 0, 0, full_message(HandshakeType.client_hello, 0, rb(60)))
    if kind.startswith("epoch1-"):  # protected-looking records that cannot authenticate
        ct = ContentType[kind.removeprefix("epoch1-")]
        return _record(ct, 1, seq, rb(rng.randrange(16, 300)))
    if kind == "epoch0-change_cipher_spec":
        return _record(ContentType.change_cipher_spec, 0, seq, b"\x01")
    if kind == "epoch0-alert":
        return _record(ContentType.alert, 0, seq, rng.choice([b"\x02\x28", b"\x01\x00", rb(2)]))
    if kind == "epoch0-application_data":
        return _record(ContentType.application_data, 0, seq, rb(rng.randrange(1, 300)))
    if kind == "epoch0-handshake":  # every handshake type but a first ClientHello
        msg_type = rng.choice([t for t in HandshakeType if t is not HandshakeType.client_hello])
        return _record(hs, 0, seq, full_message(msg_type, rng.randrange(8), rb(40)))
    if kind == "unknown-type":  # heartbeat, tls12_cid and never-assigned content types
        return _record(rng.choice([0, 24, 25, 99, 255]), 0, seq, rb(rng.randrange(1, 200)))
    if kind == "bad-version":  # a ClientHello with TLS 1.2's record version
        whole = hello_datagram("ours", rb(32))
        return whole[:1] + b"\x03\x03" + whole[3:]
    if kind == "oversized-length":  # a record longer than 2^14 + 2048
        return _record(hs, 0, seq, rb(18500))
    if kind == "junk-then-hello":  # a malformed record, then a valid-looking ClientHello
        return _record(hs, 0, seq, rb(30)) + hello_datagram("ours", rb(32))
    raise ValueError(f"unknown garbage kind {kind!r}")


GARBAGE_KINDS = (
    "random short truncated-record truncated-fragment fragmented-hello broken-hello "
    "epoch1-application_data epoch1-handshake epoch1-alert epoch1-change_cipher_spec "
    "epoch0-change_cipher_spec epoch0-alert epoch0-application_data epoch0-handshake "
    "unknown-type bad-version oversized-length junk-then-hello"
).split()


def garbage_pool(seed: int, size: int = 1024) -> list[tuple[str, bytes]]:
    """``size`` garbage datagrams, every kind in turn."""
    rng = random.Random(seed)
    return [(k, garbage_datagram(k, rng)) for k in (GARBAGE_KINDS * size)[:size]]


def hello_pool(kind: str, size: int = 256) -> list[tuple[str, bytes]]:
    return [(kind, hello_datagram(kind, os.urandom(32))) for _ in range(size)]


# --------------------------------------------------------------------------- senders


def _wait_for_go() -> None:
    print("ready", flush=True)
    readable, _, _ = select.select([sys.stdin], [], [], GO_WAIT)
    if not readable or not sys.stdin.readline():
        raise SystemExit("no go from the test")


def _sockets(bind: str, count: int, target: tuple[str, int], ips: int = 1) -> list[socket.socket]:
    """``count`` sockets connected to ``target``, bound round-robin to ``ips`` consecutive
    addresses from ``bind`` on (on Linux all of 127/8 is local: many "source IPs")."""
    first = int(ipaddress.IPv4Address(bind))
    socks = []
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.bind((str(ipaddress.IPv4Address(first + i % ips)), 0))
        s.connect(target)
        socks.append(s)
    return socks


def flood(
    target: tuple[str, int],
    pool: list[tuple[str, bytes]],
    count: int,
    duration: float,
    sockets: int,
    bind: str,
    ips: int = 1,
) -> dict[str, object]:
    """Send ``count`` datagrams from ``pool`` round-robin over ``sockets`` sockets, paced
    evenly over ``duration`` seconds (never longer), never answering what comes back."""
    socks = _sockets(bind, sockets, target, ips)
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    rate = count / (0.98 * duration)  # so that all ``count`` leave within ``duration``
    sent = sent_bytes = errors = 0
    kinds: Counter[str] = Counter()
    reply_sizes: Counter[int] = Counter()

    def drain(timeout: float) -> int:
        got = 0
        for key, _ in sel.select(timeout):
            while True:
                try:
                    reply = key.fileobj.recv(65535)  # type: ignore[union-attr]
                except OSError:
                    break
                reply_sizes[len(reply)] += 1
                got += 1
        return got

    start = time.monotonic()
    deadline = start + duration
    while sent < count and (now := time.monotonic()) < deadline:
        due = min(count, int((now - start) * rate) + 1)
        while sent < due:
            kind, data = pool[sent % len(pool)]
            try:
                socks[sent % sockets].send(data)
            except OSError:
                errors += 1  # ECONNREFUSED from an earlier ICMP error, or a full buffer
            sent += 1
            sent_bytes += len(data)
            kinds[kind] += 1
        drain(0.001)  # what came back; this also paces us
    end = last = time.monotonic()
    # the answers to the last ones: until none came for 0.5 s (at most DRAIN_MAX s), so
    # that a server the machine slowed down is not counted short
    while (left := min(end + DRAIN_MAX, last + 0.5) - time.monotonic()) > 0:
        if drain(left):
            last = time.monotonic()
    reply_drops = socket_drops(socks)  # replies our own full receive buffers dropped
    for s in socks:
        s.close()
    elapsed = end - start
    return {
        "sent": sent, "bytes": sent_bytes, "errors": errors, "start": start, "end": end,
        "elapsed": elapsed, "rate": sent / elapsed if elapsed > 0 else 0.0,
        "replies": reply_sizes.total(), "reply_bytes": sum(n * c for n, c in reply_sizes.items()),
        "reply_sizes": dict(reply_sizes), "reply_drops": reply_drops, "kinds": dict(kinds),
        "sockets": sockets, "drained": last - end,
    }  # fmt: skip


@dataclass
class _Client:
    sock: socket.socket
    conn: DTLSConnection
    state: str = "handshaking"


def handshakes(
    target: tuple[str, int], clients: int, spread: float, timeout: float, bind: str
) -> dict[str, object]:
    """Start ``clients`` real DTLS clients from ``bind`` (each its own source port),
    evenly over ``spread`` seconds; each gives up after ``timeout`` seconds (its
    handshake deadline). Returns how many completed, failed, and why."""
    cfg = DTLSConfiguration(
        random=os.urandom, psk=bytes.fromhex(PSK_HEX), cipher_suites=DEFAULT_CIPHERS,
        groups=DEFAULT_CURVES, handshake_timeout=timeout,
    )  # fmt: skip
    sel = selectors.DefaultSelector()
    active: dict[int, _Client] = {}
    done: list[_Client] = []
    reasons: Counter[str] = Counter()
    start = time.monotonic()
    hard_stop = start + spread + timeout + 2.0  # every client's deadline has passed by then
    started = 0

    def flush(c: _Client) -> None:
        for datagram in c.conn.datagrams_to_send():
            try:
                c.sock.send(datagram)
            except OSError:
                pass

    def settle(c: _Client) -> None:
        while (event := c.conn.next_event()) is not None:
            if isinstance(event, HandshakeCompleted):
                c.state = "established"
            elif isinstance(event, ConnectionClosed) and c.state == "handshaking":
                c.state = "failed"
                reasons[event.reason] += 1
        if c.state != "handshaking":
            sel.unregister(c.sock)
            active.pop(c.sock.fileno())
            done.append(c)

    while (started < clients or active) and (now := time.monotonic()) < hard_stop:
        while started < clients and now >= start + spread * started / clients:
            sock = _sockets(bind, 1, target)[0]
            client = _Client(sock, DTLSConnection(cfg, is_client=True, peer=target))
            client.conn.connect(now)
            flush(client)
            active[sock.fileno()] = client
            sel.register(sock, selectors.EVENT_READ)
            started += 1
        for key, _ in sel.select(0.005):
            c = active.get(key.fd)
            if c is None:
                continue
            while True:
                try:
                    data = c.sock.recv(65535)
                except OSError:
                    break
                c.conn.receive_datagram(data, time.monotonic())
            flush(c)
            settle(c)
        now = time.monotonic()
        for c in list(active.values()):
            timer = c.conn.get_timer()
            if timer is not None and now >= timer:
                c.conn.handle_timer(now)
                flush(c)
                settle(c)
    end = time.monotonic()
    states = Counter(c.state for c in done) + Counter(c.state for c in active.values())
    for c in [*done, *active.values()]:
        c.sock.close()  # no close_notify: the sessions stay on the server until idle
    return {
        "started": started, "established": states["established"], "failed": states["failed"],
        "unfinished": states["handshaking"], "reasons": dict(reasons), "start": start,
        "end": end, "elapsed": end - start,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    f = sub.add_parser("flood", help="send crafted datagrams, never answering")
    kinds = ", ".join(f"hello-{k}" for k in HELLO_KINDS)
    f.add_argument("--kind", required=True, help=f"garbage, {kinds}")
    f.add_argument("--count", type=int, required=True)
    f.add_argument("--duration", type=float, required=True)
    f.add_argument("--sockets", type=int, default=200)
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--ips", type=int, default=1, help="source addresses, from --bind on")
    h = sub.add_parser("handshakes", help="real DTLS clients from one IP")
    h.add_argument("--clients", type=int, required=True)
    h.add_argument("--spread", type=float, default=1.0)
    h.add_argument("--timeout", type=float, default=5.0)
    st = sub.add_parser("stream", help="an echo service and a paced stream through a tunnel")
    st.add_argument("--rate", type=float, default=2000)
    st.add_argument("--size", type=int, default=100)
    st.add_argument("--duration", type=float, required=True)
    for p in (f, h):
        p.add_argument("--target", required=True, help="HOST:PORT of the server")
        p.add_argument("--bind", default="127.0.0.2", help="source IP address")
    args = ap.parse_args(argv)
    if args.mode == "stream":
        if not 0 < args.rate * args.duration <= 100_000 or not 16 <= args.size <= 1400:
            ap.error("a stream is at most 100000 datagrams of 16 to 1400 bytes")
        echo, result = stream(args.rate, args.size, args.duration)
        print("result " + json.dumps(result), flush=True)
        serve_echo(echo, GO_WAIT)  # for the test's checks after the stream
        return 0
    host, _, port = args.target.rpartition(":")
    target = (host, int(port))
    if args.mode == "flood":
        if not 0 < args.count <= 100_000 or not 0 < args.duration <= 30 or args.sockets > 1000:
            ap.error("a flood is at most 100000 datagrams over 30 s from 1000 sockets")
        if not 1 <= args.ips <= args.sockets:
            ap.error("--ips must be 1 to --sockets")
        if args.kind == "garbage":
            pool = garbage_pool(args.seed)
        else:
            pool = hello_pool(args.kind.removeprefix("hello-"))
        _wait_for_go()
        result = flood(target, pool, args.count, args.duration, args.sockets, args.bind, args.ips)
    else:
        if not 0 < args.clients <= 1000:
            ap.error("at most 1000 clients")
        _wait_for_go()
        result = handshakes(target, args.clients, args.spread, args.timeout, args.bind)
    print("result " + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- the stream


def stream(rate: float, size: int, duration: float) -> tuple[socket.socket, dict[str, object]]:
    """An echo service and a paced, sequence-numbered stream through the tunnel to it, in
    one thread: prints ``echo PORT`` (the tunnel's REMOTE), waits for ``go HOST:PORT`` (the
    tunnel's entry), opens the session with a warm-up datagram, prints ``streaming``, then
    sends ``rate`` datagrams/s of ``size`` bytes for ``duration`` seconds. Returns the echo
    socket, still open, and the figures."""
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    app = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (echo, app):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    print(f"echo {echo.getsockname()[1]}", flush=True)
    readable, _, _ = select.select([sys.stdin], [], [], GO_WAIT)
    line = sys.stdin.readline().split() if readable else []
    if len(line) != 2 or line[0] != "go":
        raise SystemExit("no go from the test")
    host, _, port = line[1].rpartition(":")
    entry = (host, int(port))
    tag = os.urandom(8)
    seen: set[int] = set()
    sent_at: list[float] = []
    arrivals: list[float] = []
    echoed: list[float] = []  # when the echo service got a stream datagram: the way there
    duplicates = reordered = 0
    highest = -1
    warm = False

    def pump() -> None:
        nonlocal duplicates, reordered, highest, warm
        while True:  # the echo service
            try:
                data, addr = echo.recvfrom(65535)
            except OSError:
                break
            if len(data) == size and data[:8] == tag:
                echoed.append(time.monotonic())
            try:
                echo.sendto(data, addr)
            except OSError:
                pass
        while True:  # the replies
            try:
                data = app.recv(65535)
            except OSError:
                return
            if data == b"warm" + tag:
                warm = True
            if len(data) != size or data[:8] != tag:
                continue
            seq = int.from_bytes(data[8:16], "big")
            arrivals.append(time.monotonic())
            if seq in seen:
                duplicates += 1
                continue
            if seq < highest:
                reordered += 1
            highest = max(highest, seq)
            seen.add(seq)

    sel = selectors.DefaultSelector()
    sel.register(echo, selectors.EVENT_READ)
    sel.register(app, selectors.EVENT_READ)
    warm_deadline = time.monotonic() + 15.0
    next_warm = 0.0
    while not warm and (now := time.monotonic()) < warm_deadline:
        if now >= next_warm:
            app.sendto(b"warm" + tag, entry)
            next_warm = now + 0.25
        sel.select(0.01)
        pump()
    if not warm:
        raise SystemExit("the tunnel did not echo the warm-up datagram")
    total = int(rate * duration)
    start = time.monotonic()
    print(f"streaming {start!r}", flush=True)
    while len(sent_at) < total and (now := time.monotonic()) < start + duration + 1.0:
        due = min(total, int((now - start) * rate) + 1)
        while len(sent_at) < due:
            seq = len(sent_at)
            head = tag + seq.to_bytes(8, "big")
            try:
                app.sendto(head + bytes(size - len(head)), entry)
            except OSError:
                pass  # counted as lost
            sent_at.append(time.monotonic())
        sel.select(0.0005)
        pump()
    last = time.monotonic()
    while len(seen) < len(sent_at) and time.monotonic() < last + 2.0:  # stragglers
        sel.select(0.005)
        pump()
    elapsed = last - start
    app.close()
    return echo, {
        "sent": len(sent_at), "received": len(seen), "duplicates": duplicates,
        "reordered": reordered, "rate": len(sent_at) / elapsed if elapsed > 0 else 0.0,
        "start": start, "end": last,
        "lost": [i for i in range(len(sent_at)) if i not in seen],
        "sent_at": [round(t, 5) for t in sent_at], "arrivals": [round(t, 5) for t in arrivals],
        "echoed": [round(t, 5) for t in echoed],
    }  # fmt: skip


def serve_echo(echo: socket.socket, limit: float) -> None:
    """Go on echoing until stdin has a line or closes, or for ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([echo, sys.stdin], [], [], min(left, 0.5))
        if sys.stdin in readable:
            return
        while True:
            try:
                data, addr = echo.recvfrom(65535)
                echo.sendto(data, addr)
            except OSError:
                break


@dataclass
class StreamResult:
    """What the stream process reported, with the questions a test asks of it."""

    sent: int
    received: int  # distinct sequence numbers that came back
    duplicates: int
    reordered: int
    rate: float  # achieved sending rate, datagrams/s
    start: float
    end: float
    lost: list[int] = field(repr=False)
    sent_at: list[float] = field(repr=False)
    arrivals: list[float] = field(repr=False)  # reply arrival times, in order
    echoed: list[float] = field(repr=False)  # arrival times at the echo service, in order

    def lost_between(self, t0: float, t1: float) -> tuple[int, int]:
        """(lost, sent) among the datagrams sent between monotonic times t0 and t1."""
        lost = set(self.lost)
        window = [i for i, t in enumerate(self.sent_at) if t0 <= t <= t1]
        return sum(1 for i in window if i in lost), len(window)

    def longest_silence(self, t0: float, t1: float, way: str = "back") -> float:
        """The longest gap between replies (``way="there"``: between arrivals at the echo
        service) or the window's ends, within [t0, t1]."""
        arrivals = self.arrivals if way == "back" else self.echoed
        times = [t0, *(t for t in arrivals if t0 <= t <= t1), t1]
        return max(b - a for a, b in itertools.pairwise(times))


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped (receive buffer full) on UDP sockets bound to ``port``."""
    drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 12 and int(cols[1].rsplit(":", 1)[1], 16) == port:
                drops += int(cols[-1])
    return drops


def socket_drops(socks: list[socket.socket]) -> int:
    """Datagrams the kernel dropped (receive buffer full) on these sockets, bound to
    IPv4 addresses: their rows of /proc/net/udp, read once."""
    mine = set()
    for s in socks:
        host, port = s.getsockname()[:2]
        addr = int(ipaddress.IPv4Address(host)).to_bytes(4, "big")
        mine.add(f"{int.from_bytes(addr, sys.byteorder):08X}:{port:04X}")
    try:
        rows = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return 0
    return sum(int(cols[-1]) for row in rows if len(cols := row.split()) > 12 and cols[1] in mine)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    raise SystemExit(main())

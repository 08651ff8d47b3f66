"""wolfSSL 5.9.2's example client and server (DTLS 1.3, RFC 9147, with external PSKs) as
interop peers, and a recording UDP relay to put between them.

The binaries are built by .ci/wolfssl.sh into ``$DTLS_WOLFSSL_DIR`` (default
/var/cache/dtlspipe/wolfssl): ``bin/client``, ``bin/server``, ``certs/dh2048.pem`` and a
``VERSION`` stamp. A missing build is a skip, or a failure when DTLS_REQUIRE_PEERS=1, as for
the peers in peers.py.

What the examples do (measured by running them; see also /work/shared/PEERS.md):

- They refuse to start ("wolf root not found") unless ``certs/dh2048.pem`` is in their
  working directory or at most five levels above it. Each run here gets its own working
  directory with a ``certs`` symlink to the build's, so that the ``sslkeylog.log`` each
  process appends its secrets to (NSS key log format) is its own.
- ``-u`` DTLS, ``-v 4`` DTLS 1.3, ``-s`` PSK, ``-p PORT``, ``-l SUITE``. ``-u N`` right after
  ``-u`` sets the largest datagram (the build needs --enable-dtls-mtu, which .ci/wolfssl.sh
  passes). The server binds 127.0.0.1 (``-b`` would bind every interface) and exits after
  one connection.
- The DTLS 1.3 PSK is ``0123456789abcdef`` four times (hex, 32 bytes); the client's
  identity is ``Client_identity`` plus the last six characters of the suite name
  (``Client_identitySHA256``).
- The client sends ``hello wolfssl!``; the server prints ``Client message: hello wolfssl!``
  and answers ``I hear you fa shizzle!``, which the client prints; then both send
  close_notify and exit 0. With ``-I`` the client sends its line once more after the reply.
- The server answers every first ClientHello with a HelloRetryRequest carrying only a
  cookie (67 bytes for SHA-256 suites, 83 for SHA-384) unless ``-J n``. The client's
  default key shares are P-256 and FFDHE2048 (``-t``: X25519 alone); with ``-u N`` its
  first ClientHello has an empty key_share and the HRR picks X25519MLKEM768.
- ``-K`` offers psk_ke alone but still sends key shares; ``--cid VALUE`` (not in ``-?``'s
  help) asks the peer to send VALUE as the CID, ``--cid`` alone offers an empty CID.
"""

from __future__ import annotations

import os
import re
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import pytest
from processes import EXIT_DEADLINE, HOST, Proc, free_udp_port

DEFAULT_DIR = Path("/var/cache/dtlspipe/wolfssl")
TICKETS_DIR = Path("/var/cache/dtlspipe/wolfssl-tickets")

#: the examples' DTLS 1.3 external PSK (wolfssl/test.h) and the identity's fixed part
PSK_HEX = "0123456789abcdef" * 4
IDENTITY_PREFIX = "Client_identity"
CLIENT_MESSAGE = "hello wolfssl!"
SERVER_REPLY = "I hear you fa shizzle!"

#: RFC 8446 §4.1.3: a ServerHello with this random is a HelloRetryRequest
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

# Deadlines, in seconds: they bound a hang, they are not performance targets.
HANDSHAKE_DEADLINE = 15.0  # the client prints the server's reply
RELAY_QUIET = 0.3  # no datagram for this long after both processes exited: the relay is done
RELAY_DRAIN_DEADLINE = 3.0

Kex = Literal["psk_ke", "psk_dhe_ke"]
Group = Literal["x25519", "p256"]
Direction = Literal["c2s", "s2c"]


# --------------------------------------------------------------------------- the build


@dataclass(frozen=True)
class Build:
    root: Path

    @property
    def client(self) -> Path:
        return self.root / "bin" / "client"

    @property
    def server(self) -> Path:
        return self.root / "bin" / "server"

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    def stamp(self) -> dict[str, str]:
        """The VERSION file's ``key: value`` lines."""
        fields: dict[str, str] = {}
        for line in (self.root / "VERSION").read_text().splitlines():
            key, sep, value = line.partition(": ")
            if sep:
                fields[key] = value
        return fields

    @property
    def version(self) -> str:
        """The upstream version, e.g. ``5.9.2``."""
        return self.stamp().get("upstream", "unknown")


def build_dir(tickets: bool = False) -> Path:
    """The build (``tickets``: the variant with session tickets, DTLS_WOLFSSL_TICKETS=1)."""
    if tickets:
        return Path(os.environ.get("DTLS_WOLFSSL_TICKETS_DIR") or TICKETS_DIR)
    return Path(os.environ.get("DTLS_WOLFSSL_DIR") or DEFAULT_DIR)


def missing(tickets: bool = False) -> str | None:
    """Why the wolfSSL examples cannot run here, or None when they can."""
    build = Build(build_dir(tickets))
    how = "DTLS_WOLFSSL_TICKETS=1 .ci/wolfssl.sh" if tickets else ".ci/wolfssl.sh"
    for path in (build.client, build.server):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (build it as root with {how})"
    for path in (build.certs / "dh2048.pem", build.root / "VERSION"):
        if not path.is_file():
            return f"{path} is missing (build it as root with {how})"
    recipe = (build.root / "VERSION").read_text().partition("\n")[0]
    if ("--enable-session-ticket" in recipe) is not tickets:
        said = "without" if tickets else "with"
        return f"{build.root} is built {said} session tickets (rebuild it with {how})"
    return None


def wolfssl_available() -> bool:
    return missing() is None


def require_wolfssl(tickets: bool = False) -> Build:
    """The build; skips the test when it is missing, or fails it when DTLS_REQUIRE_PEERS=1."""
    reason = missing(tickets)
    if reason is not None:
        if os.environ.get("DTLS_REQUIRE_PEERS") == "1":
            pytest.fail(
                f"interop peer wolfssl required (DTLS_REQUIRE_PEERS=1): {reason}", pytrace=False
            )
        pytest.skip(f"interop peer wolfssl not available: {reason}")
    return Build(build_dir(tickets))


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    """What one run asks of both examples.

    ``kex``: ``psk_ke`` is ``-K`` on both, ``psk_dhe_ke`` is ``--onlyPskDheKe`` on both;
    None leaves both modes offered (the server then picks psk_dhe_ke). ``group``: ``-t``
    (X25519) or ``-Y`` (client: ECC groups only; server: P-256 only) on both. ``hrr_cookie``
    False is the server's ``-J n``: no HelloRetryRequest unless the key share needs one.
    ``mtu``: ``-u N`` on both. ``cid``: ``--cid`` on both (``""``: offer an empty CID), each
    side's value being the CID it asks the other to send. ``key_update``: ``client`` is the
    client's ``-I``, ``server`` the server's ``-U``.
    """

    suite: str = "TLS13-AES128-GCM-SHA256"
    kex: Kex | None = None
    group: Group | None = None
    hrr_cookie: bool = True
    mtu: int | None = None
    cid: tuple[str, str] | None = None  # (client's, server's)
    key_update: Literal["client", "server"] | None = None
    client_extra: tuple[str, ...] = ()
    server_extra: tuple[str, ...] = ()

    @property
    def identity(self) -> str:
        """The identity the client offers for the suite (wolfssl/test.h's PSK callback)."""
        return IDENTITY_PREFIX + self.suite[-6:]

    def _common(self, role: str, port: int) -> list[str]:
        argv = ["-u"] + ([str(self.mtu)] if self.mtu is not None else [])
        argv += ["-v", "4", "-s", "-p", str(port), "-l", self.suite]
        if self.kex == "psk_ke":
            argv.append("-K")
        elif self.kex == "psk_dhe_ke":
            argv.append("--onlyPskDheKe")
        if self.group == "x25519":
            argv.append("-t")
        elif self.group == "p256":
            argv.append("-Y")
        if self.cid is not None:
            value = self.cid[0] if role == "client" else self.cid[1]
            argv += ["--cid"] + ([value] if value else [])
        return argv

    def server_args(self, port: int) -> list[str]:
        argv = self._common("server", port)
        if not self.hrr_cookie:
            argv += ["-J", "n"]
        if self.key_update == "server":
            argv.append("-U")
        return argv + list(self.server_extra)

    def client_args(self, port: int) -> list[str]:
        argv = self._common("client", port)
        if self.key_update == "client":
            argv.append("-I")
        return argv + list(self.client_extra)


# --------------------------------------------------------------------------- processes


class Starter(Protocol):
    """peers.Launcher: starts a Proc and stops it (by its PID) at teardown."""

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> Proc: ...


@dataclass
class Peer:
    """A running example and the folder it runs in (with its sslkeylog.log)."""

    proc: Proc
    workdir: Path

    @property
    def keylog_path(self) -> Path:
        return self.workdir / "sslkeylog.log"

    def keylog(self) -> str:
        try:
            return self.keylog_path.read_text()
        except FileNotFoundError:
            return ""

    def secrets(self) -> dict[str, dict[str, str]]:
        return parse_keylog(self.keylog())


def _workdir(path: Path, build: Build) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    link = path / "certs"
    if not link.is_symlink():
        link.symlink_to(build.certs)
    (path / "sslkeylog.log").unlink(missing_ok=True)
    return path


def start_server(
    starter: Starter, build: Build, workdir: Path, port: int, options: Options
) -> Peer:
    """The example server for one connection on 127.0.0.1:``port``, waited for until bound."""
    cwd = _workdir(workdir, build)
    proc = starter.start("wolfssl-server", [str(build.server), *options.server_args(port)], cwd=cwd)
    proc.wait_bound(port)
    return Peer(proc, cwd)


def start_client(
    starter: Starter, build: Build, workdir: Path, port: int, options: Options
) -> Peer:
    """The example client towards 127.0.0.1:``port`` (its default host)."""
    cwd = _workdir(workdir, build)
    proc = starter.start("wolfssl-client", [str(build.client), *options.client_args(port)], cwd=cwd)
    return Peer(proc, cwd)


KEYLOG_LINE = re.compile(r"^([A-Z_0-9]+) ([0-9a-fA-F]{64}) ([0-9a-fA-F]+)$")


def parse_keylog(text: str) -> dict[str, dict[str, str]]:
    """NSS key log lines as ``{client_random: {label: secret}}`` (hex, lower case). A label
    logged twice with different secrets for one client random is an error."""
    out: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        m = KEYLOG_LINE.match(line.strip())
        if m is None:
            continue
        label, random, secret = m.group(1), m.group(2).lower(), m.group(3).lower()
        known = out.setdefault(random, {}).setdefault(label, secret)
        if known != secret:
            raise ValueError(f"{label} logged twice with different secrets for {random}")
    return out


# --------------------------------------------------------------------------- relay


@dataclass(frozen=True)
class Datagram:
    direction: Direction
    data: bytes
    at: float  # time.monotonic() when the relay received it


@dataclass
class Relay:
    """A UDP relay on 127.0.0.1: the client sends to ``port``, the relay forwards to the
    server's port and back, recording every datagram in order with its direction."""

    server_port: int
    port: int = field(init=False)
    _down: socket.socket = field(init=False)
    _up: socket.socket = field(init=False)
    _client: tuple[str, int] | None = field(init=False, default=None)
    _log: list[Datagram] = field(init=False, default_factory=list)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _stop: threading.Event = field(init=False, default_factory=threading.Event)
    _thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self._down = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._down.bind((HOST, 0))
        self.port = self._down.getsockname()[1]
        self._up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._up.bind((HOST, 0))
        self._up.connect((HOST, self.server_port))
        self._thread = threading.Thread(target=self._run, name="wolfssl-relay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._down, selectors.EVENT_READ)
            sel.register(self._up, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in sel.select(0.05):
                    try:
                        if key.fileobj is self._down:
                            data, addr = self._down.recvfrom(65535)
                            if self._client is None:
                                self._client = addr
                            elif addr != self._client:
                                continue  # one client per relay
                            self._record("c2s", data)
                            self._up.send(data)
                        else:
                            data = self._up.recv(65535)
                            self._record("s2c", data)
                            if self._client is not None:
                                self._down.sendto(data, self._client)
                    except (ConnectionRefusedError, BlockingIOError):
                        continue  # the other side is not (or no longer) bound: dropped

    def _record(self, direction: Direction, data: bytes) -> None:
        with self._lock:
            self._log.append(Datagram(direction, data, time.monotonic()))

    def datagrams(self) -> list[Datagram]:
        with self._lock:
            return list(self._log)

    def wait_quiet(self, quiet: float = RELAY_QUIET, timeout: float = RELAY_DRAIN_DEADLINE) -> None:
        """Wait (at most ``timeout``) until no datagram arrived for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                last = self._log[-1].at if self._log else 0.0
            if time.monotonic() - last >= quiet:
                return
            time.sleep(0.02)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._down.close()
        self._up.close()


@dataclass
class Session:
    """One client-server run through the relay, finished: both processes exited."""

    options: Options
    server: Peer
    client: Peer
    datagrams: list[Datagram]
    server_rc: int
    client_rc: int


def run_session(starter: Starter, build: Build, workdir: Path, options: Options) -> Session:
    """wolfSSL client -> relay -> wolfSSL server, to the end: the client printed the reply,
    both exited (each wait bounded), the relay saw the last datagrams and was closed. Fails
    (pytest.fail) when the handshake or the exchange does not complete in time."""
    port = free_udp_port()
    server = start_server(starter, build, workdir / "server", port, options)
    relay = Relay(port)
    try:
        client = start_client(starter, build, workdir / "client", relay.port, options)
        client.proc.wait_for(re.escape(SERVER_REPLY), HANDSHAKE_DEADLINE, "stdout", "reply")
        client_rc = client.proc.wait_exit(EXIT_DEADLINE)
        server_rc = server.proc.wait_exit(EXIT_DEADLINE)
        relay.wait_quiet()
    finally:
        relay.close()
    return Session(options, server, client, relay.datagrams(), server_rc, client_rc)


# --------------------------------------------------------------------------- wire format

CT_ALERT, CT_HANDSHAKE, CT_APPLICATION_DATA, CT_ACK = 21, 22, 23, 26
HT_CLIENT_HELLO, HT_SERVER_HELLO = 1, 2
EXT_SUPPORTED_VERSIONS, EXT_COOKIE, EXT_PSK_MODES, EXT_KEY_SHARE = 43, 44, 45, 51
EXT_PRE_SHARED_KEY, EXT_CONNECTION_ID = 41, 54
DTLS12, DTLS13 = 0xFEFD, 0xFEFC
X25519 = 0x001D


@dataclass(frozen=True)
class Record:
    """One record of a datagram: a DTLSPlaintext (``unified`` False: content type, version,
    epoch, 48-bit sequence number) or a DTLSCiphertext with the unified header (RFC 9147
    §4: first byte 001CSLEE; ``seq`` is the sequence number as sent, i.e. still encrypted)."""

    unified: bool
    first: int  # first byte: content type, or the unified header's flags
    header: bytes
    body: bytes
    version: int = 0
    epoch: int = 0  # full epoch (plaintext) or its low 2 bits (unified)
    seq: int = 0
    cid: bytes = b""


def split_records(datagram: bytes, cid_len: int = 0) -> list[Record]:
    """The records of one datagram. ``cid_len``: the length of the connection ID that
    unified headers with the C bit carry (known from the handshake, not from the wire)."""
    records: list[Record] = []
    i = 0
    while i < len(datagram):
        first = datagram[i]
        if first >> 5 == 0b001:
            j = i + 1
            cid = b""
            if first & 0x10:
                cid = datagram[j : j + cid_len]
                j += cid_len
            seq_len = 2 if first & 0x08 else 1
            seq = int.from_bytes(datagram[j : j + seq_len], "big")
            j += seq_len
            if first & 0x04:
                (length,) = struct.unpack_from(">H", datagram, j)
                j += 2
            else:
                length = len(datagram) - j
            if j + length > len(datagram):
                raise ValueError(f"truncated unified record at offset {i}")
            records.append(
                Record(True, first, datagram[i:j], datagram[j : j + length], 0, first & 3, seq, cid)
            )
            i = j + length
        else:
            if i + 13 > len(datagram):
                raise ValueError(f"truncated record header at offset {i}")
            ctype, version, epoch = struct.unpack_from(">BHH", datagram, i)
            seq = int.from_bytes(datagram[i + 5 : i + 11], "big")
            (length,) = struct.unpack_from(">H", datagram, i + 11)
            if i + 13 + length > len(datagram):
                raise ValueError(f"truncated record at offset {i}")
            records.append(
                Record(
                    False,
                    ctype,
                    datagram[i : i + 13],
                    datagram[i + 13 : i + 13 + length],
                    version,
                    epoch,
                    seq,
                )
            )
            i += 13 + length
    return records


def plaintext_records(datagram: bytes) -> list[Record]:
    """The DTLSPlaintext records at the start of a datagram, up to its first unified header
    (whose length may depend on a CID length that is not on the wire)."""
    end = 0
    while end < len(datagram) and datagram[end] >> 5 != 0b001 and end + 13 <= len(datagram):
        end += 13 + int.from_bytes(datagram[end + 11 : end + 13], "big")
    return split_records(datagram[:end])


@dataclass(frozen=True)
class HandshakeFragment:
    """RFC 9147 §5.2: msg_type, length, message_seq, fragment_offset, fragment_length."""

    msg_type: int
    length: int
    message_seq: int
    offset: int
    body: bytes

    @property
    def complete(self) -> bool:
        return self.offset == 0 and len(self.body) == self.length


def handshake_fragments(body: bytes) -> Iterator[HandshakeFragment]:
    i = 0
    while i < len(body):
        if i + 12 > len(body):
            raise ValueError("truncated handshake header")
        msg_type = body[i]
        length = int.from_bytes(body[i + 1 : i + 4], "big")
        message_seq = int.from_bytes(body[i + 4 : i + 6], "big")
        offset = int.from_bytes(body[i + 6 : i + 9], "big")
        frag_len = int.from_bytes(body[i + 9 : i + 12], "big")
        if i + 12 + frag_len > len(body):
            raise ValueError("truncated handshake fragment")
        yield HandshakeFragment(
            msg_type, length, message_seq, offset, body[i + 12 : i + 12 + frag_len]
        )
        i += 12 + frag_len


def _vector(data: bytes, i: int, size: int) -> tuple[bytes, int]:
    n = int.from_bytes(data[i : i + size], "big")
    if i + size + n > len(data):
        raise ValueError("truncated vector")
    return data[i + size : i + size + n], i + size + n


def parse_extensions(block: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(block):
        (ext_type,) = struct.unpack_from(">H", block, i)
        data, i = _vector(block, i + 2, 2)
        out.append((ext_type, data))
    return out


@dataclass(frozen=True)
class Hello:
    """A ClientHello or ServerHello body (RFC 8446 §4.1.2/§4.1.3, DTLS 1.3 flavour)."""

    legacy_version: int
    random: bytes
    session_id: bytes
    cookie: bytes  # the legacy_cookie of a ClientHello (empty in DTLS 1.3)
    cipher_suites: list[int]
    extensions: list[tuple[int, bytes]]
    server: bool

    def ext(self, ext_type: int) -> bytes | None:
        for t, data in self.extensions:
            if t == ext_type:
                return data
        return None

    @property
    def is_hrr(self) -> bool:
        return self.random == HRR_RANDOM


def parse_client_hello(body: bytes) -> Hello:
    version, random = struct.unpack_from(">H", body)[0], body[2:34]
    session_id, i = _vector(body, 34, 1)
    cookie, i = _vector(body, i, 1)
    suites, i = _vector(body, i, 2)
    _compression, i = _vector(body, i, 1)
    extensions, i = _vector(body, i, 2)
    if i != len(body):
        raise ValueError("trailing bytes after the ClientHello's extensions")
    ids = [int.from_bytes(suites[k : k + 2], "big") for k in range(0, len(suites), 2)]
    return Hello(version, random, session_id, cookie, ids, parse_extensions(extensions), False)


def parse_server_hello(body: bytes) -> Hello:
    version, random = struct.unpack_from(">H", body)[0], body[2:34]
    session_id, i = _vector(body, 34, 1)
    (suite,) = struct.unpack_from(">H", body, i)
    extensions, i = _vector(body, i + 3, 2)  # + the legacy_compression_method byte
    if i != len(body):
        raise ValueError("trailing bytes after the ServerHello's extensions")
    return Hello(version, random, session_id, b"", [suite], parse_extensions(extensions), True)


def supported_versions(client_hello: Hello) -> list[int]:
    data = client_hello.ext(EXT_SUPPORTED_VERSIONS) or b""
    listed, _ = _vector(data, 0, 1) if data else (b"", 0)
    return [int.from_bytes(listed[k : k + 2], "big") for k in range(0, len(listed), 2)]


def key_share_groups(hello: Hello) -> list[int]:
    """The groups of a ClientHello's key shares, a ServerHello's one share, or an HRR's
    selected_group (RFC 8446 §4.2.8)."""
    data = hello.ext(EXT_KEY_SHARE)
    if data is None or len(data) < 2:
        return []
    if hello.server:
        return [int.from_bytes(data[:2], "big")]
    shares, _ = _vector(data, 0, 2)
    groups, i = [], 0
    while i < len(shares):
        groups.append(int.from_bytes(shares[i : i + 2], "big"))
        _, i = _vector(shares, i + 2, 2)
    return groups


def hellos(datagrams: Sequence[Datagram]) -> list[tuple[Direction, int, Hello]]:
    """Every plaintext ClientHello/ServerHello, in order, as (direction, index of the
    datagram that completed it, parsed hello); fragments are reassembled, retransmissions
    of a complete hello skipped."""
    done: list[tuple[Direction, int, Hello, int]] = []
    partial: dict[tuple[Direction, int, int], tuple[bytearray, bytearray]] = {}
    for n, dg in enumerate(datagrams):
        for rec in plaintext_records(dg.data):
            if rec.first != CT_HANDSHAKE:
                continue
            for frag in handshake_fragments(rec.body):
                if frag.msg_type not in (HT_CLIENT_HELLO, HT_SERVER_HELLO):
                    continue
                key = (dg.direction, frag.msg_type, frag.message_seq)
                if key not in partial and any(
                    d == dg.direction
                    and h.server == (frag.msg_type == HT_SERVER_HELLO)
                    and seq == frag.message_seq
                    for d, _, h, seq in done
                ):
                    continue  # a retransmission of a hello already complete
                buf, seen = partial.setdefault(
                    key, (bytearray(frag.length), bytearray(frag.length))
                )
                end = frag.offset + len(frag.body)
                if len(buf) != frag.length or end > frag.length:
                    raise ValueError("inconsistent handshake fragments")
                buf[frag.offset : end] = frag.body
                seen[frag.offset : end] = b"\x01" * len(frag.body)
                if all(seen):
                    del partial[key]
                    parse = parse_client_hello if frag.msg_type == 1 else parse_server_hello
                    done.append((dg.direction, n, parse(bytes(buf)), frag.message_seq))
    return [(d, n, h) for d, n, h, _ in done]


def psk_identities(client_hello: Hello) -> list[bytes]:
    """The identities of a ClientHello's pre_shared_key extension (RFC 8446 §4.2.11)."""
    data = client_hello.ext(EXT_PRE_SHARED_KEY)
    if data is None:
        return []
    listed, _ = _vector(data, 0, 2)
    out, i = [], 0
    while i < len(listed):
        identity, i = _vector(listed, i, 2)
        out.append(identity)
        i += 4  # obfuscated_ticket_age
    return out


def psk_modes(client_hello: Hello) -> list[int]:
    """psk_key_exchange_modes: 0 psk_ke, 1 psk_dhe_ke (RFC 8446 §4.2.9)."""
    data = client_hello.ext(EXT_PSK_MODES)
    return list(_vector(data, 0, 1)[0]) if data else []


#: the five TLS 1.3 suites, wolfSSL's names -> (IANA id, hash, key length, tag length)
SUITES: dict[str, tuple[int, str, int, int]] = {
    "TLS13-AES128-GCM-SHA256": (0x1301, "sha256", 16, 16),
    "TLS13-AES256-GCM-SHA384": (0x1302, "sha384", 32, 16),
    "TLS13-CHACHA20-POLY1305-SHA256": (0x1303, "sha256", 32, 16),
    "TLS13-AES128-CCM-SHA256": (0x1304, "sha256", 16, 16),
    "TLS13-AES128-CCM-8-SHA256": (0x1305, "sha256", 16, 8),
}

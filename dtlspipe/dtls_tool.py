"""The I/O side of ``python -m dtls client|server|demo`` (see docs/cli-dtls.md).

A deliberately plain loop: one UDP socket, ``selectors`` for readiness, the monotonic
clock for the engine's timers and ``os.urandom`` as its random source.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from dtls import (
    ApplicationData,
    ConnectionClosed,
    DTLSConfiguration,
    DTLSConnection,
    DTLSError,
    DTLSServer,
    EMSMode,
    Event,
    HandshakeCompleted,
    LocalProtocolError,
    parse_group_list,
    parse_suite_list,
)
from dtls.aio.keylog import KeyLogError, KeyLogFile
from dtls.keyschedule import RESERVED_LABELS
from dtls.session import SESSION_ID_LEN, SessionCache, SessionState
from dtls.suites import SUITES_BY_CODE, KeyExchange

LINGER = 0.5  # seconds the client waits for replies after stdin ends
EXPORT_LENGTH = 20  # --export-length when only --export-label is given (as OpenSSL's)


class UsageError(Exception):
    pass


def parse_hostport(text: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``v6addr:port`` (last colon splits)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"bad address {text!r}: expected HOST:PORT or [IPv6]:PORT")
    return host, int(port)


def resolve(host: str, port: int, passive: bool = False) -> tuple[int, tuple[str, int]]:
    flags = socket.AI_PASSIVE if passive else 0
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM, 0, flags)
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve {host!r}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, (str(sockaddr[0]), int(sockaddr[1]))


def build_config(args: argparse.Namespace, is_client: bool) -> DTLSConfiguration:
    try:
        psk = bytes.fromhex(args.psk)
    except ValueError:
        raise UsageError("--psk must be hex") from None
    keylog: Callable[[str], None] | None = None
    if args.keylog:  # the same checks as dtlspipe's -keylog (see dtls/aio/keylog.py)
        try:
            keylog = KeyLogFile(args.keylog)
        except KeyLogError as exc:
            raise UsageError(str(exc)) from None
    try:
        return DTLSConfiguration(
            random=os.urandom,
            psk=psk,
            psk_identity=args.identity.encode() if is_client else b"",
            psk_identity_hint=None if is_client or args.hint is None else args.hint.encode(),
            cipher_suites=parse_suite_list(args.ciphers)
            if args.ciphers
            else DTLSConfiguration.cipher_suites,
            groups=parse_group_list(args.curves) if args.curves else DTLSConfiguration.groups,
            mtu=args.mtu,
            extended_master_secret=EMSMode(args.ems),
            encrypt_then_mac=not args.no_etm,
            hello_verify=is_client or not args.no_hello_verify,
            handshake_timeout=args.timeout,
            keylog=keylog,
            session_cache=None if is_client or not args.session_cache else SessionCache(),
        )
    except DTLSError as exc:
        raise UsageError(str(exc)) from None


@dataclass(frozen=True)
class Export:
    """What --export-label/--export-length/--export-context ask for (RFC 5705)."""

    label: bytes
    length: int
    context: bytes | None  # None: no context, which differs from an empty one


def parse_export(args: argparse.Namespace) -> Export | None:
    """The exporter options, checked before any packet is sent; None without a label."""
    if args.export_label is None:
        if args.export_length is not None or args.export_context is not None:
            raise UsageError("--export-length and --export-context need --export-label")
        return None
    try:
        label = args.export_label.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError("--export-label must be valid text") from None
    if label in RESERVED_LABELS:
        raise UsageError(
            f"--export-label {args.export_label!r} is reserved: the TLS key schedule "
            "uses it (RFC 5705 section 4)"
        )
    length = EXPORT_LENGTH
    if args.export_length is not None:
        try:
            length = int(args.export_length)
        except ValueError:
            length = 0
        if not 1 <= length <= 0xFFFF:
            raise UsageError(
                f"--export-length must be a number from 1 to 65535, not {args.export_length!r}"
            )
    context = None
    if args.export_context is not None:
        try:
            context = bytes.fromhex(args.export_context)
        except ValueError:
            raise UsageError("--export-context must be hex (an even number of digits)") from None
        if len(context) > 0xFFFF:
            raise UsageError("--export-context must be at most 65535 bytes")
    return Export(label, length, context)


def say_keying_material(conn: DTLSConnection | None, export: Export | None) -> None:
    """After ``handshake ok``: ``Keying material: <upper-case hex>``, as OpenSSL prints it."""
    if export is None:
        return
    try:
        if conn is None:
            raise LocalProtocolError("the connection is gone")
        material = conn.export_keying_material(export.label, export.length, export.context)
    except LocalProtocolError as exc:
        say(f"keying material unavailable: {exc}")
        return
    say(f"Keying material: {material.hex().upper()}")


#: the ``format`` of a --sess-out file (see docs/cli-dtls.md)
SESSION_FORMAT = "python-dtls-session-1"
MASTER_SECRET_LEN = 48


def session_json(session: SessionState) -> str:
    """A session as --sess-out writes it: JSON, byte strings in lower-case hex."""
    fields = {
        "format": SESSION_FORMAT,
        "session_id": session.session_id.hex(),
        "cipher_suite": f"{session.cipher_suite.code:04X}",
        "cipher_suite_name": session.cipher_suite.name,  # for people; not read back
        "master_secret": session.master.hex(),
        "extended_master_secret": session.extended_master_secret,
        "encrypt_then_mac": session.encrypt_then_mac,
        "psk_identity": session.psk_identity.hex(),
    }
    return json.dumps(fields, indent=2) + "\n"


def save_session(path: str, session: SessionState) -> None:
    """Write ``session`` to ``path`` atomically, readable by its owner only (mode 0600:
    it holds the master secret). Raises OSError."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".sess-", dir=directory)  # created with mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(session_json(session))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _hex_field(fields: dict[str, Any], name: str) -> bytes:
    value = fields.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name!r} missing or not a string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{name!r} is not hex") from None


def _bool_field(fields: dict[str, Any], name: str) -> bool:
    value = fields.get(name)
    if not isinstance(value, bool):
        raise ValueError(f"{name!r} missing or not true/false")
    return value


def load_session(path: str) -> SessionState:
    """A session written by --sess-out; UsageError when unreadable or malformed."""
    try:
        with open(path, encoding="ascii") as fh:
            fields = json.load(fh)
    except OSError as exc:
        raise UsageError(f"--sess-in: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:  # JSON errors, and non-ASCII bytes
        raise UsageError(f"--sess-in: {path} is not a session file: {exc}") from None
    try:
        if not isinstance(fields, dict) or fields.get("format") != SESSION_FORMAT:
            raise ValueError(f"'format' is not {SESSION_FORMAT!r}")
        session_id = _hex_field(fields, "session_id")
        if not 1 <= len(session_id) <= SESSION_ID_LEN:
            raise ValueError(f"'session_id' must be 1 to {SESSION_ID_LEN} bytes")
        code = fields.get("cipher_suite")
        if not isinstance(code, str) or len(code) != 4:
            raise ValueError("'cipher_suite' must be 4 hex digits")
        try:
            suite = SUITES_BY_CODE[int(code, 16)]
        except (ValueError, KeyError):
            raise ValueError(f"unknown 'cipher_suite' {code!r}") from None
        master = _hex_field(fields, "master_secret")
        if len(master) != MASTER_SECRET_LEN:
            raise ValueError(f"'master_secret' must be {MASTER_SECRET_LEN} bytes")
        return SessionState(
            session_id=session_id,
            cipher_suite=suite,
            master=master,
            extended_master_secret=_bool_field(fields, "extended_master_secret"),
            encrypt_then_mac=_bool_field(fields, "encrypt_then_mac"),
            psk_identity=_hex_field(fields, "psk_identity"),
        )
    except ValueError as exc:
        raise UsageError(f"--sess-in: {path} is not a session file: {exc}") from None


def describe_session(event: HandshakeCompleted, session: SessionState | None) -> str:
    """The line after ``handshake ok``: ``session: resumed <id hex>`` for an abbreviated
    handshake, ``session: new <id hex>`` for a full one that made a resumable session, and
    ``session: none`` when the server gave no session ID."""
    if session is None:
        return "session: none"
    return f"session: {'resumed' if event.resumed else 'new'} {session.session_id.hex()}"


#: the group word of ``handshake ok`` when a server sent DHE_PSK parameters of its own
#: (a group that is not one of RFC 7919's, accepted after the engine's safe-prime check)
CUSTOM_DH_GROUP = "custom"


def describe(event: HandshakeCompleted) -> str:
    """``handshake ok: <IANA suite name> <group>``; the group is a curve or RFC 7919 name,
    ``custom`` for a server's own DHE_PSK group, or ``-`` (plain PSK, or a resumed session)."""
    if event.group is not None:
        group = event.group.name
    elif event.cipher_suite.kx is KeyExchange.DHE_PSK and not event.resumed:
        group = CUSTOM_DH_GROUP
    else:
        group = "-"
    return f"handshake ok: {event.cipher_suite.name} {group}"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class LineReader:
    """Non-blocking line splitter over a file descriptor."""

    def __init__(self, stream: BinaryIO) -> None:
        self.fd = stream.fileno()
        self.buf = b""
        self.eof = False

    def read_lines(self) -> list[bytes]:
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.eof = True
            lines = [self.buf] if self.buf else []
            self.buf = b""
            return lines
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        return [line + b"\n" for line in lines]


def run_client(args: argparse.Namespace) -> int:
    host, port = parse_hostport(args.connect)
    config = build_config(args, is_client=True)
    export = parse_export(args)
    offered = None if args.sess_in is None else load_session(args.sess_in)
    if args.sess_out is not None and not os.path.isdir(os.path.dirname(args.sess_out) or "."):
        raise UsageError(f"--sess-out: no directory for {args.sess_out}")
    if offered is not None and offered.cipher_suite not in config.cipher_suites:
        say(f"session not offered: its suite {offered.cipher_suite.name} is not in --ciphers")
        offered = None
    family, addr = resolve(host, port)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.connect(addr)
    sock.setblocking(False)
    conn = DTLSConnection(config, is_client=True, peer=addr)
    conn.connect(time.monotonic(), offered)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "sock")
    stdin = LineReader(sys.stdin.buffer)
    linger_until: float | None = None
    saved = SessionFile(args.sess_out)
    status = 0
    try:
        while True:
            done, status = _client_events(conn, sel, stdin, export, saved)
            if done:
                return status if saved.ok else max(status, 1)
            for datagram in conn.datagrams_to_send():
                try:
                    sock.send(datagram)
                except OSError:
                    pass  # ICMP errors from an earlier send; UDP carries on
            now = time.monotonic()
            deadlines = [t for t in (conn.get_timer(), linger_until) if t is not None]
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
            for key, _ in sel.select(timeout):
                if key.data == "sock":
                    _drain(sock, conn)
                elif key.data == "stdin":
                    for line in stdin.read_lines():
                        conn.send(line)
                    if stdin.eof:
                        sel.unregister(sys.stdin.buffer)
                        linger_until = time.monotonic() + LINGER
            now = time.monotonic()
            if linger_until is not None and now >= linger_until:
                conn.close()
                linger_until = None
            timer = conn.get_timer()
            if timer is not None and now >= timer:
                conn.handle_timer(now)
    finally:
        for datagram in conn.datagrams_to_send():
            try:
                sock.send(datagram)
            except OSError:
                pass
        sock.close()


def _drain(sock: socket.socket, conn: DTLSConnection) -> None:
    now = time.monotonic()
    while True:
        try:
            data = sock.recv(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # e.g. ECONNREFUSED from an ICMP port unreachable
        was_established = conn.is_established
        conn.receive_datagram(data, now)
        if conn.is_established and not was_established:
            # Handle HandshakeCompleted before reading on: a close_notify queued behind the
            # server's Finished would wipe the secrets that --export-label needs.
            return


class SessionFile:
    """--sess-out: where the client keeps its session, and whether that worked."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.written = False
        self.ok = True  # False once writing failed: the client then exits 1

    def save(self, session: SessionState | None) -> None:
        """After the handshake: write the session (a full handshake's or a resumed one's)."""
        if self.path is None:
            return
        if session is None:
            say(f"session not saved: the server gave no session ID ({self.path} unchanged)")
            return
        try:
            save_session(self.path, session)
        except OSError as exc:
            say(f"session not saved: {self.path}: {exc.strerror}")
            self.ok = False
            return
        self.written = True

    def discard(self, reason: str) -> None:
        """RFC 5246 §7.2.2: a session ended by a fatal alert or failure is not resumed."""
        if self.path is None or not self.written:
            return
        self.written = False
        try:
            os.unlink(self.path)
        except OSError:
            pass
        say(f"session discarded: {reason} ({self.path} removed)")


def _client_events(
    conn: DTLSConnection,
    sel: selectors.BaseSelector,
    stdin: LineReader,
    export: Export | None,
    saved: SessionFile,
) -> tuple[bool, int]:
    while (event := conn.next_event()) is not None:
        if isinstance(event, HandshakeCompleted):
            say(describe(event))
            say_keying_material(conn, export)
            say(describe_session(event, conn.session))
            saved.save(conn.session)
            try:
                sel.register(sys.stdin.buffer, selectors.EVENT_READ, "stdin")
            except (PermissionError, ValueError):
                stdin.eof = True  # /dev/null or a regular file: nothing to poll
        elif isinstance(event, ApplicationData):
            sys.stdout.buffer.write(event.data)
            sys.stdout.buffer.flush()
        elif isinstance(event, ConnectionClosed):
            if conn.handshake is None:
                say(f"handshake failed: {event.reason}")
                return True, 1
            say(f"connection closed: {event.reason}")
            if event.error:
                saved.discard("the connection ended in error")
            return True, 1 if event.error else 0
    return False, 0


def run_server(args: argparse.Namespace) -> int:
    host, port = parse_hostport(args.accept)
    config = build_config(args, is_client=False)
    export = parse_export(args)
    naccept = 1 if args.once else args.naccept
    if naccept is not None and naccept < 1:
        raise UsageError("--naccept must be at least 1")
    family, addr = resolve(host, port, passive=True)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind(addr)
    except OSError as exc:
        raise UsageError(f"cannot bind {args.accept}: {exc.strerror}") from None
    sock.setblocking(False)
    server = DTLSServer(config, time.monotonic())
    tally = Tally(naccept)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "sock")
    stdin = LineReader(sys.stdin.buffer)
    try:
        sel.register(sys.stdin.buffer, selectors.EVENT_READ, "stdin")
    except (PermissionError, ValueError):
        pass  # a regular file or /dev/null cannot be polled: nothing to send then

    def events() -> int | None:
        while (item := server.next_event()) is not None:
            finished = _server_event(server, args, export, tally, *item)
            if finished is not None:
                return finished
        return None

    try:
        while True:
            finished = events()
            if finished is not None:
                return finished  # the finally clause sends what is queued
            for datagram, peer in server.datagrams_to_send():
                try:
                    sock.sendto(datagram, peer)
                except OSError:
                    pass
            timer = server.get_timer()
            timeout = None if timer is None else max(0.0, timer - time.monotonic())
            for key, _ in sel.select(timeout):
                if key.data == "sock":
                    now = time.monotonic()
                    while True:
                        try:
                            data, peer = sock.recvfrom(65535)
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            break
                        server.receive_datagram(data, peer, now)
                        # Events after each datagram: a connection that completes its
                        # handshake and closes in one batch would be gone (with its
                        # session and exporter) before ``handshake ok`` was printed.
                        finished = events()
                        if finished is not None:
                            return finished
                else:
                    lines = stdin.read_lines()
                    if stdin.eof:
                        sel.unregister(sys.stdin.buffer)
                    for conn in list(server.connections.values()):
                        if conn.is_established:
                            for line in lines:
                                conn.send(line)
            server.handle_timer(time.monotonic())
    finally:
        server.close_all()
        for datagram, peer in server.datagrams_to_send():
            try:
                sock.sendto(datagram, peer)
            except OSError:
                pass
        sock.close()


@dataclass
class Tally:
    """The server's connections: which are established, how many have ended, whether any
    ended in error; ``naccept`` (--once: 1) is how many end before the server exits."""

    naccept: int | None
    established: set[tuple[Any, ...]] = field(default_factory=set)
    ended: int = 0
    failed: bool = False


def _server_event(
    server: DTLSServer,
    args: argparse.Namespace,
    export: Export | None,
    tally: Tally,
    peer: tuple[Any, ...],
    event: Event,
) -> int | None:
    established = tally.established
    if isinstance(event, HandshakeCompleted):
        established.add(peer)
        conn = server.connections.get(peer)
        say(describe(event))
        say_keying_material(conn, export)
        say(describe_session(event, None if conn is None else conn.session))
    elif isinstance(event, ApplicationData):
        sys.stdout.buffer.write(event.data)
        sys.stdout.buffer.flush()
        conn = server.connections.get(peer)
        if args.echo and conn is not None and conn.is_established:
            conn.send(event.data)
    elif isinstance(event, ConnectionClosed):
        failed_handshake = peer not in established
        established.discard(peer)
        say(f"{'handshake failed' if failed_handshake else 'connection closed'}: {event.reason}")
        tally.ended += 1
        tally.failed = tally.failed or event.error
        if tally.naccept is not None and tally.ended >= tally.naccept:
            return 1 if tally.failed else 0
    return None


def run_demo() -> int:
    """Our client and server over loopback UDP in one process: handshake, echo, close."""
    psk = os.urandom(16)
    socks = {}
    for role in ("server", "client"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        socks[role] = sock
    server_addr = socks["server"].getsockname()
    server = DTLSServer(DTLSConfiguration(random=os.urandom, psk=psk), time.monotonic())
    client = DTLSConnection(
        DTLSConfiguration(random=os.urandom, psk=psk, psk_identity=b"demo"), is_client=True
    )
    say(f"demo: server on {server_addr[0]}:{server_addr[1]}, client connecting")
    client.connect(time.monotonic())
    messages = [b"hello over DTLS 1.2\n", b"a second datagram\n"]
    echoed: list[bytes] = []
    sel = selectors.DefaultSelector()
    for role, sock in socks.items():
        sel.register(sock, selectors.EVENT_READ, role)
    deadline = time.monotonic() + 10
    try:
        while len(echoed) < len(messages) and time.monotonic() < deadline:
            for datagram in client.datagrams_to_send():
                socks["client"].sendto(datagram, server_addr)
            for datagram, addr in server.datagrams_to_send():
                socks["server"].sendto(datagram, addr)
            for key, _ in sel.select(0.05):
                data, addr = key.fileobj.recvfrom(65535)  # type: ignore[union-attr]
                if key.data == "server":
                    server.receive_datagram(data, addr, time.monotonic())
                else:
                    client.receive_datagram(data, time.monotonic())
            while (item := server.next_event()) is not None:
                peer, event = item
                if isinstance(event, HandshakeCompleted):
                    say(f"server: {describe(event)} (identity {event.psk_identity.decode()})")
                elif isinstance(event, ApplicationData):
                    say(f"server: received {event.data!r}, echoing it")
                    server.connections[peer].send(event.data)
            while (ev := client.next_event()) is not None:
                if isinstance(ev, HandshakeCompleted):
                    say(f"client: {describe(ev)}")
                    for message in messages:
                        client.send(message)
                elif isinstance(ev, ApplicationData):
                    say(f"client: echo received {ev.data!r}")
                    echoed.append(ev.data)
            now = time.monotonic()
            timer = client.get_timer()
            if timer is not None and now >= timer:
                client.handle_timer(now)
            server.handle_timer(now)
        client.close()
        for datagram in client.datagrams_to_send():
            socks["client"].sendto(datagram, server_addr)
    finally:
        for sock in socks.values():
            sock.close()
    ok = echoed == messages
    say("demo ok: handshake, echo and close_notify over loopback" if ok else "demo FAILED")
    return 0 if ok else 1


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dtls", description="DTLS 1.2 PSK interop tool")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("client", "server"):
        sp = sub.add_parser(name)
        if name == "client":
            sp.add_argument("--connect", required=True, metavar="HOST:PORT")
            sp.add_argument("--identity", default="Client_identity")
            sp.add_argument("--sess-in", metavar="FILE")
            sp.add_argument("--sess-out", metavar="FILE")
        else:
            sp.add_argument("--accept", required=True, metavar="HOST:PORT")
            sp.add_argument("--hint", default=None)
            ends = sp.add_mutually_exclusive_group()
            ends.add_argument("--once", action="store_true")
            ends.add_argument("--naccept", type=int, metavar="N")
            sp.add_argument("--echo", action="store_true")
            sp.add_argument("--no-hello-verify", action="store_true")
            sp.add_argument("--session-cache", action="store_true")
        sp.add_argument("--psk", required=True)
        sp.add_argument("--ciphers")
        sp.add_argument("--curves")
        sp.add_argument("--mtu", type=int, default=1400)
        sp.add_argument("--ems", choices=[m.value for m in EMSMode], default="require")
        sp.add_argument("--no-etm", action="store_true")
        sp.add_argument("--keylog")
        sp.add_argument("--timeout", type=float, default=10.0)
        # Checked by parse_export (one error line, exit 2), hence plain strings here.
        sp.add_argument("--export-label", metavar="LABEL")
        sp.add_argument("--export-length", metavar="N")
        sp.add_argument("--export-context", metavar="HEX")
    sub.add_parser("demo")
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        if args.command == "client":
            return run_client(args)
        if args.command == "server":
            return run_server(args)
        return run_demo()
    except UsageError as exc:
        print(f"python -m dtls: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130

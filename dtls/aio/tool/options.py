"""The command line of ``python -m dtls client|server|demo`` (docs/cli-dtls.md): the
parser, with help for every option, and the checks that turn options into a
:class:`~dtls.DTLSConfiguration`. A bad option is a :class:`UsageError`: one line on
stderr and exit status 2, before any packet is sent.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from ...config import DTLSConfiguration, EMSMode
from ...errors import DTLSError
from ...keyschedule import RESERVED_LABELS
from ...session import SessionCache
from ..options import configuration

#: --export-length when only --export-label is given (as OpenSSL's -keymatexportlen)
EXPORT_LENGTH = 20


class UsageError(Exception):
    """A bad option: ``python -m dtls: <message>`` on stderr, exit status 2."""


def parse_hostport(text: str, *, port_zero: bool = False) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``v6addr:port`` (the last colon splits); port 0
    (the system picks one) only with ``port_zero``. ValueError for anything else."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    low = 0 if port_zero else 1
    if (
        not sep
        or not host
        or not (port.isascii() and port.isdigit())
        or not (low <= int(port) <= 65535)
    ):
        raise ValueError(f"bad address {text!r}: expected HOST:PORT or [IPv6]:PORT")
    return host, int(port)


def address(text: str) -> tuple[str, int]:
    """--connect / --accept: ``parse_hostport``, an error of use when malformed."""
    try:
        return parse_hostport(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def build_config(args: argparse.Namespace, *, is_client: bool) -> DTLSConfiguration:
    """The engine's configuration for the client's or the server's options (the key
    log file is opened here, with dtls.aio.keylog's checks)."""
    try:
        psk = bytes.fromhex(args.psk)
    except ValueError:
        raise UsageError("--psk must be hex") from None
    server: dict[str, Any] = {}
    if not is_client:
        server = {
            "psk_identity_hint": None if args.hint is None else args.hint.encode(),
            "hello_verify": not args.no_hello_verify,
            "session_cache": SessionCache() if args.session_cache else None,
        }
    # --dtls1.3: a client speaks DTLS 1.3 only; a server takes it when offered, and 1.2
    # otherwise. --versions says exactly which.
    versions = args.versions or (None if not args.dtls13 else "1.3" if is_client else "1.2 1.3")
    try:
        return configuration(
            psk=psk,
            versions=versions,
            identity=args.identity if is_client else b"",
            cipher_suites=args.ciphers or None,
            groups=args.curves or None,
            mtu=args.mtu,
            extended_master_secret=args.ems,
            handshake_timeout=args.timeout,
            keylog=args.keylog or None,
            encrypt_then_mac=not args.no_etm,
            **server,
        )
    except DTLSError as exc:  # ConfigurationError, KeyLogError
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


def _client_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--connect",
        required=True,
        metavar="HOST:PORT",
        help="where to connect: 127.0.0.1:4433, [::1]:4433, localhost:4433",
    )
    sp.add_argument(
        "--identity",
        default="Client_identity",
        metavar="ID",
        help="the PSK identity sent (default: %(default)s)",
    )
    sp.add_argument(
        "--sess-in",
        metavar="FILE",
        help="offer the session in FILE (written by --sess-out) for resumption",
    )
    sp.add_argument(
        "--sess-out",
        metavar="FILE",
        help="write the session to FILE after the handshake (JSON, mode 0600: it holds "
        "the master secret)",
    )


def _server_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--accept", required=True, metavar="HOST:PORT", help="where to listen")
    sp.add_argument(
        "--hint",
        default=None,
        metavar="TEXT",
        help="the PSK identity hint sent in ServerKeyExchange (default: none)",
    )
    ends = sp.add_mutually_exclusive_group()
    ends.add_argument(
        "--once",
        action="store_true",
        help="serve one connection, then exit with its status (--naccept 1)",
    )
    ends.add_argument(
        "--naccept",
        type=int,
        metavar="N",
        help="serve N connections, then exit: 0 if all ended with close_notify, else 1 "
        "(default: serve until interrupted)",
    )
    sp.add_argument("--echo", action="store_true", help="send every received record back")
    sp.add_argument(
        "--no-hello-verify",
        action="store_true",
        help="skip the HelloVerifyRequest cookie exchange (RFC 6347 section 4.2.1)",
    )
    sp.add_argument(
        "--session-cache",
        action="store_true",
        help="keep sessions for resumption by session ID (RFC 5246 section 7.3)",
    )


def _common_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--psk", required=True, metavar="HEX", help="the pre-shared key, in hex")
    sp.add_argument(
        "--ciphers",
        metavar="LIST",
        help="cipher suites, colon- or comma-separated: IANA, OpenSSL or Go dtlspipe names "
        "or hex ids, DTLS 1.3 ones (TLS_AES_128_GCM_SHA256, TLS13-AES128-GCM-SHA256) with "
        "--dtls1.3; SHA-384 ones alone make a SHA-384 PSK (default: all, in the engine's order)",
    )
    sp.add_argument(
        "--dtls1.3",
        dest="dtls13",
        action="store_true",
        help="DTLS 1.3 (RFC 9147), with psk_dhe_ke or psk_ke: a client speaks it only, a "
        "server takes it when a client offers it (DTLS 1.2 otherwise)",
    )
    sp.add_argument(
        "--versions",
        metavar="LIST",
        help="the DTLS versions, comma-separated: 1.2, 1.3 or 1.2,1.3 (a client offers "
        "both, a server takes either); instead of --dtls1.3",
    )
    sp.add_argument(
        "--curves",
        metavar="LIST",
        help="groups: x25519, x448, secp256r1/P-256, secp384r1/P-384, secp521r1/P-521, "
        "ffdhe2048 ... ffdhe8192 (default: the engine's)",
    )
    sp.add_argument(
        "--mtu",
        type=int,
        default=1400,
        metavar="N",
        help="largest datagram the handshake sends, UDP payload bytes (default: %(default)s)",
    )
    sp.add_argument(
        "--ems",
        choices=[m.value for m in EMSMode],
        default="require",
        help="extended master secret policy, RFC 7627 (default: %(default)s)",
    )
    sp.add_argument("--no-etm", action="store_true", help="do not offer or accept encrypt-then-MAC")
    sp.add_argument(
        "--keylog",
        metavar="FILE",
        help="append NSS key log lines to FILE (created 0600; a symbolic link, another "
        "user's file or one others may read is refused)",
    )
    sp.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="handshake deadline (default: %(default)g)",
    )
    # Checked by parse_export (one error line, exit 2), hence plain strings here.
    sp.add_argument(
        "--export-label",
        metavar="LABEL",
        help="after the handshake, print RFC 5705 keying material for this label",
    )
    sp.add_argument(
        "--export-length",
        metavar="N",
        help=f"bytes of keying material, 1 to 65535 (default: {EXPORT_LENGTH})",
    )
    sp.add_argument(
        "--export-context",
        metavar="HEX",
        help='the exporter context in hex; "" is an empty context (default: none)',
    )


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dtls",
        description="DTLS 1.2 and 1.3 PSK interop tool, in the manner of openssl s_client/s_server "
        "(see docs/cli-dtls.md)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    client = sub.add_parser(
        "client", help="connect; stdin lines go out as records, records received to stdout"
    )
    _client_options(client)
    _common_options(client)
    server = sub.add_parser(
        "server", help="accept; records received to stdout, stdin lines to every peer"
    )
    _server_options(server)
    _common_options(server)
    sub.add_parser("demo", help="our client and server over loopback: handshake, echo, close")
    # Dispatched by main() before this parser runs; listed here for --help.
    sub.add_parser(
        "impair",
        add_help=False,
        help="a seeded impairing UDP relay (python -m dtls impair --help)",
    )
    return p

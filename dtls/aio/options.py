"""From the keyword options of ``connect`` and ``create_server`` to a
:class:`~dtls.DTLSConfiguration`: names are looked up, keys checked, the OS's random
source supplied. Bad values raise :class:`~dtls.ConfigurationError` with one line."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from typing import Any

from ..config import DTLSConfiguration, EMSMode, PSKLookup
from ..constants import DTLS1_2, DTLS1_3, NamedGroup
from ..errors import ConfigurationError
from ..groups import group_by_name, parse_group_list
from ..session import SessionCache
from ..suites import CipherSuite, suite_by_name
from ..v13.suites import Suite13, suite13_by_name
from .keylog import KeyLogFile

#: suites as one string ("TLS_PSK_WITH_AES_128_CCM_8,ECDHE-PSK-CHACHA20-POLY1305") or
#: a sequence of names or CipherSuite values; DTLS 1.3 suites (TLS_AES_128_GCM_SHA256,
#: TLS13-AES128-GCM-SHA256) may be among them
SuitesOption = str | Iterable[str | CipherSuite | Suite13] | None
#: "1.2", "1.3" or both, as strings or DTLS1_2 / DTLS1_3
VersionsOption = str | Iterable[str | int] | None
_VERSION_NAMES = {"1.2": DTLS1_2, "1.3": DTLS1_3, "dtls1.2": DTLS1_2, "dtls1.3": DTLS1_3}
GroupsOption = str | Iterable[str | NamedGroup] | None
#: a path (opened safely: see dtls.aio.keylog) or a callable taking each line
KeyLogOption = str | os.PathLike[str] | Callable[[str], None] | None
Address = tuple[Any, ...]


def _suite(item: str | CipherSuite | Suite13) -> CipherSuite | Suite13:
    if not isinstance(item, str):
        return item
    try:
        return suite13_by_name(item)
    except ConfigurationError:
        return suite_by_name(item)


def _suites(value: SuitesOption) -> tuple[tuple[CipherSuite, ...], tuple[Suite13, ...]]:
    """The DTLS 1.2 and the DTLS 1.3 suites named, each in the order given."""
    if value is None:
        return (), ()
    items = (
        [p for p in value.replace(",", ":").split(":") if p.strip()]
        if isinstance(value, str)
        else list(value)
    )
    if not items:
        raise ConfigurationError("empty cipher suite list")
    found = [_suite(item) for item in items]
    v12 = tuple(dict.fromkeys(s for s in found if isinstance(s, CipherSuite)))
    v13 = tuple(dict.fromkeys(s for s in found if isinstance(s, Suite13)))
    return v12, v13


def _versions(value: VersionsOption) -> tuple[int, ...] | None:
    if value is None:
        return None
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    out: list[int] = []
    for item in items:
        version = _VERSION_NAMES.get(item.lower()) if isinstance(item, str) else item
        if version not in (DTLS1_2, DTLS1_3):
            raise ConfigurationError(f"unknown DTLS version {item!r}: use 1.2 or 1.3")
        if version not in out:
            out.append(version)
    if not out:
        raise ConfigurationError("no DTLS version given")
    return tuple(out)


def _groups(value: GroupsOption) -> tuple[NamedGroup, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_group_list(value)
    return tuple(g if isinstance(g, NamedGroup) else group_by_name(g) for g in value)


def _bytes(value: bytes | str, what: str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise ConfigurationError(f"{what} must be bytes or str, not {type(value).__name__}")


def _keylog(value: KeyLogOption) -> Callable[[str], None] | None:
    if value is None or callable(value):
        return value
    return KeyLogFile(os.fspath(value))


def configuration(
    *,
    psk: bytes | None,
    identity: bytes | str = b"",
    psk_lookup: PSKLookup | None = None,
    cipher_suites: SuitesOption = None,
    groups: GroupsOption = None,
    mtu: int = 1400,
    extended_master_secret: EMSMode | str = EMSMode.REQUIRE,
    connection_id: int | None = None,
    handshake_timeout: float = 30.0,
    keylog: KeyLogOption = None,
    random: Callable[[int], bytes] = os.urandom,
    versions: VersionsOption = None,
    **server: Any,
) -> DTLSConfiguration:
    """The configuration for the options given; ``server`` are DTLSConfiguration's own
    server-side fields (``max_handshakes`` ...), passed through. ``versions``: "1.2"
    (the default), "1.3" (RFC 9147), or both for a server (it takes 1.3 when offered).
    Named DTLS 1.3 suites that all use SHA-384 make the PSK a SHA-384 one (RFC 8446
    §4.2.11)."""
    if psk is not None and not isinstance(psk, (bytes, bytearray)):
        raise ConfigurationError("psk must be bytes (bytes.fromhex() a hex key)")
    fields: dict[str, Any] = dict(server)
    (suites, suites13), group_list = _suites(cipher_suites), _groups(groups)
    if suites:
        fields["cipher_suites"] = suites
    if suites13:
        fields["suites13"] = suites13
        if all(s.hash_name == "sha384" for s in suites13):
            fields.setdefault("psk_hash", "sha384")
    version_list = _versions(versions)
    if version_list is not None:
        fields["versions"] = version_list
    if group_list is not None:
        fields["groups"] = group_list
    try:
        ems = EMSMode(extended_master_secret)
    except ValueError:
        raise ConfigurationError(
            f"extended_master_secret must be one of require, request, off, not "
            f"{extended_master_secret!r}"
        ) from None
    try:
        return DTLSConfiguration(
            random=random,
            psk=None if psk is None else bytes(psk),
            psk_identity=_bytes(identity, "identity"),
            psk_lookup=psk_lookup,
            mtu=mtu,
            extended_master_secret=ems,
            connection_id_length=connection_id,
            handshake_timeout=handshake_timeout,
            keylog=_keylog(keylog),
            **fields,
        )
    except TypeError as exc:  # an option DTLSConfiguration does not have
        raise ConfigurationError(str(exc)) from None


def session_cache(resumption: bool | SessionCache, lifetime: float = 3600.0) -> SessionCache | None:
    """The server's resumption cache: True for a new one, False for none."""
    if isinstance(resumption, SessionCache):
        return resumption
    return SessionCache(lifetime=lifetime) if resumption else None


def bind_address(bind: str | tuple[str, int] | int) -> tuple[str, int]:
    """``"host:port"``, ``"[v6]:port"``, ``(host, port)`` or a port alone (all addresses)."""
    if isinstance(bind, int):
        return "::" if socket.has_ipv6 else "0.0.0.0", bind  # noqa: S104 - asked for
    if isinstance(bind, tuple):
        host, port = bind
        return str(host), int(port)
    host, sep, port_text = bind.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigurationError(f"bind address {bind!r} is not host:port")
    return host.strip("[]") or "::", int(port_text)

"""From the keyword options of ``connect`` and ``create_server`` to a
:class:`~dtls.DTLSConfiguration`: names are looked up, keys checked, the OS's random
source supplied. Bad values raise :class:`~dtls.ConfigurationError` with one line."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from typing import Any

from ..config import DTLSConfiguration, EMSMode, PSKLookup
from ..constants import NamedGroup
from ..errors import ConfigurationError
from ..groups import group_by_name, parse_group_list
from ..session import SessionCache
from ..suites import CipherSuite, parse_suite_list, suite_by_name
from .keylog import KeyLogFile

#: suites as one string ("TLS_PSK_WITH_AES_128_CCM_8,ECDHE-PSK-CHACHA20-POLY1305") or
#: a sequence of names or CipherSuite values
SuitesOption = str | Iterable[str | CipherSuite] | None
GroupsOption = str | Iterable[str | NamedGroup] | None
#: a path (opened safely: see dtls.aio.keylog) or a callable taking each line
KeyLogOption = str | os.PathLike[str] | Callable[[str], None] | None
Address = tuple[Any, ...]


def _suites(value: SuitesOption) -> tuple[CipherSuite, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_suite_list(value)
    return tuple(s if isinstance(s, CipherSuite) else suite_by_name(s) for s in value)


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
    **server: Any,
) -> DTLSConfiguration:
    """The configuration for the options given; ``server`` are DTLSConfiguration's own
    server-side fields (``max_handshakes`` ...), passed through."""
    if psk is not None and not isinstance(psk, (bytes, bytearray)):
        raise ConfigurationError("psk must be bytes (bytes.fromhex() a hex key)")
    fields: dict[str, Any] = dict(server)
    suites, group_list = _suites(cipher_suites), _groups(groups)
    if suites is not None:
        fields["cipher_suites"] = suites
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

"""Configuration of a connection or server endpoint.

Everything the engine cannot know by itself comes in here, including randomness: the
``random`` callable (the caller passes the OS's random source) supplies every random byte: hello
randoms, ECDHE private keys, CBC IVs and cookie secrets. A seeded callable makes whole
handshakes reproducible byte for byte.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from .constants import DTLS1_2, DTLS1_3, NamedGroup
from .errors import ConfigurationError
from .session import SessionCache
from .suites import ALL_SUITES, CipherSuite
from .v13.suites import SUITES13, Suite13

PSK_KE, PSK_DHE_KE = 0, 1  # RFC 8446 §4.2.9

RandomSource = Callable[[int], bytes]
PSKLookup = Callable[[bytes], "bytes | None"]

#: elliptic curves for ECDHE_PSK and RFC 7919 groups for DHE_PSK, in order of preference
DEFAULT_GROUPS = (
    NamedGroup.x25519,
    NamedGroup.secp256r1,
    NamedGroup.secp384r1,
    NamedGroup.ffdhe2048,
    NamedGroup.ffdhe3072,
)
#: record + handshake headers + the largest protection overhead + some data; a peer's
#: CID (RFC 9146, up to 255 bytes) may take more, and then the handshake ends (flight.py)
MIN_MTU = 128


class EMSMode(enum.Enum):
    """Extended master secret policy (RFC 7627)."""

    REQUIRE = "require"  # offer/accept it and refuse peers that do not (Go dtlspipe default)
    REQUEST = "request"  # use it when the peer does
    OFF = "off"  # neither offer nor accept it


@dataclass(repr=False)
class DTLSConfiguration:
    random: RandomSource
    #: client: the key; server: the key for every identity unless ``psk_lookup`` is set
    psk: bytes | None = None
    #: client: identity sent in ClientKeyExchange
    psk_identity: bytes = b""
    #: server: identity -> key, or None for an unknown identity
    psk_lookup: PSKLookup | None = None
    #: server: answer an unknown identity with an unknown_psk_identity alert (RFC 4279
    #: §2). Off by default: it is handled as a known identity with a wrong key, so that
    #: nobody can list the identities a server knows by trying them
    announce_unknown_identity: bool = False
    #: server: hint sent in ServerKeyExchange (None: no ServerKeyExchange for plain PSK)
    psk_identity_hint: bytes | None = None
    cipher_suites: tuple[CipherSuite, ...] = ALL_SUITES
    groups: tuple[NamedGroup, ...] = DEFAULT_GROUPS
    #: largest datagram the handshake sends (UDP payload bytes)
    mtu: int = 1400
    extended_master_secret: EMSMode = EMSMode.REQUIRE
    encrypt_then_mac: bool = True
    #: server endpoint: perform the HelloVerifyRequest cookie exchange
    hello_verify: bool = True
    #: client: HelloVerifyRequests answered before giving up
    max_hello_verify: int = 4
    #: RFC 6347 §4.2.4.1: initial retransmission timer and its ceiling, seconds
    initial_timeout: float = 1.0
    max_timeout: float = 60.0
    #: whole-handshake deadline, seconds
    handshake_timeout: float = 30.0
    #: records of the next epoch (or early application data) held until keys are ready
    max_held_records: int = 32
    #: a handshake in progress ends after this many of the peer's records failed
    #: authentication (RFC 6347 §4.1.2.7); each datagram gets at most one failed check
    max_auth_failures: int = 16
    #: server endpoint: live connections at most
    max_connections: int = 10000
    #: server endpoint: handshakes in progress at most (each holds its state until it
    #: completes or reaches handshake_timeout); new peers beyond it are dropped
    max_handshakes: int = 1000
    #: server endpoint: handshakes in progress from one IPv4 host or IPv6 /64 at most,
    #: so that one party cannot fill max_handshakes
    max_handshakes_per_host: int = 100
    #: server endpoint: new peers whose fragmented ClientHello is being put together
    #: (its cookie needs the whole message); the oldest makes room for a new one. 0:
    #: fragmented first ClientHellos are dropped
    max_fragmented_hellos: int = 32
    #: server endpoint with hello_verify off: demand the cookie exchange anyway while at
    #: least this many handshakes are in progress or failed within handshake_timeout
    #: (None: never), so a flood of spoofed ClientHellos cannot fill max_handshakes
    cookie_under_load: int | None = 100
    #: server endpoint: the cookie secret is replaced this often (seconds)
    cookie_secret_lifetime: float = 60.0
    #: called with NSS key log lines (``CLIENT_RANDOM ...``) when set
    keylog: Callable[[str], None] | None = None
    #: RFC 9146 connection IDs. None: neither offer nor accept the extension. 0: take
    #: part, but ask the peer to send without a CID (it may still ask us for one: the Go
    #: dtlspipe client). n > 0: ask the peer to put n random bytes, drawn per connection,
    #: in every protected record it sends (the Go dtlspipe server uses 8), so that its
    #: records find the connection after its address changes.
    connection_id_length: int | None = None
    #: RFC 9853 return routability check, offered and accepted along with connection IDs:
    #: a peer whose address changes is answered at the new address only after it proves
    #: it can receive there (see docs/engine.md, "Connection IDs and roaming")
    return_routability_check: bool = True
    #: server: keep sessions here for resumption by session ID (RFC 5246 §7.3); None
    #: gives no session IDs. Clients resume with ``DTLSConnection.connect(now, session)``.
    session_cache: SessionCache | None = None
    #: DTLS 1.3 server with a session cache: send a NewSessionTicket after each
    #: handshake (RFC 8446 §4.6.1), kept in that cache. False keeps the cache for DTLS 1.2
    #: session IDs alone: a resumed DTLS 1.3 PSK handshake saves no work here (see
    #: docs/dtls13.md), which is why the tunnel sets it
    session_tickets: bool = True
    #: server: the first bytes of every connection ID and session ID it issues (the rest
    #: is random), so that something in front of several servers on one port can route
    #: by them; the tunnel's -workers puts the worker's number here
    issued_id_prefix: bytes = b""
    #: protocol versions: a client offers them, a server accepts them. DTLS1_2 alone
    #: (the default, what the Go dtlspipe speaks) or DTLS1_3 alone (RFC 9147; a client
    #: offering both is still to come)
    versions: tuple[int, ...] = (DTLS1_2,)
    #: DTLS 1.3 cipher suites, in order of preference (RFC 8446 §B.4)
    suites13: tuple[Suite13, ...] = SUITES13
    #: DTLS 1.3 key exchange with the PSK (RFC 8446 §4.2.9), in order of preference:
    #: psk_dhe_ke (forward secrecy, an (EC)DHE share from ``groups``) and psk_ke
    psk_key_exchange_modes: tuple[int, ...] = (PSK_DHE_KE, PSK_KE)
    #: DTLS 1.3: the hash the external PSK is used with (RFC 8446 §4.2.11 makes SHA-256
    #: the default); only suites with that hash are offered or chosen
    psk_hash: str = "sha256"

    def __post_init__(self) -> None:
        if not self.cipher_suites:
            raise ConfigurationError("no cipher suites configured")
        if not self.groups:
            raise ConfigurationError("no groups configured")
        if self.mtu < MIN_MTU or self.mtu > 65507:
            raise ConfigurationError(f"mtu must be between {MIN_MTU} and 65507")
        if self.psk is not None and not 1 <= len(self.psk) <= 512:
            raise ConfigurationError("psk must be 1..512 bytes")
        if len(self.psk_identity) > 0xFFFF:
            raise ConfigurationError("psk identity too long")
        if self.psk_identity_hint is not None and len(self.psk_identity_hint) > 0xFFFF:
            raise ConfigurationError("psk identity hint too long")
        if not 0 < self.initial_timeout <= self.max_timeout:
            raise ConfigurationError("need 0 < initial_timeout <= max_timeout")
        if self.max_auth_failures < 1:
            raise ConfigurationError("max_auth_failures must be positive")
        if self.max_handshakes < 1 or self.max_connections < 1:
            raise ConfigurationError("max_handshakes and max_connections must be positive")
        if self.handshake_timeout <= 0:
            raise ConfigurationError("handshake_timeout must be positive")
        if not 0 <= self.max_fragmented_hellos <= 4096:
            raise ConfigurationError("max_fragmented_hellos must be between 0 and 4096")
        if self.connection_id_length is not None and not 0 <= self.connection_id_length <= 255:
            raise ConfigurationError("connection_id_length must be between 0 and 255")
        if not self.versions or not set(self.versions) <= {DTLS1_2, DTLS1_3}:
            raise ConfigurationError("versions must be DTLS1_2 and/or DTLS1_3")
        if DTLS1_3 in self.versions:
            if self.psk_hash not in ("sha256", "sha384"):
                raise ConfigurationError("psk_hash must be sha256 or sha384")
            if not any(s.hash_name == self.psk_hash for s in self.suites13):
                raise ConfigurationError(f"no DTLS 1.3 suite uses the PSK's hash {self.psk_hash}")
            modes = self.psk_key_exchange_modes
            if not modes or not set(modes) <= {PSK_KE, PSK_DHE_KE}:
                raise ConfigurationError("psk_key_exchange_modes must be psk_ke / psk_dhe_ke")
        if len(self.issued_id_prefix) > 8 or (
            self.connection_id_length and len(self.issued_id_prefix) >= self.connection_id_length
        ):
            raise ConfigurationError("issued_id_prefix must be shorter than the issued IDs")

    def __repr__(self) -> str:
        suites = ",".join(f"{s.code:04X}" for s in self.cipher_suites)
        return (
            f"<DTLSConfiguration suites={suites} mtu={self.mtu} "
            f"ems={self.extended_master_secret.value} psk={'set' if self.psk else 'unset'}>"
        )

    @property
    def offered_suites13(self) -> tuple[Suite13, ...]:
        """The DTLS 1.3 suites usable with the PSK's hash."""
        return tuple(s for s in self.suites13 if s.hash_name == self.psk_hash)

    def key_for(self, identity: bytes) -> bytes | None:
        """The server's PSK for ``identity``."""
        if self.psk_lookup is not None:
            return self.psk_lookup(identity)
        return self.psk

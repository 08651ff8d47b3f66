"""Protocol numbers from the IANA TLS registries, with the RFC that defines each."""

from __future__ import annotations

from enum import IntEnum

# RFC 6347 §4.1: DTLS 1.2 is {254, 253}; DTLS 1.0 is {254, 255}; RFC 9147 §5.3: 1.3 {254, 252}.
DTLS1_3 = 0xFEFC
DTLS1_2 = 0xFEFD
DTLS1_0 = 0xFEFF

RECORD_HEADER_LEN = 13  # RFC 6347 §4.1: type(1) version(2) epoch(2) seq(6) length(2)
HANDSHAKE_HEADER_LEN = 12  # RFC 6347 §4.2.2: type(1) len(3) seq(2) frag_off(3) frag_len(3)
MAX_PLAINTEXT = 2**14  # RFC 5246 §6.2.1
MAX_CIPHERTEXT = 2**14 + 2048  # RFC 5246 §6.2.3
MAX_SEQUENCE = 2**48 - 1  # RFC 6347 §4.1: 48-bit sequence numbers
RANDOM_LEN = 32
MAX_COOKIE_LEN = 255  # RFC 6347 §4.2.1: opaque cookie<0..2^8-1>
VERIFY_DATA_LEN = 12  # RFC 5246 §7.4.9


class ContentType(IntEnum):
    """RFC 5246 §6.2.1."""

    change_cipher_spec = 20
    alert = 21
    handshake = 22
    application_data = 23
    tls12_cid = 25  # RFC 9146 §4: the outer type of a record carrying a connection ID
    return_routability_check = 27  # RFC 9853 §4


class HandshakeType(IntEnum):
    """RFC 5246 §7.4 and RFC 6347 §4.3.2."""

    hello_request = 0
    client_hello = 1
    server_hello = 2
    hello_verify_request = 3
    new_session_ticket = 4
    certificate = 11
    server_key_exchange = 12
    certificate_request = 13
    server_hello_done = 14
    certificate_verify = 15
    client_key_exchange = 16
    finished = 20


class AlertLevel(IntEnum):
    warning = 1
    fatal = 2


class AlertDescription(IntEnum):
    """RFC 5246 §7.2, RFC 4279 §6, RFC 5746 §3.4."""

    close_notify = 0
    unexpected_message = 10
    bad_record_mac = 20
    record_overflow = 22
    handshake_failure = 40
    illegal_parameter = 47
    decode_error = 50
    decrypt_error = 51
    protocol_version = 70
    insufficient_security = 71
    internal_error = 80
    user_canceled = 90
    no_renegotiation = 100
    missing_extension = 109  # RFC 8446 §6.2
    unsupported_extension = 110
    unknown_psk_identity = 115

    @classmethod
    def name_of(cls, value: int) -> str:
        try:
            return cls(value).name
        except ValueError:
            return f"alert_{value}"


class ExtensionType(IntEnum):
    supported_groups = 10  # RFC 8422 §5.1.1
    ec_point_formats = 11  # RFC 8422 §5.1.2
    encrypt_then_mac = 22  # RFC 7366 §2
    extended_master_secret = 23  # RFC 7627 §5.1
    session_ticket = 35  # RFC 5077
    connection_id = 54  # RFC 9146 §3
    rrc = 61  # RFC 9853 §3
    renegotiation_info = 0xFF01  # RFC 5746 §3.2


class NamedGroup(IntEnum):
    """RFC 8422 §5.1.1 and RFC 7748."""

    secp256r1 = 23
    secp384r1 = 24
    secp521r1 = 25
    x25519 = 29
    x448 = 30
    # RFC 7919 §2: finite-field groups for DHE
    ffdhe2048 = 256
    ffdhe3072 = 257
    ffdhe4096 = 258
    ffdhe6144 = 259
    ffdhe8192 = 260


# RFC 5746 §3.3: TLS_EMPTY_RENEGOTIATION_INFO_SCSV.
EMPTY_RENEGOTIATION_INFO_SCSV = 0x00FF
# RFC 8422 §5.4: ECCurveType.named_curve.
EC_CURVE_TYPE_NAMED = 3
# RFC 8422 §5.1.2: ECPointFormat.uncompressed.
EC_POINT_UNCOMPRESSED = 0

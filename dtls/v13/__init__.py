"""DTLS 1.3 (RFC 9147 over RFC 8446) with external pre-shared keys: the building blocks.

Each module is one part of the protocol, sans-I/O like the rest of the engine:

* :mod:`.keyschedule`: HKDF (RFC 5869) and the TLS 1.3 key schedule (RFC 8446 §7)
  with DTLS 1.3's ``"dtls13"`` label prefix (RFC 9147 §5.9);
* :mod:`.header`: the unified record header (RFC 9147 §4), its framing and the
  reconstruction of epoch and sequence number from their low bits (§4.2.2);
* :mod:`.protection`: AEAD record protection with the TLS 1.3 nonce and the unified
  header as additional data (RFC 8446 §5.2-5.3, RFC 9147 §4), and record number
  encryption (RFC 9147 §4.2.3).
"""

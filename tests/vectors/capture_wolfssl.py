#!/usr/bin/env python3
"""Capture DTLS 1.3 (RFC 9147) external-PSK test vectors from wolfSSL 5.9.2.

A tool run by hand, not a test: pytest does not collect it, and nothing in the test suite
runs wolfSSL through it. The JSON files it writes (tests/vectors/wolfssl13/) are committed,
for a future DTLS 1.3 implementation to check its key schedule, record protection and
handshake against.

How to run (from the repository root, after ``.ci/wolfssl.sh`` built the examples into
``$DTLS_WOLFSSL_DIR``, default /var/cache/dtlspipe/wolfssl; needs ``pytest`` and
``cryptography``, both in the project's test environment)::

    .venv/bin/python tests/vectors/capture_wolfssl.py            # every case
    .venv/bin/python tests/vectors/capture_wolfssl.py --list     # the case names
    .venv/bin/python tests/vectors/capture_wolfssl.py --only aes128-gcm-sha256-psk-ke
    .venv/bin/python tests/vectors/capture_wolfssl.py --out /tmp/vectors

It exits 0 only if every selected case was captured and passed its checks; it uses only
127.0.0.1 and takes a few seconds.

What one case does
------------------
1. Starts wolfSSL's example server (``-u -v 4 -s -p P1 -l SUITE [options]``) in a folder
   of its own (with a ``certs`` symlink to the build's, which the examples require), and
   waits until it holds the UDP port.
2. Starts the recording relay of tests/interop/wolfssl.py on 127.0.0.1:P2, forwarding to
   P1 and back, and the example client (``-u -v 4 -s -p P2 -l SUITE [options]``) in a
   folder of its own. The client sends ``hello wolfssl!``, the server answers ``I hear you
   fa shizzle!``, both send close_notify and exit. Every process is stopped by its PID;
   every wait has a deadline.
3. Reads both ``sslkeylog.log`` files (they must agree) and checks, with Python's
   ``hmac`` and ``cryptography`` only (no dtlspipe code):
   - every ClientHello's PSK binder, from the PSK and the transcript (RFC 8446 §4.2.11.2,
     with the HelloRetryRequest's message_hash construction for the second ClientHello);
   - for psk_ke cases (no (EC)DHE, so everything follows from the PSK): every secret of
     the key log, recomputed from the PSK and the transcript;
   - every protected record of both directions opened with the logged traffic secrets
     (record number decryption, RFC 9147 §4.2.3; AEAD with the "dtls13" labels); a
     KeyUpdate's next secret derived as RFC 8446 §7.2 says;
   - both Finished messages' verify_data against the transcript;
   - the two application lines and close_notify found in the decrypted records;
   - no retransmission (a case with one is captured again, up to 3 tries).
4. Writes ``<out>/<case>.json`` (fields: tests/vectors/README.md).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "interop"))

import peers  # noqa: E402  (tests/interop, on sys.path only now)
import wolfssl  # noqa: E402
from wolfssl import Datagram, Options, Session  # noqa: E402

DEFAULT_OUT = HERE / "wolfssl13"
TRIES = 3

HT_NAMES = {
    1: "client_hello",
    2: "server_hello",
    4: "new_session_ticket",
    8: "encrypted_extensions",
    20: "finished",
    24: "key_update",
}
CT_NAMES = {21: "alert", 22: "handshake", 23: "application_data", 26: "ack"}


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    name: str
    options: Options
    description: str


def build_cases() -> list[Case]:
    cases: list[Case] = []
    for suite in wolfssl.SUITES:
        short = suite.removeprefix("TLS13-").lower()
        cases.append(
            Case(
                f"{short}-psk-ke",
                Options(suite=suite, kex="psk_ke"),
                f"{suite}, psk_ke (-K on both), HelloRetryRequest with a cookie (default)",
            )
        )
        cases.append(
            Case(
                f"{short}-psk-dhe-ke-x25519",
                Options(suite=suite, kex="psk_dhe_ke", group="x25519"),
                f"{suite}, psk_dhe_ke (--onlyPskDheKe on both) with X25519 (-t on both), "
                "HelloRetryRequest with a cookie (default)",
            )
        )
    base = "TLS13-AES128-GCM-SHA256"
    cases.append(
        Case(
            "aes128-gcm-sha256-psk-ke-no-hrr",
            Options(suite=base, kex="psk_ke", hrr_cookie=False),
            f"{base}, psk_ke, server -J n: no HelloRetryRequest",
        )
    )
    cases.append(
        Case(
            "aes128-gcm-sha256-psk-ke-cid",
            Options(suite=base, kex="psk_ke", cid=("clicid7", "srvcid")),
            f"{base}, psk_ke, connection IDs (client --cid clicid7, server --cid srvcid): "
            "each side's value is the CID it receives, so c2s records carry 'srvcid' and "
            "s2c records 'clicid7'",
        )
    )
    cases.append(
        Case(
            "aes128-gcm-sha256-psk-ke-keyupdate",
            Options(suite=base, kex="psk_ke", key_update="client"),
            f"{base}, psk_ke, client -I: a KeyUpdate before the "
            "application data; both directions move to epoch 4; the client writes its line a "
            "second time after the reply",
        )
    )
    return cases


# --------------------------------------------------------------------------- key schedule


@dataclass(frozen=True)
class Suite:
    name: str
    iana: int
    hash_name: str
    key_len: int
    tag_len: int

    @property
    def hash_len(self) -> int:
        return hashlib.new(self.hash_name).digest_size

    def digest(self, data: bytes) -> bytes:
        return hashlib.new(self.hash_name, data).digest()

    def hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, self.hash_name).digest()

    def extract(self, salt: bytes, ikm: bytes) -> bytes:
        return self.hmac(salt or bytes(self.hash_len), ikm)

    def expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        out, block, counter = b"", b"", 1
        while len(out) < length:
            block = self.hmac(prk, block + info + bytes([counter]))
            out += block
            counter += 1
        return out[:length]

    def expand_label(self, secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
        """RFC 9147 §5.9: HKDF-Expand-Label with the "dtls13" prefix instead of "tls13 "."""
        full = b"dtls13" + label
        info = struct.pack(">HB", length, len(full)) + full + bytes([len(context)]) + context
        return self.expand(secret, info, length)

    def derive_secret(self, secret: bytes, label: bytes, transcript: bytes) -> bytes:
        return self.expand_label(secret, label, self.digest(transcript), self.hash_len)


def suite_of(name: str) -> Suite:
    iana, hash_name, key_len, tag_len = wolfssl.SUITES[name]
    return Suite(name, iana, hash_name, key_len, tag_len)


def tls_message(msg_type: int, body: bytes) -> bytes:
    """RFC 9147 §5.2: the transcript hashes TLS 1.3-style headers (type, 24-bit length):
    message_seq, fragment_offset and fragment_length are left out."""
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def message_hash(suite: Suite, client_hello: bytes) -> bytes:
    """RFC 8446 §4.4.1: the first ClientHello, replaced after a HelloRetryRequest."""
    digest = suite.digest(client_hello)
    return bytes([254, 0, 0, len(digest)]) + digest


def binder_of(suite: Suite, psk: bytes, transcript_prefix: bytes, client_hello: bytes) -> bytes:
    """RFC 8446 §4.2.11.2 for an external PSK ("ext binder"): over the ClientHello up to,
    and without, its binders list (2-byte length, one 1-byte length and the binder)."""
    early = suite.extract(b"", psk)
    binder_key = suite.derive_secret(early, b"ext binder", b"")
    finished_key = suite.expand_label(binder_key, b"finished", b"", suite.hash_len)
    truncated = client_hello[: -(2 + 1 + suite.hash_len)]
    return suite.hmac(finished_key, suite.digest(transcript_prefix + truncated))


# --------------------------------------------------------------------------- records


class RecordKeys:
    """RFC 9147 §4.2.3 / RFC 8446 §7.3: one traffic secret's key, iv and sn_key."""

    def __init__(self, suite: Suite, secret: bytes) -> None:
        self.suite = suite
        self.secret = secret
        self.key = suite.expand_label(secret, b"key", b"", suite.key_len)
        self.iv = suite.expand_label(secret, b"iv", b"", 12)
        self.sn_key = suite.expand_label(secret, b"sn", b"", suite.key_len)

    def mask(self, sample: bytes) -> bytes:
        if "CHACHA20" in self.suite.name:
            # RFC 9147 §4.2.3: ChaCha20 with the sample's first 4 bytes (little-endian) as
            # the block counter and the next 12 as the nonce, over zeros
            enc = Cipher(algorithms.ChaCha20(self.sn_key, sample[:16]), None).encryptor()
            return enc.update(bytes(16))
        enc = Cipher(algorithms.AES(self.sn_key), modes.ECB()).encryptor()
        return enc.update(sample[:16]) + enc.finalize()

    def open(self, seq: int, aad: bytes, ciphertext: bytes) -> bytes:
        nonce = bytes(a ^ b for a, b in zip(self.iv, seq.to_bytes(12, "big"), strict=True))
        name = self.suite.name
        if "GCM" in name:
            return AESGCM(self.key).decrypt(nonce, ciphertext, aad)
        if "CHACHA20" in name:
            return ChaCha20Poly1305(self.key).decrypt(nonce, ciphertext, aad)
        return AESCCM(self.key, tag_length=self.suite.tag_len).decrypt(nonce, ciphertext, aad)

    def next(self) -> RecordKeys:
        """RFC 8446 §7.2: application_traffic_secret_N+1 after a KeyUpdate."""
        upd = self.suite.expand_label(self.secret, b"traffic upd", b"", self.suite.hash_len)
        return RecordKeys(self.suite, upd)


@dataclass
class Opened:
    datagram: int
    direction: str
    header: bytes  # as on the wire (sequence number encrypted)
    epoch: int
    seq: int
    content_type: int
    plaintext: bytes


def reconstruct(low: int, bits: int, expected: int) -> int:
    """RFC 9147 §4.2.2: the full sequence number closest to ``expected`` with these low bits."""
    span = 1 << bits
    base = expected - (expected % span) + low
    candidates = [c for c in (base - span, base, base + span) if c >= 0]
    return min(candidates, key=lambda c: abs(c - expected))


def open_records(
    suite: Suite, datagrams: list[Datagram], secrets: dict[str, str], cid_len: dict[str, int]
) -> list[Opened]:
    """Decrypt every unified-header record with the logged traffic secrets: epoch 2 the
    handshake secrets, 3 traffic secret 0, 4 (and on) each KeyUpdate's next secret."""
    labels = {
        ("c2s", 2): "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        ("s2c", 2): "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        ("c2s", 3): "CLIENT_TRAFFIC_SECRET_0",
        ("s2c", 3): "SERVER_TRAFFIC_SECRET_0",
    }
    keys: dict[tuple[str, int], RecordKeys] = {
        k: RecordKeys(suite, bytes.fromhex(secrets[label])) for k, label in labels.items()
    }
    current = {"c2s": 2, "s2c": 2}  # the highest epoch seen per direction
    next_seq: dict[tuple[str, int], int] = {}
    opened: list[Opened] = []
    for n, dg in enumerate(datagrams):
        for rec in wolfssl.split_records(dg.data, cid_len[dg.direction]):
            if not rec.unified:
                continue
            # the low 2 bits of the epoch: the one of the current epoch or the next ones
            epoch = min(
                e
                for e in range(current[dg.direction], current[dg.direction] + 4)
                if e & 3 == rec.epoch
            )
            while (dg.direction, epoch) not in keys:
                last = max(e for d, e in keys if d == dg.direction)
                keys[(dg.direction, last + 1)] = keys[(dg.direction, last)].next()
            k = keys[(dg.direction, epoch)]
            seq_len = 2 if rec.first & 0x08 else 1
            seq_at = len(rec.header) - seq_len - (2 if rec.first & 0x04 else 0)
            sent = int.from_bytes(rec.header[seq_at : seq_at + seq_len], "big")
            low = sent ^ int.from_bytes(k.mask(rec.body[:16])[:seq_len], "big")
            seq = reconstruct(low, 8 * seq_len, next_seq.get((dg.direction, epoch), 0))
            # RFC 9147 §4: the additional data is the unified header with the sequence
            # number in the clear (as it was before record number encryption)
            hdr = bytearray(rec.header)
            hdr[seq_at : seq_at + seq_len] = low.to_bytes(seq_len, "big")
            inner = k.open(seq, bytes(hdr), rec.body)
            stripped = inner.rstrip(b"\x00")
            opened.append(
                Opened(n, dg.direction, rec.header, epoch, seq, stripped[-1], stripped[:-1])
            )
            next_seq[(dg.direction, epoch)] = seq + 1
            current[dg.direction] = max(current[dg.direction], epoch)
    return opened


# --------------------------------------------------------------------------- one case


class CaptureError(Exception):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise CaptureError(what)


def handshake_messages(
    datagrams: list[Datagram], opened: list[Opened]
) -> tuple[list[tuple[str, int, int, bytes]], bool]:
    """Every handshake message, reassembled, in the order its last fragment arrived, as
    (direction, message_seq, msg_type, body); and whether any fragment came twice."""
    pieces: list[tuple[str, bytes]] = []
    for dg in datagrams:
        for rec in wolfssl.plaintext_records(dg.data):
            if rec.first == wolfssl.CT_HANDSHAKE:
                pieces.append((dg.direction, rec.body))
    pieces += [(o.direction, o.plaintext) for o in opened if o.content_type == 22]
    seen: set[tuple[str, int, int]] = set()
    partial: dict[tuple[str, int], tuple[int, bytearray, bytearray]] = {}
    done: list[tuple[str, int, int, bytes]] = []
    duplicate = False
    for direction, body in pieces:
        for frag in wolfssl.handshake_fragments(body):
            key = (direction, frag.message_seq, frag.offset)
            if key in seen:
                duplicate = True
                continue
            seen.add(key)
            msg_type, buf, mask = partial.setdefault(
                (direction, frag.message_seq),
                (frag.msg_type, bytearray(frag.length), bytearray(frag.length)),
            )
            buf[frag.offset : frag.offset + len(frag.body)] = frag.body
            mask[frag.offset : frag.offset + len(frag.body)] = b"\x01" * len(frag.body)
            if all(mask):
                del partial[(direction, frag.message_seq)]
                done.append((direction, frag.message_seq, msg_type, bytes(buf)))
    check(not partial, f"incomplete handshake messages: {sorted(partial)}")
    return done, duplicate


def analyse(case: Case, session: Session, psk: bytes) -> dict[str, Any]:
    """The checks of the module docstring; the JSON fields that follow from the wire."""
    suite = suite_of(case.options.suite)
    dgs = session.datagrams
    checks: list[str] = []
    client_keys, server_keys = session.client.secrets(), session.server.secrets()
    check(client_keys == server_keys, "client and server key logs differ")
    check(len(client_keys) == 1, f"{len(client_keys)} client randoms in the key log")
    ((random_hex, secrets),) = client_keys.items()
    checks.append("client and server wrote the same key log lines")

    hellos = wolfssl.hellos(dgs)
    ch1 = hellos[0][2]
    check(ch1.random.hex() == random_hex, "the key log's client random is not the ClientHello's")
    cid = case.options.cid
    cid_len = {"c2s": len(cid[1]), "s2c": len(cid[0])} if cid else {"c2s": 0, "s2c": 0}
    opened = open_records(suite, dgs, secrets, cid_len)
    checks.append(
        f"opened all {len(opened)} protected records with the logged secrets "
        "(record numbers decrypted with sn_key, AEAD nonce = iv XOR 64-bit sequence number, "
        "additional data = the unified header with the sequence number in the clear)"
    )
    messages, duplicate = handshake_messages(dgs, opened)
    check(not duplicate, "a handshake fragment came twice (retransmission)")
    checks.append("no handshake fragment came twice (no retransmission)")

    # The transcript, in handshake order.
    order = [(d, t) for d, _, t, _ in messages]
    hrr = any(h.is_hrr for _, _, h in hellos)
    expected = [("c2s", 1)] + ([("s2c", 2), ("c2s", 1)] if hrr else [])
    expected += [("s2c", 2), ("s2c", 8), ("s2c", 20), ("c2s", 20)]
    check(order[: len(expected)] == expected, f"handshake messages {order}")
    full = [tls_message(t, b) for _, _, t, b in messages]
    if hrr:
        prefix_ch2 = message_hash(suite, full[0]) + full[1]
        transcript = [message_hash(suite, full[0]), *full[1:]]
        hello_msgs = [(b"", full[0]), (prefix_ch2, full[2])]
        at_sh, at_ee = 3, 4
    else:
        transcript = full
        hello_msgs = [(b"", full[0])]
        at_sh, at_ee = 1, 2
    for prefix, ch in hello_msgs:
        parsed = wolfssl.parse_client_hello(ch[4:])
        check(
            binder_of(suite, psk, prefix, ch) == (parsed.ext(41) or b"")[-suite.hash_len :],
            "a ClientHello's PSK binder does not match the PSK",
        )
    checks.append(f"PSK binder of each of the {len(hello_msgs)} ClientHello(s) recomputed")

    # Finished (RFC 8446 §4.4.4): HMAC(finished_key, Hash(transcript up to it)).
    s_fin, c_fin = full[at_ee + 1], full[at_ee + 2]
    for label, fin, upto in (
        ("SERVER_HANDSHAKE_TRAFFIC_SECRET", s_fin, at_ee + 1),
        ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", c_fin, at_ee + 2),
    ):
        fkey = suite.expand_label(bytes.fromhex(secrets[label]), b"finished", b"", suite.hash_len)
        want = suite.hmac(fkey, suite.digest(b"".join(transcript[:upto])))
        check(fin[4:] == want, f"Finished verify_data with {label}")
    checks.append("both Finished verify_data recomputed from the logged handshake secrets")

    derived: dict[str, str] = {}
    if case.options.kex == "psk_ke":
        early = suite.extract(b"", psk)
        hs = suite.extract(suite.derive_secret(early, b"derived", b""), bytes(suite.hash_len))
        master = suite.extract(suite.derive_secret(hs, b"derived", b""), bytes(suite.hash_len))
        th_sh = b"".join(transcript[: at_sh + 1])
        th_sfin = b"".join(transcript[: at_ee + 2])
        th_cfin = b"".join(transcript[: at_ee + 3])
        ours = {
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET": suite.derive_secret(hs, b"c hs traffic", th_sh),
            "SERVER_HANDSHAKE_TRAFFIC_SECRET": suite.derive_secret(hs, b"s hs traffic", th_sh),
            "CLIENT_TRAFFIC_SECRET_0": suite.derive_secret(master, b"c ap traffic", th_sfin),
            "SERVER_TRAFFIC_SECRET_0": suite.derive_secret(master, b"s ap traffic", th_sfin),
        }
        for label, value in ours.items():
            check(secrets.get(label) == value.hex(), f"{label} recomputed from the PSK differs")
        checks.append("psk_ke: all four logged secrets recomputed from the PSK and transcript")
        derived = {
            "early_secret": early.hex(),
            "handshake_secret": hs.hex(),
            "master_secret": master.hex(),
            "exporter_master_secret": suite.derive_secret(master, b"exp master", th_sfin).hex(),
            "resumption_master_secret": suite.derive_secret(master, b"res master", th_cfin).hex(),
        }

    data = {
        d: [o.plaintext for o in opened if o.direction == d and o.content_type == 23]
        for d in ("c2s", "s2c")
    }
    # with -I the client writes its line once more after the reply (examples/client)
    sends = 2 if case.options.key_update == "client" else 1
    check(data["c2s"] == [wolfssl.CLIENT_MESSAGE.encode()] * sends, f"client data {data['c2s']}")
    check(data["s2c"] == [wolfssl.SERVER_REPLY.encode()], f"server data {data['s2c']}")
    alerts = {(o.direction, o.plaintext) for o in opened if o.content_type == 21}
    check(alerts == {("c2s", b"\x01\x00"), ("s2c", b"\x01\x00")}, f"alerts {alerts}")
    checks.append("found both application lines and close_notify (0100) in both directions")
    if case.options.key_update:
        check(any(t == 24 for _, _, t, _ in messages), "no KeyUpdate message")
        check({(o.direction, o.epoch) for o in opened} >= {("c2s", 4), ("s2c", 4)}, "no epoch 4")
        checks.append("KeyUpdate seen; epoch 4 records opened with the next traffic secrets")

    sh = next(h for _, _, h in hellos if h.server and not h.is_hrr)
    cookie = next((h.ext(wolfssl.EXT_COOKIE) for _, _, h in hellos if h.is_hrr), None)
    return {
        "client_random": random_hex,
        "server_random": sh.random.hex(),
        "negotiated": {
            "hello_retry_request": hrr,
            "cookie_length": len(cookie) - 2 if cookie else None,
            "psk_key_exchange_modes_offered": wolfssl.psk_modes(ch1),
            "server_key_share_group": next(iter(wolfssl.key_share_groups(sh)), None),
            "selected_identity": int.from_bytes(sh.ext(wolfssl.EXT_PRE_SHARED_KEY) or b"", "big"),
            "client_hello_extensions": [t for t, _ in ch1.extensions],
            "server_hello_extensions": [t for t, _ in sh.extensions],
        },
        "handshake_messages": [
            {"dir": d, "message_seq": s, "type": HT_NAMES.get(t, t), "length": len(b)}
            for d, s, t, b in messages
        ],
        "records": [
            {
                "datagram": o.datagram,
                "dir": o.direction,
                "header": o.header.hex(),
                "epoch": o.epoch,
                "seq": o.seq,
                "content_type": CT_NAMES.get(o.content_type, o.content_type),
                "plaintext": o.plaintext.hex(),
            }
            for o in opened
        ],
        "derived": derived,
        "checks": checks,
    }


def capture(case: Case, build: wolfssl.Build, psk: bytes) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wolfssl-vectors-") as tmp:
        launcher = peers.Launcher(Path(tmp))
        try:
            session = wolfssl.run_session(launcher, build, Path(tmp), case.options)
        except pytest.fail.Exception as exc:
            raise CaptureError(str(exc)) from None
        finally:
            launcher.stop_all()
        check(session.client_rc == 0 and session.server_rc == 0, launcher.report())
        facts = analyse(case, session, psk)
        suite = suite_of(case.options.suite)
        return {
            "case": case.name,
            "description": case.description,
            "wolfssl_version": build.version,
            "wolfssl_build": build.stamp(),
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "commands": {
                "server": ["server", *session.server.proc.argv[1:]],
                "client": ["client", *session.client.proc.argv[1:]],
                "note": "the client's port is the relay's; both run in folders of their "
                "own with a certs/ symlink (certs/dh2048.pem marks the wolfSSL root)",
            },
            "suite": {"wolfssl_name": suite.name, "id": f"{suite.iana:04x}"},
            "psk": psk.hex(),
            "identity": case.options.identity,
            "keylog": session.client.secrets(),
            **{k: v for k, v in facts.items() if k not in ("derived", "checks")},
            "stdout": {
                "client": session.client.proc.stdout.splitlines(),
                "server": session.server.proc.stdout.splitlines(),
            },
            "datagrams": [{"dir": d.direction, "hex": d.data.hex()} for d in session.datagrams],
            "derived": facts["derived"],
            "checks": facts["checks"],
        }


def dumps(record: dict[str, Any]) -> str:
    """JSON with one line per datagram, record and key log entry: small, and diffable."""
    text = json.dumps(record, indent=1)
    # a list or object holding only scalars goes on one line
    flat = re.compile(r"[\[{]\n\s*((?:[^\[\]{}\n]+,\n\s*)*[^\[\]{}\n]+)\n\s*[\]}]")
    return (
        flat.sub(
            lambda m: (
                m.group(0)[0]
                + re.sub(r",\n\s*", ", ", m.group(1))
                + ("]" if m.group(0)[0] == "[" else "}")
            ),
            text,
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", action="append", default=[], metavar="CASE")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    cases = build_cases()
    if args.list:
        for c in cases:
            print(f"{c.name}: {c.description}")
        return 0
    unknown = set(args.only) - {c.name for c in cases}
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    selected = [c for c in cases if not args.only or c.name in args.only]
    reason = wolfssl.missing()
    if reason is not None:
        print(f"wolfSSL examples not available: {reason}", file=sys.stderr)
        return 2
    build = wolfssl.Build(wolfssl.build_dir())
    psk = bytes.fromhex(wolfssl.PSK_HEX)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for case in selected:
        for attempt in range(1, TRIES + 1):
            try:
                record = capture(case, build, psk)
            except CaptureError as exc:
                print(f"{case.name}: try {attempt} failed: {exc}", file=sys.stderr)
                continue
            path = args.out / f"{case.name}.json"
            text = dumps(record)
            assert json.loads(text) == record
            path.write_text(text)
            size = path.stat().st_size
            print(f"{case.name}: {len(record['datagrams'])} datagrams, {size} bytes -> {path}")
            break
        else:
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

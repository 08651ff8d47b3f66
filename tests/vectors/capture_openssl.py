#!/usr/bin/env python3
"""Capture DTLS 1.2 PSK test vectors from OpenSSL (an independent implementation).

This is a tool run by hand, not a test: pytest does not collect it (its name does
not match ``test_*.py``), and nothing in the test suite runs OpenSSL through it.
The JSON files it writes are committed and are what the tests read.

How to run (from the repository root; needs the ``openssl`` 3.x CLI on PATH and,
for the built-in self-check, the ``cryptography`` package, already a dependency
of dtlspipe)::

    python3 tests/vectors/capture_openssl.py                 # every case
    python3 tests/vectors/capture_openssl.py --list          # list the case names
    python3 tests/vectors/capture_openssl.py --only psk-aes128-ccm8 --only psk-aes128-gcm-sha256
    python3 tests/vectors/capture_openssl.py --out /tmp/vectors   # write elsewhere
    python3 tests/vectors/capture_openssl.py --show tests/vectors/openssl/psk-aes128-ccm8.json
                                                             # decode record headers of a file

It exits 0 only if every selected case was captured and passed its checks.
A full run takes about a minute and uses only 127.0.0.1.

What one case does
------------------
1. Starts ``openssl s_server -dtls1_2 -nocert -psk ... -accept 127.0.0.1:P1
   -naccept 1 -no_ticket -cipher <name> -keylogfile server.keylog [options]``
   with its stdin on a pipe, and waits for ``ACCEPT``.
2. Starts a UDP relay in this process listening on 127.0.0.1:P2 that forwards
   every datagram to P1 and back, recording each one, in order, with its
   direction (``c2s`` = client to server, ``s2c`` = server to client).
3. Starts ``openssl s_client -dtls1_2 -psk ... -connect 127.0.0.1:P2 -cipher <name>
   -keylogfile client.keylog -nocommands [options]`` and writes the client line
   to its stdin.  Once the server has printed that line, writes the server line to
   the server's stdin; once the client has printed it, closes the client's stdin
   (s_client then sends close_notify and exits).  The server's stdin is kept open
   until then, because s_server sends close_notify when its stdin reaches EOF.
4. Stops every process by its PID, with a deadline (terminate, then kill).
5. Checks: both keylog files hold the same single ``CLIENT_RANDOM`` line, whose
   client random is the one in the ClientHello; the ServerHello carries the
   expected cipher suite; no NewSessionTicket was sent; the first ClientHello's
   record version is ``feff``; a HelloVerifyRequest was sent; no retransmission
   happened (a case with a retransmission is captured again, up to 3 tries).
6. Self-check, independent of dtlspipe (Python ``hmac`` + ``cryptography``): derives
   the key block from the keylog master secret, decrypts and authenticates every
   epoch-1 record of both directions, checks both Finished verify_data values
   against the handshake transcript, finds the two plaintext lines, and, for the
   plain-PSK suites (no ECDHE, so the premaster secret is known), recomputes the
   master secret itself (RFC 7627 extended master secret, or RFC 5246 classic).
7. Writes ``tests/vectors/openssl/<case>.json`` (schema: see tests/vectors/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PSK_HEX = "000102030405060708090a0b0c0d0e0f"
IDENTITY = "Client_identity"
HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "openssl"

# A psk_identity_hint long enough that, with -mtu 256 (228-byte datagrams), the
# ServerKeyExchange must be fragmented.  OpenSSL refuses hints longer than
# PSK_MAX_IDENTITY_LEN (256 bytes: "SSL_CTX_use_psk_identity_hint: data length
# too long"), so 256 is the longest it can send; 700 was asked for but is impossible.
LONG_HINT = ("dtlspipe-long-psk-identity-hint-" * 8)[:256]

# openssl.cnf that turns off the extended master secret (RFC 7627) in every
# SSL_CTX the process makes.  Structure per config(5) / SSL_CONF_cmd(3).
NO_EMS_CNF = """\
openssl_conf = default_conf

[default_conf]
ssl_conf = ssl_sect

[ssl_sect]
system_default = system_default_sect

[system_default_sect]
Options = -ExtendedMasterSecret
"""

CBC_SUITES = [
    "PSK-AES128-CBC-SHA256",
    "PSK-AES256-CBC-SHA384",
    "ECDHE-PSK-AES128-CBC-SHA256",
    "ECDHE-PSK-AES256-CBC-SHA384",
]
BASE_SUITES = [
    "PSK-AES128-GCM-SHA256",
    "PSK-AES256-GCM-SHA384",
    "PSK-AES128-CCM",
    "PSK-AES256-CCM",
    "PSK-AES128-CCM8",
    "PSK-AES256-CCM8",
    "PSK-CHACHA20-POLY1305",
    "PSK-AES128-CBC-SHA256",
    "PSK-AES256-CBC-SHA384",
    "ECDHE-PSK-CHACHA20-POLY1305",
    "ECDHE-PSK-AES128-CBC-SHA256",
    "ECDHE-PSK-AES256-CBC-SHA384",
]
# -curves argument -> (IANA NamedGroup id, name used in case file names)
CURVES = {
    "X25519": (0x001D, "x25519"),
    "P-256": (0x0017, "p256"),
    "P-384": (0x0018, "p384"),
    "P-521": (0x0019, "p521"),
    "X448": (0x001E, "x448"),
}
GROUP_NAMES = {v[0]: k for k, v in CURVES.items()}


def build_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []

    def add(
        name: str,
        cipher: str,
        *,
        server: list[str] | None = None,
        client: list[str] | None = None,
        no_ems: bool = False,
        note: str = "",
    ) -> None:
        cases.append(
            {
                "name": name,
                "cipher": cipher,
                "server_opts": server or [],
                "client_opts": client or [],
                "no_ems": no_ems,
                "note": note,
            }
        )

    for s in BASE_SUITES:
        add(
            s.lower(),
            s,
            note="default options" + (" (encrypt-then-MAC negotiated)" if s in CBC_SUITES else ""),
        )
    for s in CBC_SUITES:
        add(
            s.lower() + "-no-etm",
            s,
            client=["-no_etm"],
            note="client sends -no_etm: classic MAC-then-encrypt CBC records",
        )
    for arg, (_gid, short) in CURVES.items():
        add(
            "ecdhe-psk-aes128-cbc-sha256-" + short,
            "ECDHE-PSK-AES128-CBC-SHA256",
            server=["-curves", arg],
            client=["-curves", arg],
            note=f"-curves {arg} on both sides",
        )
    add(
        "psk-aes128-gcm-sha256-no-ems",
        "PSK-AES128-GCM-SHA256",
        no_ems=True,
        note="extended master secret off on both sides (OPENSSL_CONF, Options = "
        "-ExtendedMasterSecret): RFC 5246 master secret derivation",
    )
    add(
        "psk-aes128-ccm8-mtu256-longhint",
        "PSK-AES128-CCM8",
        server=["-mtu", "256", "-psk_hint", LONG_HINT],
        client=["-mtu", "256"],
        note="-mtu 256 on both sides (228-byte datagrams) and a 256-byte "
        "psk_identity_hint (OpenSSL's maximum): the ServerKeyExchange is fragmented",
    )
    add(
        "psk-aes128-ccm8-hint123",
        "PSK-AES128-CCM8",
        server=["-psk_hint", "hint123"],
        note="-psk_hint hint123: a ServerKeyExchange carrying a short identity hint",
    )
    return cases


# --------------------------------------------------------------------------- openssl


def openssl_version() -> str:
    return subprocess.run(
        ["openssl", "version"], capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


def suite_table() -> dict[str, tuple[str, int]]:
    """OpenSSL name -> (IANA name, 16-bit id), as OpenSSL itself reports them."""
    out = subprocess.run(
        ["openssl", "ciphers", "-V", "-stdname", "-s", "-psk", "-tls1_2", "PSK:@SECLEVEL=0"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    table: dict[str, tuple[str, int]] = {}
    for line in out.splitlines():
        # 0xC0,0xA8 - TLS_PSK_WITH_AES_128_CCM_8 - PSK-AES128-CCM8 TLSv1.2 Kx=...
        parts = line.split()
        if len(parts) < 5 or not parts[0].startswith("0x"):
            continue
        hi, lo = (int(x, 16) for x in parts[0].split(","))
        table[parts[4]] = (parts[2], (hi << 8) | lo)
    return table


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Peer:
    """One openssl process with stdin on a pipe and its output collected."""

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.out = bytearray()
        self.err = bytearray()
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump(self, stream: Any, buf: bytearray) -> None:
        while True:
            chunk = os.read(stream.fileno(), 65536)
            with self._cond:
                if not chunk:
                    self._cond.notify_all()
                    return
                buf.extend(chunk)
                self._cond.notify_all()

    def wait_output(self, needle: bytes, deadline: float) -> bool:
        with self._cond:
            while needle not in self.out:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._threads[0].is_alive()):
                    return needle in self.out
                self._cond.wait(min(left, 0.1))
            return True

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()

    def wait_exit(self, timeout: float) -> bool:
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self, grace: float = 3.0) -> int:
        """Stop this process by its PID: wait up to `grace` s, then SIGTERM, then SIGKILL."""
        if not self.wait_exit(grace):
            self.proc.terminate()  # SIGTERM to self.proc.pid
            if not self.wait_exit(2.0):
                self.proc.kill()  # SIGKILL to self.proc.pid
                self.proc.wait(timeout=5)
        self.close_stdin()
        for t in self._threads:
            t.join(timeout=2)
        return int(self.proc.returncode)


class Relay:
    """UDP relay 127.0.0.1:<port> -> 127.0.0.1:<server_port> recording every datagram."""

    def __init__(self, server_port: int) -> None:
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.port = int(self.front.getsockname()[1])
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.bind(("127.0.0.1", 0))
        self.back.connect(("127.0.0.1", server_port))
        self.client_addr: tuple[str, int] | None = None
        self.log: list[tuple[float, str, bytes]] = []
        self.ignored = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.front, selectors.EVENT_READ, "c2s")
        sel.register(self.back, selectors.EVENT_READ, "s2c")
        while not self._stop.is_set():
            for key, _ in sel.select(0.05):
                try:
                    if key.data == "c2s":
                        data, addr = self.front.recvfrom(65535)
                        if self.client_addr is None:
                            self.client_addr = addr
                        elif addr != self.client_addr:
                            self.ignored += 1
                            continue
                        with self._lock:
                            self.log.append((time.monotonic(), "c2s", data))
                        self.back.send(data)
                    else:
                        data = self.back.recv(65535)
                        with self._lock:
                            self.log.append((time.monotonic(), "s2c", data))
                        if self.client_addr is not None:
                            self.front.sendto(data, self.client_addr)
                except OSError:
                    # ICMP port unreachable once a peer has exited: nothing to do.
                    continue
        sel.close()

    def last_activity(self) -> float:
        with self._lock:
            return self.log[-1][0] if self.log else 0.0

    def close(self) -> list[tuple[str, bytes]]:
        self._stop.set()
        self._thread.join(timeout=2)
        self.front.close()
        self.back.close()
        return [(d, b) for _, d, b in self.log]


# --------------------------------------------------------------------------- wire parsing

CT_NAMES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}
HS_NAMES = {
    0: "hello_request",
    1: "client_hello",
    2: "server_hello",
    3: "hello_verify_request",
    4: "new_session_ticket",
    11: "certificate",
    12: "server_key_exchange",
    13: "certificate_request",
    14: "server_hello_done",
    15: "certificate_verify",
    16: "client_key_exchange",
    20: "finished",
}


def parse_records(dgram: bytes) -> list[dict[str, Any]]:
    """Split one datagram into DTLS records (RFC 6347 section 4.1)."""
    recs = []
    off = 0
    while off < len(dgram):
        if len(dgram) - off < 13:
            raise ValueError(f"truncated record header at {off}")
        ctype = dgram[off]
        version = int.from_bytes(dgram[off + 1 : off + 3], "big")
        epoch = int.from_bytes(dgram[off + 3 : off + 5], "big")
        seq = int.from_bytes(dgram[off + 5 : off + 11], "big")
        length = int.from_bytes(dgram[off + 11 : off + 13], "big")
        frag = dgram[off + 13 : off + 13 + length]
        if len(frag) != length:
            raise ValueError(f"truncated record body at {off}")
        recs.append(
            {
                "type": ctype,
                "version": version,
                "epoch": epoch,
                "seq": seq,
                "length": length,
                "header": dgram[off : off + 13],
                "fragment": frag,
            }
        )
        off += 13 + length
    return recs


def parse_handshake_fragments(frag: bytes) -> list[dict[str, Any]]:
    out = []
    off = 0
    while off < len(frag):
        msg_type = frag[off]
        length = int.from_bytes(frag[off + 1 : off + 4], "big")
        msg_seq = int.from_bytes(frag[off + 4 : off + 6], "big")
        frag_off = int.from_bytes(frag[off + 6 : off + 9], "big")
        frag_len = int.from_bytes(frag[off + 9 : off + 12], "big")
        body = frag[off + 12 : off + 12 + frag_len]
        if len(body) != frag_len:
            raise ValueError("truncated handshake fragment")
        out.append(
            {
                "msg_type": msg_type,
                "length": length,
                "msg_seq": msg_seq,
                "frag_off": frag_off,
                "frag_len": frag_len,
                "body": body,
            }
        )
        off += 12 + frag_len
    return out


class Transcript:
    """Records of a capture, with epoch-0 handshake messages reassembled."""

    def __init__(self, datagrams: list[tuple[str, bytes]]) -> None:
        self.records: list[tuple[str, int, dict[str, Any]]] = []  # (dir, datagram index, rec)
        for i, (d, dg) in enumerate(datagrams):
            for rec in parse_records(dg):
                self.records.append((d, i, rec))
        # (dir, msg_seq) -> message; order = first appearance
        self.messages: dict[tuple[str, int], dict[str, Any]] = {}
        self.fragment_count: dict[tuple[str, int], int] = {}
        self.duplicate_fragments = 0
        seen: set[tuple[str, int, int, int, int]] = set()
        for d, _i, rec in self.records:
            if rec["type"] != 22 or rec["epoch"] != 0:
                continue
            for f in parse_handshake_fragments(rec["fragment"]):
                k = (d, f["msg_seq"], f["msg_type"], f["frag_off"], f["frag_len"])
                if k in seen:
                    self.duplicate_fragments += 1
                    continue
                seen.add(k)
                key = (d, f["msg_seq"])
                self.fragment_count[key] = self.fragment_count.get(key, 0) + 1
                m = self.messages.setdefault(
                    key,
                    {
                        "dir": d,
                        "msg_type": f["msg_type"],
                        "msg_seq": f["msg_seq"],
                        "length": f["length"],
                        "buf": bytearray(f["length"]),
                        "have": set(),
                    },
                )
                m["buf"][f["frag_off"] : f["frag_off"] + f["frag_len"]] = f["body"]
                m["have"].update(range(f["frag_off"], f["frag_off"] + f["frag_len"]))

    def complete_messages(self) -> list[dict[str, Any]]:
        return [m for m in self.messages.values() if len(m["have"]) == m["length"]]

    def find(self, d: str, msg_type: int) -> list[dict[str, Any]]:
        return [m for m in self.complete_messages() if m["dir"] == d and m["msg_type"] == msg_type]

    def count_type(self, d: str, ctype: int) -> int:
        return sum(1 for dd, _, r in self.records if dd == d and r["type"] == ctype)


def hs_message_bytes(m: dict[str, Any]) -> bytes:
    """The message as it enters the handshake hash (RFC 6347 4.2.6: unfragmented form)."""
    n: bytes = m["length"].to_bytes(3, "big")
    seq: bytes = m["msg_seq"].to_bytes(2, "big")
    return bytes([m["msg_type"]]) + n + seq + b"\0\0\0" + n + bytes(m["buf"])


def parse_client_hello(body: bytes) -> dict[str, Any]:
    off = 2
    random = body[off : off + 32]
    off += 32
    sid_len = body[off]
    off += 1 + sid_len
    cookie_len = body[off]
    cookie = body[off + 1 : off + 1 + cookie_len]
    off += 1 + cookie_len
    return {"version": int.from_bytes(body[0:2], "big"), "random": random, "cookie": cookie}


def parse_server_hello(body: bytes) -> dict[str, Any]:
    off = 2
    random = body[off : off + 32]
    off += 32
    sid_len = body[off]
    off += 1 + sid_len
    suite = int.from_bytes(body[off : off + 2], "big")
    off += 3  # suite + compression
    exts: list[int] = []
    if off < len(body):
        total = int.from_bytes(body[off : off + 2], "big")
        off += 2
        end = off + total
        while off < end:
            exts.append(int.from_bytes(body[off : off + 2], "big"))
            off += 4 + int.from_bytes(body[off + 2 : off + 4], "big")
    return {
        "version": int.from_bytes(body[0:2], "big"),
        "random": random,
        "suite": suite,
        "extensions": exts,
    }


def parse_server_key_exchange(body: bytes, ecdhe: bool) -> dict[str, Any]:
    hint_len = int.from_bytes(body[0:2], "big")
    out: dict[str, Any] = {"hint": body[2 : 2 + hint_len]}
    if ecdhe:
        off = 2 + hint_len
        if body[off] != 3:
            raise ValueError("curve_type is not named_curve")
        out["group"] = int.from_bytes(body[off + 1 : off + 3], "big")
        out["point_len"] = body[off + 3]
    return out


# --------------------------------------------------------------------------- self-check crypto


def p_hash(hash_name: str, secret: bytes, seed: bytes, n: int) -> bytes:
    out = b""
    a = seed
    while len(out) < n:
        a = hmac.new(secret, a, hash_name).digest()
        out += hmac.new(secret, a + seed, hash_name).digest()
    return out[:n]


def prf(hash_name: str, secret: bytes, label: bytes, seed: bytes, n: int) -> bytes:
    return p_hash(hash_name, secret, label + seed, n)


def suite_params(openssl_name: str) -> dict[str, Any]:
    n = openssl_name
    h = "sha384" if n.endswith("SHA384") else "sha256"
    if "GCM" in n:
        return {
            "kind": "aead",
            "aead": "gcm",
            "key": 32 if "AES256" in n else 16,
            "mac": 0,
            "iv": 4,
            "tag": 16,
            "explicit": 8,
            "prf": h,
        }
    if "CCM8" in n:
        return {
            "kind": "aead",
            "aead": "ccm",
            "key": 32 if "AES256" in n else 16,
            "mac": 0,
            "iv": 4,
            "tag": 8,
            "explicit": 8,
            "prf": h,
        }
    if "CCM" in n:
        return {
            "kind": "aead",
            "aead": "ccm",
            "key": 32 if "AES256" in n else 16,
            "mac": 0,
            "iv": 4,
            "tag": 16,
            "explicit": 8,
            "prf": h,
        }
    if "CHACHA20" in n:
        return {
            "kind": "aead",
            "aead": "chacha",
            "key": 32,
            "mac": 0,
            "iv": 12,
            "tag": 16,
            "explicit": 0,
            "prf": h,
        }
    if "CBC" in n:
        return {
            "kind": "cbc",
            "key": 32 if "AES256" in n else 16,
            "mac": 48 if h == "sha384" else 32,
            "iv": 0,
            "mac_hash": h,
            "prf": h,
        }
    raise ValueError(n)


class RecordOpener:
    def __init__(
        self,
        params: dict[str, Any],
        master: bytes,
        client_random: bytes,
        server_random: bytes,
        etm: bool,
    ) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

        self.p = params
        self.etm = etm
        mk, k, iv = params["mac"], params["key"], params["iv"]
        kb = prf(
            params["prf"],
            master,
            b"key expansion",
            server_random + client_random,
            2 * (mk + k + iv),
        )
        o = 0
        macs = kb[o : o + mk], kb[o + mk : o + 2 * mk]
        o += 2 * mk
        keys = kb[o : o + k], kb[o + k : o + 2 * k]
        o += 2 * k
        ivs = kb[o : o + iv], kb[o + iv : o + 2 * iv]
        self.mac_key = {"c2s": macs[0], "s2c": macs[1]}
        self.key = {"c2s": keys[0], "s2c": keys[1]}
        self.iv = {"c2s": ivs[0], "s2c": ivs[1]}
        if params["kind"] == "aead":
            self.aead: dict[str, Any] = {}
            for d, key in self.key.items():
                if params["aead"] == "gcm":
                    self.aead[d] = AESGCM(key)
                elif params["aead"] == "chacha":
                    self.aead[d] = ChaCha20Poly1305(key)
                else:
                    self.aead[d] = AESCCM(key, tag_length=params["tag"])

    def open(self, d: str, rec: dict[str, Any]) -> bytes:
        seq8 = rec["epoch"].to_bytes(2, "big") + rec["seq"].to_bytes(6, "big")
        head = bytes([rec["type"]]) + rec["version"].to_bytes(2, "big")
        frag: bytes = rec["fragment"]
        p = self.p
        if p["kind"] == "aead":
            if p["aead"] == "chacha":  # RFC 7905
                nonce = bytes(a ^ b for a, b in zip(self.iv[d], bytes(4) + seq8, strict=True))
                ct = frag
            else:
                nonce = self.iv[d] + frag[:8]
                ct = frag[8:]
            aad = seq8 + head + (len(ct) - p["tag"]).to_bytes(2, "big")
            return bytes(self.aead[d].decrypt(nonce, ct, aad))
        # CBC
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        h, ml = p["mac_hash"], p["mac"]
        if self.etm:  # RFC 7366: MAC over IV || ciphertext
            body, tag = frag[:-ml], frag[-ml:]
            want = hmac.new(
                self.mac_key[d], seq8 + head + len(body).to_bytes(2, "big") + body, h
            ).digest()
            if not hmac.compare_digest(tag, want):
                raise ValueError("EtM MAC mismatch")
            iv, ct = body[:16], body[16:]
            dec = Cipher(algorithms.AES(self.key[d]), modes.CBC(iv)).decryptor()
            padded = dec.update(ct) + dec.finalize()
            pad = padded[-1]
            if padded[-1 - pad :] != bytes([pad]) * (pad + 1):
                raise ValueError("bad CBC padding")
            return padded[: -1 - pad]
        iv, ct = frag[:16], frag[16:]
        dec = Cipher(algorithms.AES(self.key[d]), modes.CBC(iv)).decryptor()
        padded = dec.update(ct) + dec.finalize()
        pad = padded[-1]
        if padded[-1 - pad :] != bytes([pad]) * (pad + 1):
            raise ValueError("bad CBC padding")
        data, tag = padded[: -1 - pad - ml], padded[-1 - pad - ml : -1 - pad]
        want = hmac.new(
            self.mac_key[d], seq8 + head + len(data).to_bytes(2, "big") + data, h
        ).digest()
        if not hmac.compare_digest(tag, want):
            raise ValueError("MtE MAC mismatch")
        return data


def self_check(
    case: dict[str, Any],
    tr: Transcript,
    master: bytes,
    client_random: bytes,
    server_random: bytes,
    ems: bool,
    etm: bool,
    lines: tuple[bytes, bytes],
) -> dict[str, Any]:
    """Decrypt everything with the keylog secret; verify Finished and (plain PSK) the master."""
    p = suite_params(case["cipher"])
    opener = RecordOpener(p, master, client_random, server_random, etm)
    res: dict[str, Any] = {}
    plain: dict[str, list[tuple[int, bytes]]] = {"c2s": [], "s2c": []}
    opened = 0
    for d, _i, rec in tr.records:
        if rec["epoch"] != 1:
            continue
        plain[d].append((rec["type"], opener.open(d, rec)))
        opened += 1
    res["epoch1_records_decrypted"] = opened

    # Handshake transcript: everything but the first ClientHello and the HelloVerifyRequest.
    msgs = [
        m
        for m in tr.complete_messages()
        if not (m["msg_type"] == 3 or (m["msg_type"] == 1 and m["msg_seq"] == 0))
    ]
    hs = b"".join(hs_message_bytes(m) for m in msgs)
    fin = {d: [pt for t, pt in plain[d] if t == 22] for d in ("c2s", "s2c")}
    if len(fin["c2s"]) != 1 or len(fin["s2c"]) != 1:
        raise ValueError(f"expected one encrypted handshake record per side, got {fin}")
    cfin, sfin = fin["c2s"][0], fin["s2c"][0]
    if cfin[0] != 20 or sfin[0] != 20 or len(cfin) != 24 or len(sfin) != 24:
        raise ValueError("epoch-1 handshake record is not a Finished")
    hfn = p["prf"]
    cvd = prf(hfn, master, b"client finished", hashlib.new(hfn, hs).digest(), 12)
    if cfin[12:] != cvd:
        raise ValueError("client Finished verify_data mismatch")
    svd = prf(hfn, master, b"server finished", hashlib.new(hfn, hs + cfin).digest(), 12)
    if sfin[12:] != svd:
        raise ValueError("server Finished verify_data mismatch")
    res["finished_verify_data_ok"] = True

    app = {d: b"".join(pt for t, pt in plain[d] if t == 23) for d in ("c2s", "s2c")}
    if app["c2s"] != lines[0] or app["s2c"] != lines[1]:
        raise ValueError(f"application data mismatch: {app}")
    res["application_data_ok"] = True
    alerts = {d: [pt.hex() for t, pt in plain[d] if t == 21] for d in ("c2s", "s2c")}
    res["alerts"] = alerts

    if not case["cipher"].startswith("ECDHE"):
        psk = bytes.fromhex(PSK_HEX)
        pms = len(psk).to_bytes(2, "big") + bytes(len(psk)) + len(psk).to_bytes(2, "big") + psk
        if ems:
            cke_end = next(i for i, m in enumerate(msgs) if m["msg_type"] == 16)
            session_hash = hashlib.new(
                hfn, b"".join(hs_message_bytes(m) for m in msgs[: cke_end + 1])
            ).digest()
            ms = prf(hfn, pms, b"extended master secret", session_hash, 48)
        else:
            ms = prf(hfn, pms, b"master secret", client_random + server_random, 48)
        if ms != master:
            raise ValueError("recomputed master secret differs from the keylog")
        res["master_secret_recomputed"] = "ok (RFC 7627)" if ems else "ok (RFC 5246)"
    else:
        res["master_secret_recomputed"] = "n/a (ECDHE private keys unknown)"
    return res


# --------------------------------------------------------------------------- one case


def read_keylog(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [
        ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]


def run_once(
    case: dict[str, Any], suites: dict[str, tuple[str, int]], version: str, verbose: bool
) -> dict[str, Any]:
    cipher = case["cipher"]
    iana, suite_id = suites[cipher]
    c_line = f"ping from client {case['name']}\n".encode()
    s_line = f"pong from server {case['name']}\n".encode()
    with tempfile.TemporaryDirectory(prefix="dtlsvec-") as tmp:
        env = dict(os.environ)
        env.pop("OPENSSL_CONF", None)
        env_record: dict[str, str] = {}
        if case["no_ems"]:
            (Path(tmp) / "openssl.cnf").write_text(NO_EMS_CNF)
            env["OPENSSL_CONF"] = str(Path(tmp) / "openssl.cnf")
            env_record["OPENSSL_CONF"] = "openssl.cnf"

        server = relay = client = None
        try:
            for _ in range(5):  # port race: retry on a fresh port
                sport = free_udp_port()
                s_argv = [
                    "openssl",
                    "s_server",
                    "-dtls1_2",
                    "-nocert",
                    "-psk",
                    PSK_HEX,
                    "-psk_identity",
                    IDENTITY,
                    "-accept",
                    f"127.0.0.1:{sport}",
                    "-naccept",
                    "1",
                    "-no_ticket",
                    "-cipher",
                    cipher,
                    "-keylogfile",
                    "server.keylog",
                    *case["server_opts"],
                ]
                server = Peer(s_argv, tmp, env)
                if server.wait_output(b"ACCEPT", time.monotonic() + 5):
                    break
                server.stop(0.5)
                server = None
            if server is None:
                raise RuntimeError("s_server did not start")
            relay = Relay(sport)
            c_argv = [
                "openssl",
                "s_client",
                "-dtls1_2",
                "-psk",
                PSK_HEX,
                "-psk_identity",
                IDENTITY,
                "-connect",
                f"127.0.0.1:{relay.port}",
                "-cipher",
                cipher,
                "-keylogfile",
                "client.keylog",
                "-nocommands",
                *case["client_opts"],
            ]
            client = Peer(c_argv, tmp, env)
            client.write(c_line)
            if not server.wait_output(c_line, time.monotonic() + 15):
                raise RuntimeError("server never printed the client's line")
            server.write(s_line)
            if not client.wait_output(s_line, time.monotonic() + 10):
                raise RuntimeError("client never printed the server's line")
            client.close_stdin()  # s_client: close_notify, exit
            client_rc = client.stop(5.0)
            # Let the server read the close_notify (with -naccept 1 it then exits).
            server_exited = server.wait_exit(3.0)
            server.close_stdin()
            server_rc = server.stop(3.0)
            # Quiet period so that nothing in flight is missed.
            while time.monotonic() - relay.last_activity() < 0.3:
                time.sleep(0.05)
            ignored = relay.ignored
            datagrams = relay.close()
            relay = None
        finally:
            for peer in (client, server):
                if peer is not None and peer.proc.poll() is None:
                    peer.stop(0)
            if relay is not None:
                relay.close()

        s_log = read_keylog(Path(tmp) / "server.keylog")
        c_log = read_keylog(Path(tmp) / "client.keylog")
        s_out = server.out.decode(errors="replace")
        c_out = client.out.decode(errors="replace")
        if verbose:
            print(c_out, server.err.decode(errors="replace"), client.err.decode(errors="replace"))

    # ----- checks
    problems: list[str] = []
    if len(s_log) != 1 or len(c_log) != 1:
        problems.append(f"keylog lines: server {s_log!r}, client {c_log!r}")
    elif s_log[0] != c_log[0]:
        problems.append(f"keylog lines differ: {s_log[0]} / {c_log[0]}")
    keylog = c_log[0] if c_log else ""
    kparts = keylog.split()
    if len(kparts) != 3 or kparts[0] != "CLIENT_RANDOM":
        raise RuntimeError(f"unexpected keylog line {keylog!r}; problems={problems}")
    client_random, master = bytes.fromhex(kparts[1]), bytes.fromhex(kparts[2])

    tr = Transcript(datagrams)
    chs = tr.find("c2s", 1)
    shs = tr.find("s2c", 2)
    hvr = tr.find("s2c", 3)
    if len(chs) != 2 or len(shs) != 1 or len(hvr) != 1:
        problems.append(
            f"handshake shape: {len(chs)} ClientHello, {len(hvr)} HVR, {len(shs)} ServerHello"
        )
    ch1, ch2 = parse_client_hello(bytes(chs[0]["buf"])), parse_client_hello(bytes(chs[-1]["buf"]))
    sh = parse_server_hello(bytes(shs[0]["buf"]))
    hvr_body = bytes(hvr[0]["buf"]) if hvr else b""
    cookie_len = hvr_body[2] if len(hvr_body) > 2 else None
    if ch2["random"] != client_random:
        problems.append("keylog client_random is not the ClientHello random")
    if sh["suite"] != suite_id:
        problems.append(f"ServerHello suite {sh['suite']:#06x} != {suite_id:#06x}")
    if f"CIPHER is {cipher}" not in s_out:
        problems.append("s_server did not report the cipher")
    if tr.find("s2c", 4) or 0x0023 in sh["extensions"]:
        problems.append("NewSessionTicket / session_ticket extension present")
    if tr.duplicate_fragments or tr.count_type("c2s", 20) != 1 or tr.count_type("s2c", 20) != 1:
        problems.append("retransmission seen")
    first = tr.records[0][2]
    ems = 0x0017 in sh["extensions"]
    etm = 0x0016 in sh["extensions"]
    want_ems = not case["no_ems"]
    if ems != want_ems:
        problems.append(f"extended_master_secret negotiated={ems}, wanted {want_ems}")
    want_etm = "CBC" in cipher and "-no_etm" not in case["client_opts"]
    if etm != want_etm:
        problems.append(f"encrypt_then_mac negotiated={etm}, wanted {want_etm}")
    ecdhe = cipher.startswith("ECDHE")
    skes = tr.find("s2c", 12)
    ske = parse_server_key_exchange(bytes(skes[0]["buf"]), ecdhe) if skes else None
    group = ske.get("group") if ske else None
    if "-curves" in case["server_opts"]:
        want_group = CURVES[case["server_opts"][case["server_opts"].index("-curves") + 1]][0]
        if group != want_group:
            problems.append(f"group {group} != {want_group}")
    hint = None
    if "-psk_hint" in case["server_opts"]:
        hint = case["server_opts"][case["server_opts"].index("-psk_hint") + 1]
        if ske is None or ske["hint"] != hint.encode():
            problems.append("psk_identity_hint not in the ServerKeyExchange")
    ske_frags = tr.fragment_count.get(("s2c", skes[0]["msg_seq"]), 0) if skes else 0
    if case["name"].endswith("longhint"):
        if ske_frags < 2:
            problems.append("ServerKeyExchange was not fragmented")
        if max(len(b) for _, b in datagrams) > 256 - 28:
            problems.append("datagram larger than MTU-28")

    check = self_check(case, tr, master, client_random, sh["random"], ems, etm, (c_line, s_line))

    doc: dict[str, Any] = {
        "case": case["name"],
        "description": case["note"],
        "suite": {"openssl_name": cipher, "iana_name": iana, "id": f"{suite_id:04x}"},
        "openssl_version": version,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "commands": {"server": s_argv, "client": c_argv},
        "environment": env_record,
        **({"openssl_cnf": NO_EMS_CNF} if case["no_ems"] else {}),
        "psk": PSK_HEX,
        "identity": IDENTITY,
        "psk_identity_hint": hint,
        "keylog": keylog,
        "client_random": client_random.hex(),
        "server_random": sh["random"].hex(),
        "master_secret": master.hex(),
        "negotiated": {
            "extended_master_secret": ems,
            "encrypt_then_mac": etm,
            "group": None if group is None else f"{group:04x}",
            "group_name": GROUP_NAMES.get(group) if group is not None else None,
            "server_hello_extensions": [f"{e:04x}" for e in sh["extensions"]],
            "cookie_length": cookie_len,
            "server_key_exchange_fragments": ske_frags,
        },
        "client_plaintext": c_line.decode(),
        "server_plaintext": s_line.decode(),
        "datagrams": [{"dir": d, "hex": b.hex()} for d, b in datagrams],
        "checks": {
            "keylog_server_equals_client": bool(s_log and c_log and s_log[0] == c_log[0]),
            "no_new_session_ticket": not tr.find("s2c", 4),
            "first_client_hello_record_version": f"{first['version']:04x}",
            "client_hello_versions": [f"{ch1['version']:04x}", f"{ch2['version']:04x}"],
            "exit_codes": {"server": server_rc, "client": client_rc},
            "server_exited_by_itself": server_exited,
            "relay_ignored_datagrams": ignored,
            "self_check": check,
        },
    }
    if problems:
        raise CaptureProblem(problems, doc)
    return doc


class CaptureProblem(Exception):
    def __init__(self, problems: list[str], doc: dict[str, Any]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.doc = doc


def show(path: Path) -> None:
    """Print the record headers (and epoch-0 handshake headers) of a vector file."""
    doc = json.loads(path.read_text())
    print(f"{doc['case']}: {doc['suite']['iana_name']} ({doc['suite']['id']})")
    for i, dg in enumerate(doc["datagrams"]):
        data = bytes.fromhex(dg["hex"])
        print(f"#{i:<2d} {dg['dir']} {len(data)} bytes")
        for r in parse_records(data):
            line = (
                f"    {r['header'].hex()}  type={r['type']}({CT_NAMES.get(r['type'], '?')}) "
                f"version={r['version']:04x} epoch={r['epoch']} seq={r['seq']} "
                f"length={r['length']}"
            )
            print(line)
            if r["type"] == 22 and r["epoch"] == 0:
                for f in parse_handshake_fragments(r["fragment"]):
                    print(
                        f"        {HS_NAMES.get(f['msg_type'], f['msg_type'])}: length="
                        f"{f['length']} message_seq={f['msg_seq']} fragment_offset="
                        f"{f['frag_off']} fragment_length={f['frag_len']}"
                    )


def main() -> int:
    cases = build_cases()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--only", action="append", default=[], help="case name (repeatable)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--tries", type=int, default=3)
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument(
        "--show",
        type=Path,
        metavar="JSON",
        help="print the record headers of a vector file and exit",
    )
    args = ap.parse_args()
    if args.show:
        show(args.show)
        return 0
    if args.list:
        for c in cases:
            print(f"{c['name']:40s} {c['note']}")
        return 0
    names = {c["name"] for c in cases}
    for n in args.only:
        if n not in names:
            ap.error(f"unknown case {n}")
    selected = [c for c in cases if not args.only or c["name"] in args.only]
    version = openssl_version()
    suites = suite_table()
    args.out.mkdir(parents=True, exist_ok=True)
    ok = 0
    failed: list[str] = []
    for case in selected:
        last: Exception | None = None
        for attempt in range(1, args.tries + 1):
            try:
                doc = run_once(case, suites, version, args.verbose)
            except Exception as e:  # reported, then retried
                last = e
                print(f"  {case['name']}: attempt {attempt} failed: {e}", file=sys.stderr)
                continue
            path = args.out / f"{case['name']}.json"
            path.write_text(json.dumps(doc, indent=2) + "\n")
            n = len(doc["datagrams"])
            neg = doc["negotiated"]
            sc = doc["checks"]["self_check"]
            print(
                f"ok   {case['name']:40s} {n:2d} datagrams  "
                f"ems={neg['extended_master_secret']!s:5s} etm={neg['encrypt_then_mac']!s:5s} "
                f"master={sc['master_secret_recomputed']}"
            )
            ok += 1
            break
        else:
            failed.append(case["name"])
            print(f"FAIL {case['name']}: {last}")
    print(f"{ok} captured, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())

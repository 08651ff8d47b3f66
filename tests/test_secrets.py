"""Secrets and side channels (issue 4): keys stay out of reprs, errors, logs and core
files; secret comparisons are constant-time; GCM nonces are epoch||seq; the CBC check
does the same hash work whatever the padding; invalid records leave no trace."""

from __future__ import annotations

import ast
import hashlib
import hmac
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from helpers import PSK, S2C, Simulator, make_pair

import dtls.protection as protection
from dtls import ApplicationData, suite_by_name
from dtls.protection import CBCHMAC, additional_data
from dtls.record import iter_records

ROOT = Path(__file__).resolve().parent.parent


def established(suite: str = "PSK-AES128-GCM-SHA256", **kw: Any) -> Simulator:
    sim = Simulator(*make_pair(suite=suite, **kw)).run()
    assert sim.completed_at is not None
    return sim


def secrets_of(sim: Simulator) -> list[bytes]:
    """Every key byte string of both ends (PSK, traffic keys, MAC keys, IV salts)."""
    out = [PSK]
    for conn in (sim.client, sim.server_conn()):
        for epoch in (*conn._records.epochs.values(), *conn._write_epochs.values()):
            prot = epoch.protection
            for name in ("_key", "_mac_key", "_salt", "_iv"):
                value = getattr(prot, name, None)
                if isinstance(value, bytes) and value:
                    out.append(value)
    assert len(out) > 4
    return out


def reachable(root: object, limit: int = 20000) -> list[object]:
    """Objects reachable from ``root`` through attributes and containers."""
    seen: dict[int, object] = {}
    todo = [root]
    while todo and len(seen) < limit:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None))):
            continue
        seen[id(obj)] = obj
        if isinstance(obj, dict):
            todo.extend(obj.keys())
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            todo.extend(obj)
        elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("dtls"):
            todo.extend(vars(obj).values())
        elif hasattr(obj, "__slots__") and type(obj).__module__.startswith("dtls"):
            todo.extend(getattr(obj, s) for s in obj.__slots__ if hasattr(obj, s))
    return list(seen.values())


def leaks(text: str, secrets: list[bytes]) -> list[str]:
    return [s.hex() for s in secrets if s.hex() in text.lower() or repr(s) in text]


@pytest.mark.parametrize("suite", ["PSK-AES128-GCM-SHA256", "ECDHE-PSK-AES128-CBC-SHA256"])
def test_no_repr_or_str_shows_a_key(suite: str) -> None:
    sim = established(suite)
    secrets = secrets_of(sim)
    objects = reachable(sim.client) + reachable(sim.server)
    assert len(objects) > 20
    dtls_objects = [o for o in objects if type(o).__module__.startswith("dtls")]
    assert dtls_objects
    for obj in objects:
        assert not leaks(repr(obj) + str(obj), secrets), type(obj)


def test_failure_reasons_do_not_carry_keys() -> None:
    client, server = make_pair()
    server.configuration.psk = b"\x42" * 32  # the wrong key
    sim = Simulator(client, server).run()
    closed = [
        e
        for _, e in sim.client_events + sim.server_events
        if type(e).__name__ == "ConnectionClosed"
    ]
    assert len(closed) == 2 and any("wrong PSK" in e.reason for e in closed)
    assert not leaks(repr(closed), [PSK, b"\x42" * 32])


def test_tunnel_logs_show_no_key(caplog: pytest.LogCaptureFixture) -> None:
    from dtlspipe.demo import run_demo

    psk = bytes(range(100, 132))
    with caplog.at_level(logging.DEBUG):
        assert anyio.run(run_demo, psk) == 0
    text = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert caplog.records  # the demo logged something
    assert psk.hex() not in text.lower() and repr(psk) not in text


def test_cli_never_echoes_a_bad_key(capsys: pytest.CaptureFixture[str]) -> None:
    from dtlspipe.cli import main

    bad = "00112233445566778899aabbccddeeffZZ"
    assert main(["-psk", bad, "server", "127.0.0.1:0", "127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and bad not in err and "psk" in err.lower()


def test_cli_processes_write_no_core_files() -> None:
    code = (
        "import resource; from dtlspipe.cli import no_core_dumps; no_core_dumps(); "
        "print(resource.getrlimit(resource.RLIMIT_CORE))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "(0, 0)"


# -- constant-time comparisons --------------------------------------------------------------

SECRET_WORDS = ("mac", "tag", "verify", "finished", "cookie", "psk", "secret", "digest")


def _mentions_secret(node: ast.AST) -> bool:
    names = [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]
    names += [n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)]
    return any(word in name.lower() for name in names for word in SECRET_WORDS)


def test_secret_bytes_are_never_compared_with_eq() -> None:
    """Static check over dtls/: no ==/!= between expressions named like a MAC, tag,
    Finished, cookie or key; those go through hmac.compare_digest."""
    offenders, digests = [], 0
    for path in sorted((ROOT / "dtls").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(
                isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops
            ):
                sides = [node.left, *node.comparators]
                if any(isinstance(s, ast.Constant) and s.value is None for s in sides):
                    continue
                if any(
                    isinstance(s, ast.Call) and getattr(s.func, "id", "") == "len" for s in sides
                ):
                    continue  # lengths are public: they are on the wire
                if all(_mentions_secret(s) for s in sides):
                    offenders.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Attribute) and node.attr == "compare_digest":
                digests += 1
    assert offenders == []
    assert digests >= 4  # cookie (current and previous secret), Finished, two MAC checks


# -- nonces -------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", ["PSK-AES128-GCM-SHA256", "PSK-AES128-CCM8"])
def test_explicit_nonce_is_epoch_and_sequence_number(suite: str) -> None:
    sim = established(suite)

    def no_randomness(n: int) -> bytes:
        raise AssertionError("an AEAD record asked for random bytes")

    for epoch in sim.client._write_epochs.values():
        if epoch.protection is not None:
            epoch.protection._random = no_randomness  # type: ignore[attr-defined]
    for i in range(5):
        sim.client.send(b"x" * i)
    for datagram in sim.client.datagrams_to_send():
        for record in iter_records(datagram):
            assert record.fragment[:8] == record.epoch.to_bytes(2, "big") + record.seq.to_bytes(
                6, "big"
            )


# -- CBC with MAC-then-encrypt: the same work whatever the padding --------------------------


class _CountingHash:
    """A hash object that knows how many bytes it has absorbed, copies included."""

    def __init__(self, counter: CountingHashes, real: Any, fed: int) -> None:
        self._counter, self._real, self._fed = counter, real, fed

    def update(self, data: bytes) -> None:
        self._real.update(data)
        self._fed += len(data)

    def copy(self) -> _CountingHash:
        return _CountingHash(self._counter, self._real.copy(), self._fed)

    def digest(self) -> bytes:
        self._counter.blocks += self._counter.cost(self._fed)
        return bytes(self._real.digest())

    @property
    def block_size(self) -> int:
        return int(self._real.block_size)


class CountingHashes:
    """Stands in for the hashlib module inside dtls.protection and adds up the hash
    compression blocks every digest costs (FIPS 180-4 padding), however the hash
    states were prepared (the HMAC key pads are hashed once and copied)."""

    def __init__(self, hash_name: str) -> None:
        self.block = hashlib.new(hash_name).block_size
        self.length_field = 8 if self.block == 64 else 16
        self.blocks = 0

    def cost(self, fed: int) -> int:
        return -(-(fed + 1 + self.length_field) // self.block)

    def new(self, name: str, data: bytes = b"") -> _CountingHash:
        return _CountingHash(self, hashlib.new(name, data), len(data))


def mte_record(prot: CBCHMAC, seq8: bytes, content: bytes, pad: int, good: bool) -> bytes:
    """A MAC-then-encrypt record with exactly ``pad`` + 1 padding bytes."""
    mac = hmac.new(
        prot._mac_key, additional_data(seq8, 23, len(content)) + content, prot._hash
    ).digest()
    padding = bytes((pad,)) * (pad + 1)
    if not good:
        padding = bytes((pad ^ 1,)) + padding[1:] if pad else bytes((7,))
    iv = bytes(16)
    enc = Cipher(algorithms.AES(prot._key), modes.CBC(iv)).encryptor()
    return iv + enc.update(content + mac + padding) + enc.finalize()


@pytest.mark.parametrize("suite", ["PSK-AES128-CBC-SHA256", "PSK-AES256-CBC-SHA384"])
def test_mac_then_encrypt_check_costs_the_same_whatever_the_padding(
    suite: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cipher_suite = suite_by_name(suite)
    mac_len = cipher_suite.mac_key_len
    counter = CountingHashes(cipher_suite.prf_hash)
    monkeypatch.setattr(protection, "hashlib", counter)
    prot = CBCHMAC(  # its HMAC pads are prepared through the counting hashlib
        cipher_suite,
        bytes(range(16 if "128" in suite else 32)),
        bytes(range(mac_len)),
        bytes,
        encrypt_then_mac=False,
    )
    seq8 = bytes(8)
    total = 512  # bytes of content + MAC + padding: the same record length for every case
    costs: dict[tuple[int, bool], int] = {}
    for pad in range(0, 256, 5):
        for good in (True, False):
            content = bytes(total - mac_len - pad - 1)
            record = mte_record(prot, seq8, content, pad, good)
            assert len(record) == 16 + total
            counter.blocks = 0
            if good:
                assert prot.open(seq8, 23, record) == content
            else:
                with pytest.raises(protection.BadRecordError):
                    prot.open(seq8, 23, record)
            costs[(pad, good)] = counter.blocks
    assert len(set(costs.values())) == 1, costs


@pytest.mark.parametrize("suite", ["PSK-AES128-CBC-SHA256", "PSK-AES256-CBC-SHA384"])
def test_cid_mac_then_encrypt_costs_the_same_in_both_forms(
    suite: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tls12_cid record (RFC 9146 §5.1) is checked against RFC 9146's MAC and pion's
    (the inner plaintext hashed twice): both always, each topped up, so the cost depends
    on neither the padding nor which form the record used."""
    cipher_suite = suite_by_name(suite)
    mac_len = cipher_suite.mac_key_len
    counter = CountingHashes(cipher_suite.prf_hash)
    monkeypatch.setattr(protection, "hashlib", counter)
    key, mac_key = bytes(range(16 if "128" in suite else 32)), bytes(range(mac_len))
    prot = CBCHMAC(cipher_suite, key, mac_key, bytes, encrypt_then_mac=False)
    epoch_seq = 1 << 48 | 9
    prefix = protection.cid_prefix(epoch_seq, bytes(range(8)))
    total = 512
    costs: dict[tuple[int, bool, str], int] = {}
    for pad in range(0, 256, 15):
        for good in (True, False):
            for form in ("rfc", "pion"):
                inner = bytes(total - mac_len - pad - 1 - 1) + b"\x17"
                mac_input = prefix + len(inner).to_bytes(2, "big") + inner
                if form == "pion":
                    mac_input += inner
                mac = hmac.new(mac_key, mac_input, cipher_suite.prf_hash).digest()
                padding = bytes((pad,)) * (pad + 1)
                if not good:
                    padding = bytes((pad ^ 1,)) + padding[1:] if pad else bytes((7,))
                enc = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
                record = bytes(16) + enc.update(inner + mac + padding) + enc.finalize()
                counter.blocks = 0
                if good:
                    assert prot.open_with(epoch_seq, prefix, record) == inner
                else:
                    with pytest.raises(protection.BadRecordError):
                        prot.open_with(epoch_seq, prefix, record)
                costs[(pad, good, form)] = counter.blocks
    assert len(set(costs.values())) == 1, costs


# -- invalid records: dropped with no trace ---------------------------------------------------


@pytest.mark.parametrize(
    ("suite", "etm"),
    [
        ("PSK-AES128-GCM-SHA256", True),
        ("PSK-CHACHA20-POLY1305", True),
        ("PSK-AES128-CBC-SHA256", True),
        ("PSK-AES128-CBC-SHA256", False),
    ],
)
def test_invalid_records_are_dropped_without_a_trace(suite: str, etm: bool) -> None:
    """RFC 6347 §4.1.2.7: no alert, no event, no state change, whatever was damaged."""
    sim = established(suite, encrypt_then_mac=etm)
    conn = sim.server_conn()
    conn.send(b"a genuine record of some length")
    (datagram,) = conn.datagrams_to_send()
    window = sim.client._records.epochs[1].window
    before = ((window.top, window._bits), sim.client.state, len(sim.client_events), len(sim.log))
    for pos in (13, 20, len(datagram) - 17, len(datagram) - 1):  # nonce/IV, body, pad, tag
        bad = bytearray(datagram)
        bad[pos] ^= 0x01
        sim.inject(S2C, bytes(bad))
        after = ((window.top, window._bits), sim.client.state, len(sim.client_events), len(sim.log))
        assert after == before
    sim.inject(S2C, datagram)  # the genuine one still goes through afterwards
    assert sim.client_events[-1][1] == ApplicationData(b"a genuine record of some length")

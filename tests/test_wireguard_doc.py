"""docs/wireguard.md stays consistent: its wg-quick files, command lines, tables and the
``dtlspipe allowedips`` output it shows are checked against each other and the code.

The page's ``dtlspipe`` command lines are parsed with :func:`dtlspipe.options.parse_args`;
the wg-quick files (```ini blocks starting ``# server host:`` / ``# client host:``) are
read as wg-quick reads them (sections, ``Key = value``, ``#`` comments, repeatable keys).
Each check takes the page's text, so that the last test can show every check failing on
a page with one figure or address changed.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from dtls.constants import RECORD_HEADER_LEN
from dtls.protection import CBCHMAC
from dtlspipe.allowedips import allowed_ips, main
from dtlspipe.cli import SERVER_CID_LENGTH
from dtlspipe.options import DEFAULT_CIPHERS, Command, Options, StaleMode, parse_args

DOC = Path(__file__).resolve().parent.parent / "docs" / "wireguard.md"
TEXT = DOC.read_text(encoding="utf-8")
MINUS = "\N{MINUS SIGN}"  # what the page's tables subtract with
WG_OVERHEAD = 16 + 16  # data message header (type, receiver, counter) + Poly1305 tag
Config = dict[str, list[tuple[str, str]]]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def configs(text: str) -> dict[str, Config]:
    """{"server": ..., "client": ...}: each wg-quick file as {section: [(key, value)]}."""
    found: dict[str, Config] = {}
    for block in blocks(text, "ini"):
        head = re.match(r"# (server|client) host: /etc/wireguard/wg0\.conf\n", block)
        if head is None:
            continue
        conf: Config = {}
        section = ""
        for raw in block.splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("["):
                section = line.strip("[]")
                assert section not in conf, f"two [{section}] sections"
                conf[section] = []
                continue
            key, sep, value = line.partition("=")
            assert sep and section, f"not a wg-quick line: {raw!r}"
            conf[section].append((key.strip(), value.strip()))
        assert head.group(1) not in found, f"two {head.group(1)} configurations"
        found[head.group(1)] = conf
    assert set(found) == {"server", "client"}, f"wg-quick files found: {sorted(found)}"
    return found


def one(conf: Config, section: str, key: str) -> str:
    values = [v for k, v in conf.get(section, []) if k == key]
    assert len(values) == 1, f"[{section}] {key}: {values}"
    return values[0]


def commands(text: str) -> dict[Command, Options]:
    """The page's ``dtlspipe ... server|client`` lines, parsed as the program would."""
    found: dict[Command, Options] = {}
    for block in blocks(text, "sh"):
        for line in block.splitlines():
            words = shlex.split(line)
            environ = {}
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                name, _, value = words.pop(0).partition("=")
                environ[name] = "00112233445566778899aabbccddeeff" if value == "<key>" else value
            if not words or words[0] != "dtlspipe":
                continue
            opts = parse_args(words[1:], environ)
            if opts.command in (Command.SERVER, Command.CLIENT):
                assert opts.command not in found, f"two {opts.command.value} command lines"
                found[opts.command] = opts
    assert set(found) == {Command.SERVER, Command.CLIENT}, sorted(c.value for c in found)
    return found


def mtu_table(text: str) -> dict[str, tuple[int, int]]:
    """The MTU arithmetic table: {layer: (IPv4 path, IPv6 path)}, minus signs kept."""
    match = re.search(r"^\| layer \| IPv4 path \| IPv6 path \|.*\n\|[-|]+\|\n((?:\|.*\n)+)",
                      text, flags=re.M)  # fmt: skip
    assert match, "MTU table not found"
    rows: dict[str, tuple[int, int]] = {}
    for row in match.group(1).splitlines():
        cells = [c.strip().strip("*") for c in row.strip("|").split("|")]
        v4, v6 = (int(c.replace(MINUS, "-")) for c in cells[1:3])
        rows[cells[0]] = (v4, v6)
    return rows


def derived_mtus(text: str) -> tuple[int, int]:
    rows = mtu_table(text)
    path = rows.pop("path MTU")
    result = rows.pop("WireGuard MTU")
    assert all(v4 < 0 and v6 < 0 for v4, v6 in rows.values()), "overheads are subtracted"
    computed = (path[0] + sum(v[0] for v in rows.values()),
                path[1] + sum(v[1] for v in rows.values()))  # fmt: skip
    assert result == computed, f"table says {result}, its rows add up to {computed}"
    return computed


# -- the checks --------------------------------------------------------------------------


def check_endpoint(text: str) -> None:
    """The client's WireGuard sends to the dtlspipe client's listen address."""
    client = commands(text)[Command.CLIENT]
    endpoint = one(configs(text)["client"], "Peer", "Endpoint")
    assert client.bind is not None and endpoint == str(client.bind), (endpoint, client.bind)
    assert ipaddress.ip_address(client.bind.host).is_loopback


def check_listen_port(text: str) -> None:
    """The dtlspipe server forwards to the server's WireGuard, on its own host."""
    server = commands(text)[Command.SERVER]
    listen = one(configs(text)["server"], "Interface", "ListenPort")
    assert server.remote is not None and int(listen) == server.remote.port, (listen, server.remote)
    assert ipaddress.ip_address(server.remote.host).is_loopback
    assert "Endpoint" not in dict(configs(text)["server"]["Peer"])


def check_keepalive(text: str) -> None:
    """The client keeps its sessions busy: keepalives within the idle time, and both
    dtlspipe ends wait for both sides' silence, as the page says."""
    keepalive = int(one(configs(text)["client"], "Peer", "PersistentKeepalive"))
    assert keepalive == 25, keepalive
    for opts in commands(text).values():
        assert keepalive < opts.idle_time == 30.0, opts.idle_time
        assert opts.stale_mode is StaleMode.BOTH, (opts.command, opts.stale_mode)
    assert re.search(r"`-idle-time`, `30s` by default", text)


def check_mtu(text: str) -> None:
    """The table's overheads are the code's, its result adds up, and both files use the
    smaller of its two columns; the ping sizes follow."""
    rows = mtu_table(text)
    suite = DEFAULT_CIPHERS[0]
    assert suite.name == "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256" and suite.name in text
    cbc = CBCHMAC(suite, bytes(16), bytes(suite.mac_key_len), bytes, encrypt_then_mac=True)
    expected = {
        "outer IP header": (-20, -40),
        "outer UDP header": (-8, -8),
        "DTLS record header": (-RECORD_HEADER_LEN,) * 2,
        "connection ID and inner content type": (-(SERVER_CID_LENGTH + 1),) * 2,
        "WireGuard data header": (-16, -16),
        "WireGuard Poly1305 tag": (-16, -16),
    }
    for layer, value in expected.items():
        assert rows[layer] == value, (layer, rows[layer], value)
    cbc_rows = ("CBC explicit IV", "CBC padding, at most", "HMAC-SHA256")
    assert sum(rows[r][0] for r in cbc_rows) == -cbc.overhead
    assert rows["HMAC-SHA256"][0] == -suite.mac_key_len
    v4, v6 = derived_mtus(text)
    mtu = min(v4, v6)
    for side in ("server", "client"):
        assert int(one(configs(text)[side], "Interface", "MTU")) == mtu, side
    assert f"use **{mtu}**" in text
    assert f"ping -M do -s {mtu - 28} 10.8.0.1" in text and f"`-s {mtu - 27}` must fail" in text
    assert f"ping -M do -s {1500 - 28} 203.0.113.7" in text


def check_suite_table(text: str) -> None:
    """Each suite row's MTUs follow from its per-record figure and the other rows."""
    rows = re.findall(r"^\| (AES|ChaCha)[^|]*\| (?:at most )?(\d+) \| (\d+) / (\d+) \| "
                      r"(\d+) / (\d+) \|$", text, flags=re.M)  # fmt: skip
    assert len(rows) == 5, rows
    fixed = 28 + RECORD_HEADER_LEN + WG_OVERHEAD
    for _, added, *mtus in rows:
        cid = SERVER_CID_LENGTH + 1
        want = [1500 - fixed - cid - int(added), 1500 - fixed - 20 - cid - int(added)]
        want += [want[0] + cid, want[1] + cid]
        assert [int(m) for m in mtus] == want, (added, mtus, want)


def check_allowed_ips(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The page shows what ``dtlspipe allowedips`` prints for the server's address, and
    the client's file uses that list."""
    match = re.search(r"^\$ dtlspipe allowedips (.+)\n(AllowedIPs = .+)\n", text, flags=re.M)
    assert match, "no dtlspipe allowedips example"
    args = match.group(1).split()
    server_address = re.search(r"public address `([^`]+)`", text)
    assert server_address and args == [server_address.group(1)], args
    printed = match.group(2)
    assert printed == "AllowedIPs = " + ", ".join(allowed_ips(args))
    assert main(args) == 0
    assert capsys.readouterr().out == printed + "\n"
    client = configs(text)["client"]
    assert "AllowedIPs = " + one(client, "Peer", "AllowedIPs") == printed
    assert server_address.group(1) not in one(client, "Peer", "AllowedIPs").split(", ")


# -- the tests ----------------------------------------------------------------------------


def test_endpoint_is_the_client_listen_address() -> None:
    check_endpoint(TEXT)


def test_server_forwards_to_the_listen_port() -> None:
    check_listen_port(TEXT)


def test_persistent_keepalive() -> None:
    check_keepalive(TEXT)


def test_mtu_matches_the_table() -> None:
    check_mtu(TEXT)


def test_suite_table() -> None:
    check_suite_table(TEXT)


def test_allowed_ips_line(capsys: pytest.CaptureFixture[str]) -> None:
    check_allowed_ips(TEXT, capsys)


#: the server's ListenPort and the client's MTU, each made unique by its neighbours
SERVER_PORT_LINE = "ListenPort = 51820\nMTU = 1334\n# only"
CLIENT_MTU_LINE = "PrivateKey = <the client's private key>\nListenPort = 51820\nMTU = 1334"
CHECKS: dict[str, Callable[[str], None]] = {
    "endpoint": check_endpoint,
    "listen_port": check_listen_port,
    "keepalive": check_keepalive,
    "mtu": check_mtu,
    "suite_table": check_suite_table,
}


@pytest.mark.parametrize(
    ("check", "old", "new"),
    [
        ("endpoint", "Endpoint = 127.0.0.1:51821", "Endpoint = 127.0.0.1:51822"),
        ("endpoint", "client 127.0.0.1:51821 server", "client 127.0.0.1:2816 server"),
        ("listen_port", SERVER_PORT_LINE, SERVER_PORT_LINE.replace("51820", "51830")),
        ("listen_port", "2815 127.0.0.1:51820", "2815 127.0.0.1:51821"),
        ("keepalive", "PersistentKeepalive = 25\n", ""),
        ("keepalive", "PersistentKeepalive = 25\n", "PersistentKeepalive = 35\n"),
        ("keepalive", "-stale-mode both client", "client"),
        ("mtu", CLIENT_MTU_LINE, CLIENT_MTU_LINE.replace("1334", "1354")),
        ("mtu", "| **WireGuard MTU** | **1354** |", "| **WireGuard MTU** | **1355** |"),
        ("mtu", f"SHA256 | {MINUS}32 | {MINUS}32 |", f"SHA256 | {MINUS}20 | {MINUS}32 |"),
        ("mtu", f"type | {MINUS}9 | {MINUS}9 |", f"type | {MINUS}0 | {MINUS}0 |"),
        ("mtu", "ping -M do -s 1306", "ping -M do -s 1316"),
        ("suite_table", "| 24 | 1394 / 1374 |", "| 24 | 1403 / 1374 |"),
        ("suite_table", "| 1338 / 1318 | 1347 / 1327 |", "| 1338 / 1318 | 1347 / 1337 |"),
    ],
)  # fmt: skip
def test_checks_can_fail(check: str, old: str, new: str) -> None:
    assert TEXT.count(old) == 1, f"{old!r} appears {TEXT.count(old)} times"
    CHECKS[check](TEXT)
    with pytest.raises(AssertionError):
        CHECKS[check](TEXT.replace(old, new))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("203.0.113.6/32, 203.0.113.8/29", "203.0.113.6/31, 203.0.113.8/29"),  # both copies
        ("$ dtlspipe allowedips 203.0.113.7", "$ dtlspipe allowedips 203.0.113.8"),
        ("public address `203.0.113.7`", "public address `203.0.113.9`"),
    ],
)
def test_allowed_ips_check_can_fail(old: str, new: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert old in TEXT
    with pytest.raises(AssertionError):
        check_allowed_ips(TEXT.replace(old, new), capsys)


def test_allowed_ips_check_sees_the_client_file(capsys: pytest.CaptureFixture[str]) -> None:
    """The client's file alone differs from the example (it comes first on the page)."""
    line = "AllowedIPs = " + ", ".join(allowed_ips(["203.0.113.7"]))
    assert TEXT.count(line) == 2 and TEXT.index(line) < TEXT.index("$ dtlspipe allowedips")
    check_allowed_ips(TEXT, capsys)
    with pytest.raises(AssertionError):
        check_allowed_ips(TEXT.replace(line, line.removesuffix(", ::/0"), 1), capsys)

"""The command line as users meet it: errors of use, ``-h``, and the small subcommands.

Every error of use must print exactly one line on stderr, nothing on stdout, and exit 2
(like the Go program); ``-h`` exits 0 and lists every option with its default.
"""

from __future__ import annotations

import os
import re
import socket

import pytest
import tunnelkit as tk

pytestmark = pytest.mark.e2e

K = "00112233445566778899aabbccddeeff"
B = "127.0.0.1:0"  # port 0: should a case wrongly start, it holds no known port
R = "127.0.0.1:9"

# (id, argv, regex the one line must match (case-insensitive))
USAGE_ERRORS = [
    ("no-psk", ["server", B, R], r"psk"),
    ("empty-psk", ["-psk", "", "client", B, R], r"psk"),
    ("bad-hex", ["-psk", "zz11", "server", B, R], r"hex"),
    ("odd-hex", ["-psk", "001", "server", B, R], r"hex"),
    ("bad-bind-address", ["-psk", K, "server", "127.0.0.1", R], r"address"),
    ("bad-bind-port", ["-psk", K, "client", "127.0.0.1:99999", R], r"address|port"),
    ("bad-remote-address", ["-psk", K, "client", B, "127.0.0.1:0"], r"address|port"),
    ("ipv6-without-brackets", ["-psk", K, "server", B, "::1:5"], r"address"),
    ("unknown-cipher", ["-psk", K, "-ciphers", "TLS-NULL-WITH-NULL", "server", B, R], r"cipher"),
    ("unknown-curve", ["-psk", K, "-curves", "P-999", "server", B, R], r"curve"),
    ("bad-idle-time", ["-psk", K, "-idle-time", "30", "server", B, R], r"idle-time"),
    ("bad-timeout", ["-psk", K, "-timeout", "ten", "client", B, R], r"timeout"),
    ("bad-rate", ["-psk", K, "-rate-limit", "20", "server", B, R], r"rate-limit"),
    ("bad-rate-duration", ["-psk", K, "-rate-limit", "20/x", "server", B, R], r"rate-limit"),
    ("bad-time-limit", ["-psk", K, "-time-limit", "abc", "server", B, R], r"time-limit"),
    ("backwards-time-limit", ["-psk", K, "-time-limit", "2s-1s", "client", B, R], r"time-limit"),
    ("bad-stale-mode", ["-psk", K, "-stale-mode", "never", "server", B, R], r"stale-mode"),
    ("bad-mtu", ["-psk", K, "-mtu", "10", "server", B, R], r"mtu"),
    ("unknown-option", ["-psk", K, "-frobnicate", "server", B, R], r"frobnicate"),
    ("option-after-subcommand", ["server", "-psk", K, B, R], r"before the subcommand|server"),
    ("server-one-arg", ["-psk", K, "server", B], r"server"),
    ("client-three-args", ["-psk", K, "client", B, R, R], r"client"),
    ("hoppingclient-no-group", ["-psk", K, "hoppingclient", B], r"hoppingclient"),
    ("bad-endpoint-group", ["-psk", K, "hoppingclient", B, "10.0.0.0/8"], r"endpoint group"),
    ("genpsk-key-length", ["-key-length", "65", "genpsk"], r"key-length"),
    ("version-extra-arg", ["version", "now"], r"version"),
    ("unknown-subcommand", ["-psk", K, "tunnel", B, R], r"tunnel|subcommand"),
    ("no-subcommand", [], r"subcommand"),
]


def _env_without_psk() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DTLSPIPE_PSK", None)
    return env


def assert_usage_error(args: list[str], pattern: str) -> None:
    res = tk.run_cli(*args, env=_env_without_psk(), timeout=15)
    shown = (
        f"dtlspipe {' '.join(args)}\nrc={res.returncode}\n"
        f"[stdout]\n{res.stdout}[stderr]\n{res.stderr}"
    )
    assert res.returncode == 2, shown
    assert res.stdout == "", shown
    errors = res.stderr.splitlines()
    assert len(errors) == 1 and errors[0].strip(), f"expected one line on stderr\n{shown}"
    assert re.search(pattern, errors[0], re.IGNORECASE), f"/{pattern}/ not in the line\n{shown}"


@pytest.mark.parametrize(
    ("args", "pattern"), [pytest.param(a, p, id=i) for i, a, p in USAGE_ERRORS]
)
def test_error_of_use_exits_2_with_one_line(args: list[str], pattern: str):
    assert_usage_error(args, pattern)


@pytest.mark.parametrize("role", ["server", "client"])
def test_port_in_use_is_an_error_of_use(role: str):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind((tk.HOST, 0))
        port = held.getsockname()[1]
        assert_usage_error(["-psk", K, role, f"{tk.HOST}:{port}", R], r"listen|use|bind")


OPTIONS = [
    "ciphers",
    "cpuprofile",
    "curves",
    "identity",
    "idle-time",
    "key-length",
    "mtu",
    "psk",
    "rate-limit",
    "skip-hello-verify",
    "stale-mode",
    "time-limit",
    "timeout",
]
DEFAULTS = ["30s", "16", "1400", "20/1m", "either", "10s", "X25519:P-256:P-384"]


@pytest.mark.parametrize("flag", ["-h", "-help", "--help"])
def test_help_exits_0_and_lists_every_option(flag: str):
    res = tk.run_cli(flag, timeout=15)
    assert res.returncode == 0, res.stderr
    text = res.stdout + res.stderr
    for sub in ("server", "client", "hoppingclient", "genpsk", "ciphers", "curves", "version"):
        assert sub in text, f"subcommand {sub} missing from -h\n{text}"
    for option in OPTIONS:
        assert re.search(rf"^\s+-{re.escape(option)}\b", text, re.M), f"-{option} not listed"
    for default in DEFAULTS:
        assert default in text, f"default {default} not shown\n{text}"


def test_genpsk_version_ciphers_curves():
    res = tk.run_cli("genpsk")
    assert res.returncode == 0 and re.fullmatch(r"[0-9a-f]{32}\n", res.stdout), res
    res = tk.run_cli("-key-length", "64", "genpsk")
    assert res.returncode == 0 and re.fullmatch(r"[0-9a-f]{128}\n", res.stdout), res
    res = tk.run_cli("version")
    assert res.returncode == 0 and res.stdout.strip(), res
    res = tk.run_cli("ciphers")
    assert res.returncode == 0, res
    assert res.stdout.splitlines()[0] == "TLS-ECDHE-PSK-WITH-AES-128-CBC-SHA256", res.stdout
    res = tk.run_cli("curves")
    assert res.returncode == 0, res
    assert res.stdout.splitlines()[:3] == ["X25519", "P-256", "P-384"], res.stdout


def test_go_flag_spellings_start_a_server(launcher: tk.Launcher, upstream: tk.Upstream):
    """``--psk=KEY``, ``-skip-hello-verify=false`` and ``-rate-limit=``, as Go users write
    them, give a working server (cookie exchange on); the client uses ``--psk KEY``."""
    sport, cport = tk.free_udp_port(), tk.free_udp_port()
    tk.start_pipe(
        launcher,
        "server",
        f"{tk.HOST}:{sport}",
        upstream.address,
        f"--psk={tk.PSK}",
        "-skip-hello-verify=false",
        "-rate-limit=",
        psk=None,
    )
    tk.start_pipe(
        launcher, "client", f"{tk.HOST}:{cport}", f"{tk.HOST}:{sport}", "--psk", tk.PSK, psk=None
    )
    app = tk.udp_socket()
    tk.roundtrip(app, (tk.HOST, cport), b"go-style flags")
    app.close()

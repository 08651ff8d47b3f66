"""Connection IDs and roaming with the real tunnel (RFC 9146, RFC 9853): a client whose
source port changes mid-session keeps its session, a replayed record from a new address
moves nothing, and ``-cid=false`` on either side falls back to plain records."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import hostilekit as hk
import pytest
from hostilekit import Launcher
from test_tunnel_through_relay import exchange

_E2E = Path(__file__).resolve().parents[1] / "e2e"
if str(_E2E) not in sys.path:
    sys.path.insert(0, str(_E2E))

import tunnelkit as tk  # noqa: E402

pytestmark = pytest.mark.hostile

MOVED = r"peer moved to"
REBIND_AFTER = 60  # client datagrams through the relay before it changes source port
COUNT = 200


@pytest.fixture
def upstream() -> Any:
    service = tk.Upstream()
    yield service
    service.close()


def _stop(relay: hk.Proc) -> dict[str, Any]:
    relay.popen.send_signal(signal.SIGTERM)
    assert relay.wait_exit() == 0, relay.describe()
    return hk.relay_stats(relay)


def _tunnel(
    launcher: Launcher,
    upstream: tk.Upstream,
    relay_options: tuple[str, ...],
    server_options: tuple[str, ...] = (),
    client_options: tuple[str, ...] = (),
    record: Path | None = None,
) -> tuple[tk.Proc, tk.Proc, tk.Proc, int]:
    sport, cport = tk.free_udp_port(), tk.free_udp_port()
    server = tk.start_pipe(
        launcher, "server", tk.fmt(tk.HOST, sport), upstream.address, *server_options
    )
    relay, rport = hk.start_relay(launcher, sport, *relay_options, seed=3, record=record)
    client = tk.start_pipe(
        launcher, "client", tk.fmt(tk.HOST, cport), tk.fmt(tk.HOST, rport), *client_options
    )
    return server, relay, client, cport


@pytest.mark.parametrize("workers", [1, 2])
def test_rebinding_client_keeps_its_session(
    launcher: Launcher, upstream: tk.Upstream, workers: int
) -> None:
    """With -workers 2 the new port may hash to the other worker: the CID still finds
    the one holding the session (dtlspipe/workers.py)."""
    server, relay, client, cport = _tunnel(
        launcher, upstream, ("--rebind-after", str(REBIND_AFTER)), ("-workers", str(workers))
    )
    sock = tk.udp_socket()
    try:
        tk.roundtrip(sock, (tk.HOST, cport), b"n000000 first")
        got = exchange(sock, (tk.HOST, cport), 1, COUNT)
    finally:
        sock.close()
    assert _stop(relay)["rebinds"] == 1
    # the same session throughout: one handshake each side, and the server followed
    assert len(tk.lines(server, tk.ESTABLISHED)) == 1, server.describe()
    assert len(tk.lines(client, tk.ESTABLISHED)) == 1, client.describe()
    assert server.stderr.count(MOVED) == 1, server.describe()
    assert "ended" not in server.stderr, server.describe()
    # nothing lost but what was in flight at the moment of the change: the replies the
    # server had already sent to the old port (RFC 9853 lets it answer the new port
    # while it checks it, so the exchange does not stall). Nothing after the change is
    # lost, whatever the load; how many were in flight (1 to 3 on an idle machine, one
    # datagram every 20 ms) depends on the round trip the machine's load makes.
    missing = sorted(set(range(1, COUNT + 1)) - set(got))
    assert all(n <= REBIND_AFTER + 10 for n in missing), missing
    assert len(got) == len(set(got))
    tk.assert_alive(server, client)
    measured = tk.Measured(f"rebinding client, -workers {workers}")
    measured.expect(
        len(missing) <= 3 and all(REBIND_AFTER - 10 <= n for n in missing),
        f"lost in flight at the change: {missing}",
    )
    measured.skip_if_unmet()


def test_replayed_record_from_new_address_moves_nothing(
    launcher: Launcher, upstream: tk.Upstream, tmp_path: Path
) -> None:
    wire = tmp_path / "wire.jsonl"
    server, relay, client, cport = _tunnel(launcher, upstream, (), record=wire)
    sock = tk.udp_socket()
    attacker = tk.udp_socket()
    try:
        tk.roundtrip(sock, (tk.HOST, cport), b"n000000 first")
        records = [
            bytes.fromhex(line["hex"])
            for line in hk.read_record(wire)
            if line["dir"] == "c2s" and bytes.fromhex(line["hex"])[0] == 25
        ]
        assert records, "the client sends tls12_cid records"
        server_port = int(relay.argv[relay.argv.index("--connect") + 1].rsplit(":", 1)[1])
        for record in records:  # replayed from another address, as an attacker would
            attacker.sendto(record, (tk.HOST, server_port))
        got = exchange(sock, (tk.HOST, cport), 1, 50)
    finally:
        sock.close()
        attacker.close()
    assert sorted(got) == list(range(1, 51))
    assert MOVED not in server.stderr, server.describe()
    assert len(tk.lines(server, tk.ESTABLISHED)) == 1, server.describe()
    _stop(relay)
    tk.assert_alive(server, client)


@pytest.mark.parametrize(
    ("server_options", "client_options", "c2s_cid"),
    [
        ((), (), True),
        (("-cid=false",), (), False),
        ((), ("-cid=false",), False),
    ],
    ids=["both", "server-off", "client-off"],
)
def test_cid_option_on_the_wire(
    launcher: Launcher,
    upstream: tk.Upstream,
    tmp_path: Path,
    server_options: tuple[str, ...],
    client_options: tuple[str, ...],
    c2s_cid: bool,
) -> None:
    wire = tmp_path / "wire.jsonl"
    server, relay, client, cport = _tunnel(
        launcher, upstream, (), server_options, client_options, record=wire
    )
    sock = tk.udp_socket()
    try:
        tk.roundtrip(sock, (tk.HOST, cport), b"n000000 first")
        assert sorted(exchange(sock, (tk.HOST, cport), 1, 20)) == list(range(1, 21))
    finally:
        sock.close()
    _stop(relay)
    types = {(line["dir"], bytes.fromhex(line["hex"])[0]) for line in hk.read_record(wire)}
    # the client asks for no CID, so the server's records never carry one
    assert ("s2c", 25) not in types
    assert (("c2s", 25) in types) is c2s_cid
    assert (("c2s", 23) in types) is not c2s_cid
    tk.assert_alive(server, client)

"""The tunnel's counters, the summary line (dtlspipe.stats) and the key log file
(dtls.aio.keylog): formatting is pure, so every field is checked on made-up figures."""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

import pytest

from dtls import DTLSConfiguration
from dtls.aio.keylog import KeyLogError, KeyLogFile
from dtls.aio.udp import bind_udp
from dtlspipe.sessions import SessionPolicy
from dtlspipe.stats import DROP_REASONS, Snapshot, SummaryLog, TunnelStats, format_summary
from dtlspipe.tunnel_server import TunnelServer

FIELD = re.compile(r"(\w+)=(\S+)")


def fields(line: str) -> dict[str, str]:
    return dict(FIELD.findall(line))


# --- format_summary ----------------------------------------------------------------------


def test_a_quiet_server_line_has_every_field_at_zero() -> None:
    line = format_summary("server", 0, 60.0, Snapshot(), Snapshot())
    assert line == (
        "summary: period=1m0s sessions=0 handshakes=+0/0 failed=+0/0 "
        "from_peer=+0/0 from_peer_bytes=+0/0 to_service=+0/0 to_service_bytes=+0/0 "
        "from_service=+0/0 from_service_bytes=+0/0 to_peer=+0/0 to_peer_bytes=+0/0 "
        "dropped=+0/0"
    )


def test_server_fields_follow_the_data_and_read_since_over_total() -> None:
    last = Snapshot(handshakes=3, failed=1, from_peer=100, from_peer_bytes=9000,
                    to_plain=90, to_plain_bytes=5000, from_plain=80, from_plain_bytes=4000,
                    to_peer=85, to_peer_bytes=8000, drops={"queue_full": 2})  # fmt: skip
    now = Snapshot(handshakes=5, failed=1, from_peer=150, from_peer_bytes=13000,
                   to_plain=130, to_plain_bytes=7000, from_plain=120, from_plain_bytes=6000,
                   to_peer=125, to_peer_bytes=11000,
                   drops={"queue_full": 2, "oversize": 1})  # fmt: skip
    line = format_summary("server", 2, 59.96, last, now)
    assert line.startswith("summary: period=1m0s sessions=2 ")
    got = fields(line)
    assert got == {
        "period": "1m0s",
        "sessions": "2",
        "handshakes": "+2/5",
        "failed": "+0/1",
        "from_peer": "+50/150",
        "from_peer_bytes": "+4000/13000",
        "to_service": "+40/130",
        "to_service_bytes": "+2000/7000",
        "from_service": "+40/120",
        "from_service_bytes": "+2000/6000",
        "to_peer": "+40/125",
        "to_peer_bytes": "+3000/11000",
        "dropped": "+1/3",
        "drop_queue_full": "+0/2",
        "drop_oversize": "+1/1",
    }
    # data order: what arrives from the peer goes to the service, and back
    order = [name for name, _ in FIELD.findall(line)]
    assert order.index("from_peer") < order.index("to_service") < order.index("from_service")
    assert order.index("from_service") < order.index("to_peer") < order.index("dropped")
    assert order.index("drop_queue_full") < order.index("drop_oversize")  # DROP_REASONS order


def test_client_names_the_plain_side_app_and_starts_from_it() -> None:
    now = Snapshot(from_plain=7, from_plain_bytes=70, to_peer=9, to_peer_bytes=300,
                   from_peer=8, from_peer_bytes=280, to_plain=7, to_plain_bytes=70)  # fmt: skip
    line = format_summary("client", 1, 1.0, Snapshot(), now)
    order = [name for name, _ in FIELD.findall(line)]
    traffic = [n for n in order if n.startswith(("from_", "to_")) and not n.endswith("_bytes")]
    assert traffic == ["from_app", "to_peer", "from_peer", "to_app"]
    assert "service" not in line
    assert fields(line)["from_app_bytes"] == "+70/70"
    assert fields(line)["period"] == "1s"


def test_cookies_and_drop_reasons_appear_only_once_they_happened() -> None:
    line = format_summary("server", 0, 1.0, Snapshot(), Snapshot(drops={"busy": 0}))
    assert "cookies" not in line and "drop_" not in line
    now = Snapshot(cookies=4, drops={"busy": 0, "unknown": 3, "zz_new": 1})
    got = fields(format_summary("server", 0, 1.0, Snapshot(cookies=1), now))
    assert got["cookies"] == "+3/4"
    assert got["drop_unknown"] == "+3/3" and got["drop_zz_new"] == "+1/1"
    assert "drop_busy" not in got
    assert got["dropped"] == "+4/4"


def test_a_reason_seen_before_stays_on_the_line_with_plus_zero() -> None:
    snap = Snapshot(drops={"rate_limited": 5})
    assert fields(format_summary("client", 0, 1.0, snap, snap))["drop_rate_limited"] == "+0/5"


@pytest.mark.parametrize(
    ("elapsed", "shown"), [(0.0, "0s"), (0.34, "300ms"), (1.04, "1s"), (90.0, "1m30s"), (-1, "0s")]
)
def test_the_period_is_rounded_to_a_tenth_of_a_second(elapsed: float, shown: str) -> None:
    assert fields(format_summary("client", 0, elapsed, Snapshot(), Snapshot()))["period"] == shown


def test_the_final_line_says_so() -> None:
    assert format_summary("client", 0, 1.0, Snapshot(), Snapshot(), final=True).startswith(
        "final summary: period=1s "
    )


def test_every_known_reason_is_a_word() -> None:
    assert all(re.fullmatch(r"[a-z_]+", r) for r in DROP_REASONS)
    assert len(set(DROP_REASONS)) == len(DROP_REASONS)


# --- TunnelStats ---------------------------------------------------------------------------


def test_batch_methods_count_datagrams_and_bytes() -> None:
    stats = TunnelStats()
    stats.peer_in([b"a", b"bcd"])
    stats.peer_out(iter([b"xy", b"", b"z"]))  # any iterable, an empty datagram counts
    stats.plain_in([b"12345"])
    stats.plain_out([b"1", b"22"])
    stats.drop("oversize")
    stats.drop("oversize", 2)
    stats.handshakes += 1
    snap = stats.snapshot()
    assert (snap.from_peer, snap.from_peer_bytes) == (2, 4)
    assert (snap.to_peer, snap.to_peer_bytes) == (3, 3)
    assert (snap.from_plain, snap.from_plain_bytes) == (1, 5)
    assert (snap.to_plain, snap.to_plain_bytes) == (2, 3)
    assert snap.drops == {"oversize": 3} and snap.handshakes == 1


def test_snapshot_merges_the_engine_counters_and_is_a_copy() -> None:
    stats = TunnelStats()
    stats.failed = 2
    stats.drop("busy")
    snap = stats.snapshot(failed=1, cookies=7, drops={"busy": 4, "unknown": 2})
    assert snap.failed == 3 and snap.cookies == 7
    assert snap.drops == {"busy": 5, "unknown": 2}
    stats.drop("busy")
    assert snap.drops["busy"] == 5  # later counting leaves a snapshot alone


# --- SummaryLog ------------------------------------------------------------------------------


def make_log(every: float, stats: TunnelStats) -> SummaryLog:
    return SummaryLog("client", every, stats.snapshot, lambda: 3, now=100.0)


def summary_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "summary:" in r.getMessage()]


def test_summary_comes_each_interval_with_the_change_since_the_last(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="dtlspipe")
    stats = TunnelStats()
    summary = make_log(60.0, stats)
    stats.plain_in([b"x"] * 4)
    summary.tick(130.0)  # not yet
    assert summary_lines(caplog) == []
    summary.tick(160.0)
    stats.plain_in([b"x"])
    summary.tick(200.0)  # 40 s after the last line: not yet
    summary.tick(219.99)  # due within the slack: the loop's sleep may end a hair early
    summary.final(225.0)
    summary.final(226.0)  # once only
    summary.tick(300.0)  # nothing after the final line
    lines = summary_lines(caplog)
    assert len(lines) == 3
    assert fields(lines[0])["from_app"] == "+4/4" and fields(lines[0])["sessions"] == "3"
    assert fields(lines[1])["from_app"] == "+1/5" and fields(lines[1])["period"] == "1m0s"
    assert lines[2].startswith("final summary:") and fields(lines[2])["from_app"] == "+0/5"
    assert fields(lines[2])["period"] == "5s"
    assert all(r.levelno == logging.INFO for r in caplog.records)


def test_summary_zero_means_no_line_at_all(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dtlspipe")
    summary = make_log(0.0, TunnelStats())
    summary.tick(1e9)
    summary.final(1e9)
    assert caplog.records == []


# --- KeyLogFile --------------------------------------------------------------------------------


LINE = "CLIENT_RANDOM " + "ab" * 32 + " " + "cd" * 48


def test_keylog_file_is_created_0600_and_each_line_is_there_at_once(tmp_path: Path) -> None:
    path = tmp_path / "keys.log"
    old = os.umask(0)  # the mode must not depend on a permissive umask
    try:
        keylog = KeyLogFile(str(path))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keylog(LINE)
    assert path.read_text() == LINE + "\n"  # flushed, not waiting for close
    keylog(LINE)
    keylog.close()
    keylog(LINE)  # after close: ignored, not an error
    assert path.read_text() == (LINE + "\n") * 2


def test_keylog_appends_to_an_existing_file_of_its_own_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An existing 0600 file of this user's is appended to; one others may read is now
    refused (defect 9, tests/test_keylog.py), so the old "readable by other users"
    warning is gone."""
    path = tmp_path / "keys.log"
    path.write_text("earlier\n")
    path.chmod(0o600)
    keylog = KeyLogFile(str(path))
    keylog(LINE)
    keylog.close()
    assert path.read_text() == "earlier\n" + LINE + "\n"
    caplog.set_level(logging.WARNING, logger="dtlspipe")
    keylog.warn()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "decrypt" in messages[0] and str(path) in messages[0]


def test_keylog_that_cannot_be_opened_raises(tmp_path: Path) -> None:
    with pytest.raises(KeyLogError, match=r"cannot open key log file .*No such file"):
        KeyLogFile(str(tmp_path / "no-such-dir" / "keys.log"))


def test_keylog_write_error_is_logged_once_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk after the start. /dev/full itself is no longer accepted as a key log
    (not a regular file), so a regular file's stream is swapped for it once open."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    keylog = KeyLogFile(str(tmp_path / "keys.log"))
    keylog._file.close()
    keylog._file = open("/dev/full", "a", encoding="ascii")  # closed below
    caplog.set_level(logging.ERROR, logger="dtlspipe")
    keylog(LINE)
    keylog(LINE)
    assert len([r for r in caplog.records if "key log" in r.getMessage()]) == 1
    try:
        keylog.close()
    except OSError:
        pass  # the flush at close fails too: nothing more to learn


# --- the server merges the engine's counters ------------------------------------------------


def test_server_snapshot_adds_the_engine_counters() -> None:
    listen = bind_udp("127.0.0.1", 0)
    try:
        config = DTLSConfiguration(random=os.urandom, psk=b"k" * 16, hello_verify=True)
        server = TunnelServer(config, listen, ("127.0.0.1", 9), SessionPolicy())
        server.endpoint.receive_datagram(b"\x17not a hello", ("192.0.2.1", 1000), 0.0)
        server.stats.drop("unknown")  # the tunnel's own count of a reason adds up with it
        snap = server.snapshot()
        assert snap.drops["unknown"] == 2 and snap.drops["busy"] == 0
        assert snap.cookies == 0 and snap.failed == 0
        line = format_summary("server", 0, 1.0, Snapshot(), snap)
        assert "drop_unknown=+2/2" in line and "drop_busy" not in line
    finally:
        listen.close()


def test_summary_stays_quiet_while_nothing_happens(caplog: pytest.LogCaptureFixture) -> None:
    """A line is due every second (a fake clock), but one that would report no change at
    all is not logged; the next one spans the whole silence; the final line always comes."""
    counters = Snapshot()
    sessions = [1]
    summary = SummaryLog("server", 1.0, lambda: counters, lambda: sessions[0], now=0.0)
    caplog.set_level(logging.INFO, logger="dtlspipe")
    counters = Snapshot(handshakes=1)
    summary.tick(1.0)  # something happened: a line
    for t in (2.0, 3.0, 4.0):
        summary.tick(t)  # nothing since: quiet
    assert len(caplog.records) == 1
    sessions[0] = 0  # a session ended: that is news
    summary.tick(5.0)
    assert len(caplog.records) == 2 and "period=4s" in caplog.records[-1].getMessage()
    summary.tick(6.0)
    summary.final(6.5)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and lines[-1].startswith("final summary: period=1.5s")

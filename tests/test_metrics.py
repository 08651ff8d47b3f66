"""``-metrics``: the collector's families from a fake tunnel's counters, the handshake
histogram's buckets, the address syntax, and the errors of use (prometheus-client
missing, an address that cannot be served). The end-to-end scrape of a real tunnel is
tests/e2e/test_metrics_e2e.py."""

from __future__ import annotations

import socket
import sys
import urllib.request
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from dtlspipe import metrics
from dtlspipe.cli import main
from dtlspipe.metrics import BUCKETS, DurationHistogram, TunnelCollector
from dtlspipe.options import HostPort, UsageError, parse_args, parse_metrics_address, usage
from dtlspipe.stats import DROP_REASONS, TunnelStats

KEY = "000102030405060708090a0b0c0d0e0f"


@pytest.fixture
def prom() -> ModuleType:
    return pytest.importorskip("prometheus_client")


# --------------------------------------------------------------------------- histogram


def test_histogram_buckets_are_upper_bounds_inclusive() -> None:
    h = DurationHistogram((0.01, 0.1, 1.0))
    for seconds in (0.0, 0.01, 0.010001, 0.1, 0.5, 1.0, 1.5, 30.0):
        h.observe(seconds)
    assert h.counts == [2, 2, 2, 2]  # (..0.01] (0.01..0.1] (0.1..1] (1..)
    assert h.count == 8
    assert h.sum == pytest.approx(0.0 + 0.01 + 0.010001 + 0.1 + 0.5 + 1.0 + 1.5 + 30.0)
    buckets, total = h.cumulative()
    assert buckets == [("0.01", 2.0), ("0.1", 4.0), ("1.0", 6.0), ("+Inf", 8.0)]
    assert total == h.sum


def test_histogram_negative_is_zero_and_empty_histogram() -> None:
    h = DurationHistogram()
    buckets, total = h.cumulative()
    assert len(buckets) == len(BUCKETS) + 1 and all(v == 0 for _, v in buckets)
    assert buckets[-1][0] == "+Inf" and total == 0.0
    h.observe(-0.5)  # a clock step: counted in the first bucket, adds nothing to the sum
    assert h.counts[0] == 1 and h.sum == 0.0


def test_default_buckets_span_a_millisecond_to_the_default_timeout() -> None:
    assert BUCKETS[0] == 0.001 and BUCKETS[-1] == 10.0
    assert list(BUCKETS) == sorted(set(BUCKETS))


@pytest.mark.parametrize("bounds", [(), (1.0, 0.5), (0.1, 0.1)])
def test_histogram_bad_bounds(bounds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="increasing"):
        DurationHistogram(bounds)


# --------------------------------------------------------------------------- collector


class FakeEngine:
    """What the collector reads of a DTLSServer."""

    def __init__(self) -> None:
        self.stats = {
            "hello_verify_sent": 7, "dropped": 5, "refused": 4, "connections_created": 9,
            "busy": 2, "replaced": 1, "unfiled": 0, "restarted": 3,
            "second_handshakes_failed": 1, "new_counter": 6,
        }  # fmt: skip
        self.handshakes_in_progress = 2


def fake_server(stats: TunnelStats, engine: FakeEngine, histogram: DurationHistogram) -> Any:
    """A collector over counters set by hand, folded the way TunnelServer.snapshot does."""
    return TunnelCollector(
        "server",
        lambda: stats.snapshot(
            failed=engine.stats["second_handshakes_failed"],
            cookies=engine.stats["hello_verify_sent"],
            drops={"unknown": engine.stats["dropped"], "busy": engine.stats["busy"]},
        ),
        lambda: 3,
        histogram,
        engine,
    )


def samples(collector: TunnelCollector) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in collector.collect():
        for s in family.samples:
            out[s.name, frozenset(s.labels.items())] = s.value
    return out


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found[name, frozenset(labels.items())]


@pytest.fixture
def server_stats() -> TunnelStats:
    stats = TunnelStats()
    stats.handshakes, stats.failed = 10, 2
    stats.peer_in([b"a" * 50, b"b" * 60])
    stats.plain_out([b"c" * 20])
    stats.plain_in([b"d" * 30, b"e" * 40, b"f"])
    stats.peer_out([b"g" * 70])
    stats.drop("oversize")
    stats.drop("odd_reason", 4)
    return stats


def test_server_collector_families(prom: ModuleType, server_stats: TunnelStats) -> None:
    histogram = DurationHistogram()
    histogram.observe(0.02)
    histogram.observe(3.0)
    found = samples(fake_server(server_stats, FakeEngine(), histogram))
    role = {"role": "server"}
    assert value(found, "dtlspipe_sessions", **role) == 3
    assert value(found, "dtlspipe_info", version=metrics.__version__, **role) == 1
    assert value(found, "dtlspipe_handshakes_total", outcome="completed", **role) == 10
    assert value(found, "dtlspipe_handshakes_total", outcome="failed", **role) == 3  # 2 + 1
    assert value(found, "dtlspipe_cookies_sent_total", **role) == 7
    for direction, count, size in [
        ("from_peer", 2, 110), ("to_service", 1, 20), ("from_service", 3, 71), ("to_peer", 1, 70)
    ]:  # fmt: skip
        assert value(found, "dtlspipe_datagrams_total", direction=direction, **role) == count
        assert value(found, "dtlspipe_datagram_bytes_total", direction=direction, **role) == size
    drops = {
        dict(labels)["reason"]: v
        for (name, labels), v in found.items()
        if name == "dtlspipe_dropped_datagrams_total"
    }
    # every known reason, zero until it happens, and any other reason seen
    assert set(drops) == {*DROP_REASONS, "odd_reason"}
    assert (drops["oversize"], drops["unknown"], drops["busy"], drops["odd_reason"]) == (1, 5, 2, 4)
    assert drops["queue_full"] == 0
    assert value(found, "dtlspipe_handshake_duration_seconds_count", **role) == 2
    assert value(found, "dtlspipe_handshake_duration_seconds_sum", **role) == pytest.approx(3.02)
    bucket = "dtlspipe_handshake_duration_seconds_bucket"
    assert value(found, bucket, le="0.01", **role) == 0
    assert value(found, bucket, le="0.025", **role) == 1
    assert value(found, bucket, le="5.0", **role) == 2
    assert value(found, bucket, le="+Inf", **role) == 2
    assert value(found, "dtlspipe_engine_handshakes_in_progress", **role) == 2
    assert value(found, "dtlspipe_engine_connections_created_total", **role) == 9
    assert value(found, "dtlspipe_engine_restarted_total", **role) == 3
    assert value(found, "dtlspipe_engine_new_counter_total", **role) == 6  # unknown: exported
    engine_names = {name for name, _ in found if name.startswith("dtlspipe_engine_")}
    # those the summary already folds in are not exported twice
    for folded in ("hello_verify_sent", "dropped", "busy", "refused", "second_handshakes"):
        assert not any(folded in name for name in engine_names), engine_names


def test_client_collector_names_the_app_and_has_no_engine(prom: ModuleType) -> None:
    stats = TunnelStats()
    stats.from_plain, stats.from_plain_bytes = 4, 400
    stats.to_plain, stats.to_plain_bytes = 3, 300
    collector = TunnelCollector("client", stats.snapshot, lambda: 1, DurationHistogram())
    found = samples(collector)
    role = {"role": "client"}
    assert value(found, "dtlspipe_datagrams_total", direction="from_app", **role) == 4
    assert value(found, "dtlspipe_datagram_bytes_total", direction="to_app", **role) == 300
    directions = {
        dict(labels)["direction"] for name, labels in found if name == "dtlspipe_datagrams_total"
    }
    assert directions == {"from_app", "to_peer", "from_peer", "to_app"}
    assert not any("engine" in name or "cookies" in name for name, _ in found)
    assert all(dict(labels)["role"] == "client" for _, labels in found)


def test_collector_reads_the_counters_at_each_scrape(prom: ModuleType) -> None:
    stats = TunnelStats()
    histogram = DurationHistogram()
    collector = TunnelCollector("client", stats.snapshot, lambda: 0, histogram)
    key = (
        "dtlspipe_datagrams_total",
        frozenset({"role": "client", "direction": "to_peer"}.items()),
    )
    assert samples(collector)[key] == 0
    stats.peer_out([b"x", b"y"])
    histogram.observe(0.1)
    found = samples(collector)
    assert found[key] == 2
    assert value(found, "dtlspipe_handshake_duration_seconds_count", role="client") == 1


def test_exposition_parses_and_follows_the_naming(
    prom: ModuleType, server_stats: TunnelStats
) -> None:
    """The text format from a registry holding the collector parses back, with counters
    ending in _total and every metric of ours prefixed and labelled with the role."""
    from prometheus_client.parser import text_string_to_metric_families

    registry = prom.CollectorRegistry()
    registry.register(fake_server(server_stats, FakeEngine(), DurationHistogram()))
    text = prom.generate_latest(registry).decode()
    families = list(text_string_to_metric_families(text))
    assert families and all(f.name.startswith("dtlspipe_") for f in families)
    for family in families:
        assert family.documentation
        for s in family.samples:
            assert s.labels["role"] == "server"
            if family.type == "counter":
                assert s.name.endswith("_total"), s.name
    types = {f.name: f.type for f in families}
    assert types["dtlspipe_handshake_duration_seconds"] == "histogram"
    assert types["dtlspipe_sessions"] == "gauge"
    assert types["dtlspipe_dropped_datagrams"] == "counter"
    # the OpenMetrics format, which Prometheus asks for first, parses too
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse

    assert {f.name for f in parse(openmetrics(registry).decode())} == set(types)


def test_bad_role() -> None:
    with pytest.raises(ValueError, match="role"):
        TunnelCollector("hoppingclient", TunnelStats().snapshot, lambda: 0, DurationHistogram())


# --------------------------------------------------------------------------- serving


def test_serve_with_process_figures(prom: ModuleType) -> None:
    """In process: serve() on a free port answers /metrics with ours, the process's and
    the platform's figures; close() stops it."""
    stats = TunnelStats()
    stats.drop("queue_full", 2)
    collector = TunnelCollector("client", stats.snapshot, lambda: 0, DurationHistogram())
    server = metrics.serve(HostPort("127.0.0.1", 0), collector)
    try:
        address = server.address
        assert address.host == "127.0.0.1" and address.port > 0
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    finally:
        server.close()
    assert 'dtlspipe_dropped_datagrams_total{reason="queue_full",role="client"} 2.0' in text
    assert "python_info{" in text
    if sys.platform.startswith("linux"):  # ProcessCollector reads /proc
        assert "process_cpu_seconds_total" in text and "process_open_fds" in text
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{address}/metrics", timeout=2)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_serve_on_a_port_in_use_is_one_line(prom: ModuleType, busy_port: int) -> None:
    collector = TunnelCollector("client", TunnelStats().snapshot, lambda: 0, DurationHistogram())
    with pytest.raises(UsageError) as info:
        metrics.serve(HostPort("127.0.0.1", busy_port), collector)
    message = str(info.value)
    assert message.startswith(f"cannot serve metrics on 127.0.0.1:{busy_port}: ")
    assert "\n" not in message


def test_main_exits_2_when_the_metrics_port_is_in_use(
    prom: ModuleType,
    busy_port: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSLKEYLOGFILE", raising=False)
    metrics_at = f"127.0.0.1:{busy_port}"
    argv = ["-psk", KEY, "-metrics", metrics_at, "client", "127.0.0.1:0", "127.0.0.1:9"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dtlspipe: cannot serve metrics on ") and err.count("\n") == 1


# --------------------------------------------------------------------------- missing library


def test_missing_prometheus_client_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    monkeypatch.delenv("SSLKEYLOGFILE", raising=False)
    with pytest.raises(UsageError, match="needs prometheus-client"):
        metrics.require()
    argv = ["-psk", KEY, "-metrics", "127.0.0.1:0", "client", "127.0.0.1:0", "127.0.0.1:9"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "dtlspipe: -metrics needs prometheus-client: pip install 'dtlspipe[metrics]'\n"
    )


def test_the_library_is_not_imported_without_metrics() -> None:
    """Loading the tunnel (and this module) needs no prometheus-client."""
    import subprocess

    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "import dtlspipe.cli, dtlspipe.tunnel, dtlspipe.metrics\n"
        "h = dtlspipe.metrics.DurationHistogram(); h.observe(0.01); print(h.count)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "1\n", out.stderr


# --------------------------------------------------------------------------- the option


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:9100", HostPort("127.0.0.1", 9100)), ("[::1]:9100", HostPort("::1", 9100)),
     (":9100", HostPort("0.0.0.0", 9100)), ("[::]:9100", HostPort("::", 9100)),
     ("127.0.0.1:0", HostPort("127.0.0.1", 0)), ("", None)],
)  # fmt: skip
def test_metrics_addresses(text: str, expected: HostPort | None) -> None:
    assert parse_metrics_address(text) == expected
    argv = ["-psk", KEY, "-metrics", text, "server", "0.0.0.0:2815", "127.0.0.1:514"]
    assert parse_args(argv, {}).metrics == expected


@pytest.mark.parametrize(
    "text", ["9100", "localhost:9100", "1.2.3.4:65536", "[::1]9100", "::1:9100", "1.2.3.4:x", ":"]
)
def test_bad_metrics_addresses(text: str) -> None:
    argv = ["-psk", KEY, "-metrics", text, "client", "127.0.0.1:0", "127.0.0.1:9"]
    with pytest.raises(UsageError) as info:
        parse_args(argv, {})
    assert str(info.value).startswith(f'invalid value "{text}" for flag -metrics: ')


def test_metrics_default_and_workers() -> None:
    assert parse_args(["-psk", KEY, "server", "0.0.0.0:1", "127.0.0.1:2"], {}).metrics is None
    argv = ["-psk", KEY, "-workers", "2", "-metrics", ":9100", "server", "0.0.0.0:1", "1.2.3.4:5"]
    with pytest.raises(UsageError, match="-metrics cannot be used with -workers"):
        parse_args(argv, {})


def test_help_lists_metrics() -> None:
    text = usage()
    assert "  -metrics string\n" in text
    assert "Prometheus" in text and "dtlspipe[metrics]" in text

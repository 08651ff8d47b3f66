"""``-metrics ADDR``: the tunnel's counters served over HTTP for Prometheus.

The figures are those of the ``-summary`` line (:mod:`dtlspipe.stats`), read when a
scrape comes: :class:`TunnelCollector` calls the same snapshot function the summary line
uses and turns it into metric families, so the data path does nothing more per datagram
than it does without ``-metrics``. The one figure the summary line lacks, how long
handshakes take, is a :class:`DurationHistogram` the tunnel updates once per completed
handshake (a few list operations, next to a handshake's milliseconds of cryptography).

prometheus-client is an optional dependency (``pip install 'dtlspipe[metrics]'``): it is
imported only when ``-metrics`` is given (:func:`require`, :func:`serve`), and this
module imports nothing of it at load time, so the tunnel modules can hold a histogram
without it. docs/logs.md ("Metrics") lists every metric.

Threads: the HTTP server answers in its own threads while the event loop thread bumps
the counters. The counters are plain ints (and a dict of them) changed only on the event
loop thread; a scrape reads them without a lock, under the GIL, so it may see one of them
an update behind another (one batch's datagrams counted, its bytes not yet): off by one
update for one scrape, which a counter's next scrape corrects. Copying the drops dict is
one C call, so a reason added meanwhile cannot break the copy.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from . import __version__
from .options import HostPort, UsageError
from .stats import DROP_REASONS, Snapshot

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector as _CollectorBase
else:  # at run time the registry only calls collect() and describe(): no base needed
    _CollectorBase = object

__all__ = [
    "BUCKETS", "ENGINE_HELP", "MISSING", "DurationHistogram", "Engine", "MetricsServer",
    "TunnelCollector", "require", "serve",
]  # fmt: skip

#: the one line for stderr (after "dtlspipe: ") when prometheus-client is not installed
MISSING = "-metrics needs prometheus-client: pip install 'dtlspipe[metrics]'"

#: upper bounds of the handshake duration buckets, seconds (+Inf comes after): 1 ms, for
#: a resumption on loopback, to 10 s, the default -timeout
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: the server engine's counters (``DTLSServer.stats``) exported as
#: ``dtlspipe_engine_NAME_total``, with their help text; the others are in the summary's
#: families already (see _FOLDED) and are not exported twice
ENGINE_HELP = {
    "connections_created": "ClientHellos admitted: handshakes the engine started",
    "restarted": "handshakes replaced by a new ClientHello from the same address",
    "replaced": "sessions without a connection ID replaced by a new handshake from their address",
    "unfiled": "sessions with a connection ID that gave their address to a new handshake",
    "hello_fragments": "fragments of ClientHellos from new peers, kept until whole",
    "hello_fragments_completed": "fragmented ClientHellos from new peers put together",
    "hello_fragments_evicted": "partial ClientHellos dropped to make room for a newer one",
}
#: engine counters already in the summary's figures: cookies, the drop reasons unknown
#: and busy, failed handshakes; refused are the tunnel's own rate_limited and
#: session_limit drops (its admission callback said no)
_FOLDED = frozenset({"hello_verify_sent", "dropped", "busy", "refused", "second_handshakes_failed"})
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class DurationHistogram:
    """Durations counted in fixed buckets: ``counts[i]`` holds the observations at most
    ``bounds[i]`` and above the bound before it, the last entry those above every bound.
    An observation is one bisection and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = BUCKETS) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("bucket bounds must be increasing")
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)  # a clock cannot run backwards, but be safe
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> tuple[list[tuple[str, float]], float]:
        """Prometheus's form: ``(le, observations <= le)`` pairs ending with ``+Inf``, and
        the sum. The total is taken from one copy of the counts, so ``+Inf`` (the count)
        always equals the last bucket, also mid-update."""
        counts, total = list(self.counts), self.sum
        buckets, running = [], 0
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), counts, strict=True):
            running += count
            buckets.append((bound, float(running)))
        return buckets, total


class Engine(Protocol):
    """What the collector reads of a server's :class:`dtls.DTLSServer`."""

    @property
    def stats(self) -> Mapping[str, int]: ...

    @property
    def handshakes_in_progress(self) -> int: ...


# the traffic fields of a Snapshot, in the summary line's order, with their label values
_DIRECTIONS = {
    "server": ("from_peer", "to_plain", "from_plain", "to_peer"),
    "client": ("from_plain", "to_peer", "from_peer", "to_plain"),
}


class TunnelCollector(_CollectorBase):
    """A prometheus-client collector for one tunnel process. ``snapshot`` and
    ``sessions`` are the functions its summary line reads; ``engine`` is the server's
    DTLS engine (None for a client, which has none: each session is its own
    connection)."""

    def __init__(
        self,
        role: str,
        snapshot: Callable[[], Snapshot],
        sessions: Callable[[], int],
        handshake_seconds: DurationHistogram,
        engine: Engine | None = None,
    ) -> None:
        if role not in _DIRECTIONS:
            raise ValueError(f"role must be server or client, not {role!r}")
        self.role = role
        self._snapshot = snapshot
        self._sessions = sessions
        self._histogram = handshake_seconds
        self._engine = engine

    def describe(self) -> list[Metric]:
        return []  # the names depend on what the engine counts: not checked at registration

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        role, snap = self.role, self._snapshot()
        plain = "service" if role == "server" else "app"

        info = GaugeMetricFamily(
            "dtlspipe_info", "the running dtlspipe: 1, with its version", labels=["role", "version"]
        )
        info.add_metric([role, __version__], 1)
        yield info
        sessions = self._sessions()
        yield _one(GaugeMetricFamily, "dtlspipe_sessions", "sessions open now", role, sessions)

        handshakes = CounterMetricFamily(
            "dtlspipe_handshakes", "handshakes by outcome", labels=["role", "outcome"]
        )
        handshakes.add_metric([role, "completed"], snap.handshakes)
        handshakes.add_metric([role, "failed"], snap.failed)
        yield handshakes
        if role == "server":
            yield _one(
                CounterMetricFamily,
                "dtlspipe_cookies_sent",
                "HelloVerifyRequests (cookies) sent",
                role,
                snap.cookies,
            )

        datagrams = CounterMetricFamily(
            "dtlspipe_datagrams",
            "UDP datagrams by direction (as the summary line names them)",
            labels=["role", "direction"],
        )
        sizes = CounterMetricFamily(
            "dtlspipe_datagram_bytes",
            "UDP payload bytes of those datagrams, by direction",
            labels=["role", "direction"],
        )
        for field in _DIRECTIONS[role]:
            direction = field.replace("plain", plain)
            datagrams.add_metric([role, direction], getattr(snap, field))
            sizes.add_metric([role, direction], getattr(snap, field + "_bytes"))
        yield datagrams
        yield sizes

        drops = CounterMetricFamily(
            "dtlspipe_dropped_datagrams",
            "datagrams dtlspipe dropped, by reason",
            labels=["role", "reason"],
        )
        seen = dict(snap.drops)
        for reason in (*DROP_REASONS, *sorted(r for r in seen if r not in DROP_REASONS)):
            drops.add_metric([role, reason], seen.get(reason, 0))
        yield drops

        buckets, total = self._histogram.cumulative()
        duration = HistogramMetricFamily(
            "dtlspipe_handshake_duration_seconds",
            "time from the first ClientHello to the completed handshake",
            labels=["role"],
        )
        duration.add_metric([role], buckets, total)
        yield duration

        if self._engine is not None:
            yield from self._collect_engine(self._engine)

    def _collect_engine(self, engine: Engine) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        role = self.role
        yield _one(
            GaugeMetricFamily,
            "dtlspipe_engine_handshakes_in_progress",
            "handshakes the server's DTLS engine is running now",
            role,
            engine.handshakes_in_progress,
        )
        for name, value in sorted(dict(engine.stats).items()):
            if name in _FOLDED or not _NAME.fullmatch(name):
                continue
            text = ENGINE_HELP.get(name, f"the DTLS engine's {name} counter")
            yield _one(CounterMetricFamily, f"dtlspipe_engine_{name}", text, role, value)


def _one(
    kind: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    text: str,
    role: str,
    value: float,
) -> Metric:
    """A family of one sample, labelled with the role."""
    family = kind(name, text, labels=["role"])
    family.add_metric([role], value)
    return family


def require() -> None:
    """Import prometheus-client, or raise the one-line :class:`UsageError`."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise UsageError(MISSING) from None


class MetricsServer:
    """The HTTP server prometheus-client runs in a daemon thread (at any path, also
    ``/metrics``), and its address for the log."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread

    @property
    def address(self) -> HostPort:
        host, port = self._httpd.server_address[:2]
        return HostPort(str(host), int(port))

    def close(self) -> None:
        """Stop answering (this waits for the serving loop, at most about half a second)
        and close the listening socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5.0)


def serve(address: HostPort, collector: TunnelCollector) -> MetricsServer:
    """Serve ``collector`` with the process's own figures (ProcessCollector: CPU, memory,
    open files, start time; PlatformCollector: the Python version) from a registry of
    their own, at ``address``. A port in use or an address that cannot be bound is an
    error of use, one line, like the tunnel's own listening address."""
    require()
    from prometheus_client import (
        CollectorRegistry,
        PlatformCollector,
        ProcessCollector,
        start_http_server,
    )

    registry = CollectorRegistry()
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    try:
        httpd, thread = start_http_server(address.port, address.host, registry=registry)
    except OSError as exc:  # socket.gaierror included
        why = exc.strerror or str(exc)
        raise UsageError(f"cannot serve metrics on {address}: {why}") from None
    return MetricsServer(httpd, thread)

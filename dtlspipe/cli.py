"""``dtlspipe``: the command-line entry point (Go dtlspipe compatible, see docs/manual.md)."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import random
import signal
import socket
import sys
from collections.abc import Callable, Sequence

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus

from dtls import DTLSConfiguration, NamedGroup
from dtls.aio.keylog import KeyLogError, KeyLogFile
from dtls.aio.portable import PORTABLE
from dtls.constants import DTLS1_2, DTLS1_3
from dtls.ffdhe import is_ffdhe
from dtls.session import SessionCache

from . import __version__, metrics
from .endpoints import choose
from .keyfile import KeyFileError, KeyStore, identities, key_file_line
from .options import (
    DEFAULT_CIPHERS,
    DEFAULT_CURVES,
    DEFAULT_FFDHE,
    SUPPORTED_CIPHERS,
    SUPPORTED_CURVES,
    Command,
    HelpRequested,
    Options,
    UsageError,
    cipher_name,
    curve_name,
    parse_args,
    usage,
)
from .psk import genpsk
from .ratelimit import RateLimiter, source_key
from .tunnel import Address, SessionPolicy, TunnelClient, TunnelServer, bind_udp

log = logging.getLogger("dtlspipe")
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"
SERVER_CID_LENGTH = 8
#: -dtls13 without -identity: DTLS 1.3 needs an identity of at least one byte
DEFAULT_IDENTITY13 = b"dtlspipe"
DTLS13_VERSIONS = {"off": (DTLS1_2,), "offer": (DTLS1_2, DTLS1_3), "require": (DTLS1_3,)}
#: -resume: the server's session cache (RFC 5246 §7.3), entries and seconds
RESUME_ENTRIES, RESUME_LIFETIME = 10000, 7200.0


def _dtls_config(opts: Options, is_client: bool) -> DTLSConfiguration:
    return DTLSConfiguration(
        random=os.urandom,
        psk=opts.psk,
        # DTLS 1.3 has no empty identity (RFC 8446 §4.2.11): without -identity, one
        # the server ignores unless it has a -keyfile
        psk_identity=(opts.identity or (DEFAULT_IDENTITY13 if opts.dtls13 != "off" else b""))
        if is_client
        else b"",
        cipher_suites=opts.ciphers,
        groups=_groups(opts.curves),
        mtu=opts.mtu,
        hello_verify=not opts.skip_hello_verify,
        handshake_timeout=opts.timeout,
        keylog=_keylog(opts.keylog),
        # -cid as in the Go program: its server hands out 8 random bytes
        # (dtls.RandomCIDGenerator(8)), its client only sends (OnlySendCIDGenerator)
        connection_id_length=(0 if is_client else SERVER_CID_LENGTH) if opts.cid else None,
        session_cache=SessionCache(RESUME_ENTRIES, RESUME_LIFETIME)
        if opts.resume and not is_client
        else None,
        # -resume is DTLS 1.2's: a DTLS 1.3 ticket would cost each session a message each
        # way and about a fifth more work, and save no key exchange (docs/dtls13.md)
        session_tickets=False,
        # -dtls13: off, offer (a client offers both, a server takes 1.3 when offered),
        # require (1.3 only)
        versions=DTLS13_VERSIONS[opts.dtls13],
    )


def _groups(curves: tuple[NamedGroup, ...]) -> tuple[NamedGroup, ...]:
    """-curves, plus the default RFC 7919 groups for DHE_PSK suites if it names none."""
    if any(is_ffdhe(g) for g in curves):
        return curves
    return curves + DEFAULT_FFDHE


@functools.cache
def _keylog(path: str | None) -> KeyLogFile | None:
    """``-keylog`` or SSLKEYLOGFILE, opened (and warned about) once per process; a file
    that cannot be opened, or that others than this user could read or replace (see
    keylog.py), is an error of use."""
    if path is None:
        return None
    try:
        keylog = KeyLogFile(path)
    except KeyLogError as exc:
        raise UsageError(str(exc)) from None
    keylog.warn()
    return keylog


def _key_store(opts: Options) -> KeyStore | None:
    """The server's ``-keyfile``, read at startup: one that cannot be used is an error
    of use (one line, status 2)."""
    if opts.keyfile is None:
        return None
    try:
        store = KeyStore.load(opts.keyfile)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from None
    log.info("key file %s: %s", store.path, identities(len(store)))
    return store


def _server_config(
    opts: Options, store: KeyStore | None, worker: int | None = None
) -> DTLSConfiguration:
    config = _dtls_config(opts, False)
    if worker is not None:  # connection and session IDs lead back to this worker
        config = dataclasses.replace(config, issued_id_prefix=bytes((worker,)))
    if store is None:
        return config
    return dataclasses.replace(config, psk=None, psk_lookup=store.lookup)


def _policy(opts: Options) -> SessionPolicy:
    limit = opts.time_limit
    return SessionPolicy(
        idle_time=opts.idle_time,
        stale_mode=opts.stale_mode,
        time_limit=None if limit is None else (limit.low, limit.high),
    )


def _admit(opts: Options) -> Callable[[Address, float], bool] | None:
    """-rate-limit: new sessions per IPv4 host or IPv6 /64 (see ratelimit.source_key)."""
    if opts.rate_limit is None:
        return None
    limiter = RateLimiter(opts.rate_limit.limit, opts.rate_limit.period)
    return lambda addr, now: limiter.allow(source_key(addr[0]), now)


def _bind(opts: Options, workers: int = 0) -> list[socket.socket]:
    """The listening socket, or a steered group of ``workers`` (see workers.py)."""
    assert opts.bind is not None
    host, port = opts.bind.host, opts.bind.port
    try:
        if workers:
            from .workers import bind_group  # only for -workers N, as below

            return bind_group(lambda reuse: bind_udp(host, port, reuse), workers)
        return [bind_udp(host, port)]
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve bind address {opts.bind}: {exc.strerror}") from None
    except OSError as exc:
        raise UsageError(f"cannot listen on {opts.bind}: {exc.strerror}") from None


def _run_workers(opts: Options) -> int:
    """-workers N: bind the group, then fork a server per socket (see workers.py)."""
    from .workers import supervise  # not at start-up: one server is the default

    _keylog(opts.keylog)
    store = _key_store(opts)
    sockets = _bind(opts, opts.workers)

    def run_worker(index: int, listen: socket.socket) -> int:
        for handler in logging.getLogger().handlers:
            handler.setFormatter(logging.Formatter(f"{LOG_FORMAT} [worker {index}]"))
        anyio.run(_run_tunnel, opts, listen, store, index, backend_options=_loop())
        return 0

    return supervise(sockets, run_worker, reload_on_hup=store is not None)


async def _run_tunnel(
    opts: Options,
    listen: socket.socket | None = None,
    store: KeyStore | None = None,
    worker: int | None = None,
) -> None:
    if listen is None:
        _keylog(opts.keylog)  # first: a file that cannot be opened is then the only line
        store = _key_store(opts)
        (listen,) = _bind(opts)
    tunnel: TunnelClient | TunnelServer
    if opts.command is Command.SERVER:
        assert opts.remote is not None
        tunnel = TunnelServer(
            _server_config(opts, store, worker),
            listen,
            (opts.remote.host, opts.remote.port),
            _policy(opts),
            admit=_admit(opts),
            dial_timeout=opts.timeout,
            summary=opts.summary,
        )
        target = str(opts.remote)
    else:
        if opts.command is Command.CLIENT:
            assert opts.remote is not None
            remote = (opts.remote.host, opts.remote.port)
            target = str(opts.remote)

            def chooser() -> tuple[str, int]:
                return remote
        else:
            rng = random.SystemRandom()
            groups = opts.endpoint_groups

            def chooser() -> tuple[str, int]:
                return choose(groups, rng)

            target = " ".join(g.spec for g in groups)
            target = f"{len(groups)} endpoint group{'s' if len(groups) != 1 else ''}: {target}"
        tunnel = TunnelClient(
            _dtls_config(opts, True),
            listen,
            chooser,
            _policy(opts),
            admit=_admit(opts),
            dial_timeout=opts.timeout,
            summary=opts.summary,
            resume=opts.resume,
        )
    exporter = _serve_metrics(opts, tunnel, listen)
    log.info("%s listening on %s, forwarding to %s", opts.command.value, opts.bind, target)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(_watch_signals, tg.cancel_scope, store)
            await tunnel.serve(tg)
    finally:
        tunnel.close_all()  # close_notify to every peer
        listen.close()
        if exporter is not None:
            exporter.close()
        log.info("shut down")


def _serve_metrics(
    opts: Options, tunnel: TunnelClient | TunnelServer, listen: socket.socket
) -> metrics.MetricsServer | None:
    """-metrics: the tunnel's counters over HTTP, read at each scrape from the functions
    its summary line reads (one source of truth). An address that cannot be served is an
    error of use, as for the tunnel's own listening address."""
    if opts.metrics is None:
        return None
    collector: metrics.TunnelCollector
    if isinstance(tunnel, TunnelServer):
        collector = metrics.TunnelCollector(
            "server",
            tunnel.snapshot,
            lambda: len(tunnel.sessions),
            tunnel.handshake_seconds,
            tunnel.endpoint,
        )
    else:
        collector = metrics.TunnelCollector(
            "client", tunnel.stats.snapshot, lambda: len(tunnel.sessions), tunnel.handshake_seconds
        )
    try:
        exporter = metrics.serve(opts.metrics, collector)
    except UsageError:
        listen.close()
        raise
    log.info("metrics on http://%s/metrics", exporter.address)
    return exporter


async def _watch_signals(
    scope: anyio.CancelScope,
    store: KeyStore | None = None,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """SIGINT, SIGTERM: close every session and exit. SIGHUP, only with a key file:
    re-read it (in a worker thread, so a large file does not stall traffic); without
    one SIGHUP keeps its default action."""
    reload_on = (signal.SIGHUP,) if store is not None else ()
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, *reload_on) as signals:
        task_status.started()  # the handlers are in place
        async for signum in signals:
            if store is not None and signum == signal.SIGHUP:
                log.info("received SIGHUP, reloading key file %s", store.path)
                await anyio.to_thread.run_sync(store.reload)
                continue
            log.info("received %s, closing sessions", signal.Signals(signum).name)
            scope.cancel()
            return


def _run(opts: Options) -> int:
    if opts.command is Command.GENPSK:
        key = genpsk(opts.key_length, os.urandom)
        # with -identity, a ready -keyfile line (parse_args checked the identity)
        print(key_file_line(opts.identity.decode(), key) if opts.identity else key)
    elif opts.command is Command.CIPHERS:
        _print_with_defaults([cipher_name(s) for s in SUPPORTED_CIPHERS], len(DEFAULT_CIPHERS))
    elif opts.command is Command.CURVES:
        _print_with_defaults([curve_name(g) for g in SUPPORTED_CURVES], len(DEFAULT_CURVES))
    elif opts.command is Command.VERSION:
        print(__version__)
    elif opts.command is Command.DEMO:
        from .demo import run_demo  # not at start-up: statistics and the demo's agents

        return anyio.run(
            run_demo,
            opts.psk,
            opts.ciphers,
            _groups(opts.curves),
            opts.mtu,
            backend_options=_loop(),
        )
    else:
        if opts.metrics is not None:  # before anything starts: one line if it is missing
            metrics.require()
        raise_file_limit()
        if opts.command is Command.SERVER and opts.workers > 1:
            return _run_workers(opts)
        anyio.run(_run_tunnel, opts, backend_options=_loop())
    return 0


def _loop() -> dict[str, bool]:
    """uvloop when it is installed (a dependency except on Windows and PyPy) and not
    turned off with DTLSPIPE_NO_UVLOOP (or DTLS_PORTABLE): its event loop wakes the
    readiness callbacks sooner."""
    if os.environ.get("DTLSPIPE_NO_UVLOOP") or PORTABLE:
        return {}
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def raise_file_limit() -> None:
    """Each session holds one socket: lift the soft limit on open files to the hard one
    (Go's runtime does the same), so 10 000 sessions need no ulimit tweaking where the
    hard limit allows them."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def no_core_dumps() -> None:
    """The process holds the PSK and session keys: a crash must not write them to a core
    file. (Where RLIMIT_CORE does not exist, nothing is done.)"""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass


def _print_with_defaults(names: list[str], defaults: int) -> None:
    """``ciphers`` and ``curves``: one name a line, the defaults (the Go program's whole
    list, in its order) first, then a comment line, then the ones only we have."""
    print("\n".join(names[:defaults]))
    print("# the defaults end here; below, not in the Go dtlspipe, used when named")
    print("\n".join(names[defaults:]))


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["allowedips"]:  # its own small parser (not a Go dtlspipe subcommand)
        from . import allowedips

        return allowedips.main(args[1:])
    try:
        opts = parse_args(args, os.environ)
    except HelpRequested:
        print(usage(), file=sys.stderr)
        return 0
    except UsageError as exc:
        print(f"dtlspipe: {exc}", file=sys.stderr)
        return 2
    no_core_dumps()
    level = logging.WARNING if opts.command is Command.DEMO else logging.INFO
    if opts.verbose or opts.quiet:  # -v: per-session details; -q: warnings and errors
        level = logging.DEBUG if opts.verbose else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr, format=LOG_FORMAT)
    logging.getLogger("asyncio").setLevel(max(level, logging.INFO))  # not the loop's debug
    profiler = None
    if opts.cpuprofile:
        import cProfile  # only for -cpuprofile

        profiler = cProfile.Profile()
    try:
        if profiler is not None:
            profiler.enable()
        return _run(opts)
    except UsageError as exc:
        print(f"dtlspipe: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        if profiler is not None and opts.cpuprofile:
            profiler.disable()
            profiler.dump_stats(opts.cpuprofile)

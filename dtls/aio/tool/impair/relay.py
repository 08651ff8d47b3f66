"""The impairing relay's sockets and timers: one :class:`Impairment` per client address
(a flow), each with its own upstream socket towards the target.

Datagrams are read in batches (:mod:`dtls.aio.udp`: ``recvmmsg`` on Linux), so one longer
than ``dtls.aio.udp.RECV_SIZE`` (about 18 KB, more than any DTLS record) arrives cut to
that size.
"""

from __future__ import annotations

import heapq
import itertools
import json
import signal
import socket
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import IO, Any

import anyio
from anyio.abc import TaskGroup

from ... import udp
from .decisions import COUNTERS, DIRECTIONS, Config, Impairment

MAX_DELAYED = 1024  # datagrams held for delay at once
MAX_FLOWS = 1024  # client mappings

Address = tuple[Any, ...]


@dataclass(eq=False)
class Flow:
    """One client address: its impairment state and current upstream socket."""

    client: Address
    impairment: Impairment
    sock: socket.socket | None = None
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    closed: bool = False


class Relay:
    """The sockets and timers around one :class:`Impairment` per client address."""

    def __init__(self, config: Config, listen: socket.socket, target: Address, family: int,
                 seed: int | str, record: IO[str] | None = None) -> None:  # fmt: skip
        self.config, self.listen, self.target, self.family = config, listen, target, family
        self.seed, self.record = seed, record
        self.counters: Counter[str] = Counter()
        self.flows: OrderedDict[Address, Flow] = OrderedDict()
        self.flows_created = 0
        self._delayed: list[tuple[float, int, str, Flow, bytes]] = []  # a heap
        self._order = itertools.count()
        self._waking: set[Flow] = set()  # flows whose next_wakeup() is set
        self._wake = anyio.Event()

    def stats(self) -> dict[str, Any]:
        c = self.counters
        per = {d: {k: c[f"{k}_{d}"] for k in COUNTERS if c[f"{k}_{d}"]} for d in DIRECTIONS}
        return {**{k: c[k] for k in COUNTERS}, **per, "flows": self.flows_created}

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_signals, tg.cancel_scope)
            tg.start_soon(self._timers)
            while True:
                await anyio.wait_readable(self.listen)
                now = time.monotonic()
                for data, client in udp.drain_from(self.listen):
                    flow = self.flows.get(client) or self._new_flow(client, tg)
                    self.flows.move_to_end(client)
                    self._received(flow, "c2s", data, now, tg)

    def _new_flow(self, client: Address, tg: TaskGroup) -> Flow:
        if len(self.flows) >= MAX_FLOWS:
            _, oldest = self.flows.popitem(last=False)
            oldest.closed = True
            oldest.scope.cancel()
            self._waking.discard(oldest)
        flow = Flow(client, Impairment(self.config, self.seed, self.flows_created, self.counters))
        self.flows_created += 1
        self.flows[client] = flow
        self._open_upstream(flow, tg)
        return flow

    def _open_upstream(self, flow: Flow, tg: TaskGroup) -> None:
        """A new upstream socket for ``flow``; the task owning the old one closes it."""
        flow.scope.cancel()
        sock = udp.connect_udp(self.family, self.target)
        flow.sock, flow.scope = sock, anyio.CancelScope()
        tg.start_soon(self._upstream, flow, sock, flow.scope, tg)

    async def _upstream(
        self, flow: Flow, sock: socket.socket, scope: anyio.CancelScope, tg: TaskGroup
    ) -> None:
        with scope:
            try:
                while True:
                    await anyio.wait_readable(sock)
                    now = time.monotonic()
                    for data in udp.drain(sock):
                        self._received(flow, "s2c", data, now, tg)
            finally:
                sock.close()

    def _received(self, flow: Flow, direction: str, data: bytes, now: float, tg: TaskGroup) -> None:
        if self.record is not None:
            line = {"t": round(time.time(), 6), "dir": direction, "hex": data.hex()}
            self.record.write(json.dumps(line) + "\n")
        imp = flow.impairment
        out = imp.process(data, direction, now)
        if direction == "c2s" and imp.take_rebind():
            self._open_upstream(flow, tg)
        for delay, datagram in out:
            self._emit(flow, direction, delay, datagram, now)
        if imp.next_wakeup() is not None:
            self._waking.add(flow)
            self._wake.set()

    def _emit(self, flow: Flow, direction: str, delay: float, data: bytes, now: float) -> None:
        if delay <= 0.0 or len(self._delayed) >= MAX_DELAYED:
            self._send(flow, direction, data)
            return
        heapq.heappush(self._delayed, (now + delay, next(self._order), direction, flow, data))
        self._wake.set()

    def _send(self, flow: Flow, direction: str, data: bytes) -> None:
        if flow.closed or flow.sock is None:
            return
        if direction == "c2s":
            sent = udp.send(flow.sock, data)
        else:
            sent = udp.sendto(self.listen, data, flow.client)
        if sent:  # else a full buffer or an ICMP error: the network lost it
            flow.impairment.count("forwarded", direction)

    async def _timers(self) -> None:
        """Sends delayed datagrams when due and runs the flows' ``poll``."""
        while True:
            now = time.monotonic()
            while self._delayed and self._delayed[0][0] <= now:
                _, _, direction, flow, data = heapq.heappop(self._delayed)
                self._send(flow, direction, data)
            wakeups = []
            for flow in list(self._waking):
                for direction, (delay, data) in flow.impairment.poll(now):
                    self._emit(flow, direction, delay, data, now)
                wake = flow.impairment.next_wakeup()
                if wake is None or flow.closed:
                    self._waking.discard(flow)
                else:
                    wakeups.append(wake)
            if self._delayed:  # after the polls: a flushed pack may have been delayed
                wakeups.append(self._delayed[0][0])
            self._wake = anyio.Event()
            with anyio.move_on_after(max(0.0, min(wakeups) - now) if wakeups else None):
                await self._wake.wait()


async def _watch_signals(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return

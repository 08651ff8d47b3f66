"""The tunnel's runtime: sockets, sessions and timers around the sans-I/O engine.

Data path (PERF.md): every socket is watched by a readiness callback
(:class:`dtls.aio.udp.Readers`) that reads a batch of datagrams (``recvmmsg`` on Linux)
and carries each one from its receive to its send in the same pass, through the engine's
fast path for established connections, sending each session's output as one batch
(``sendmmsg``). Tasks only dial, run handshake timers and end stale sessions.

- client (:mod:`dtlspipe.tunnel_client`): one plaintext listening socket; each source
  address gets a session with its own UDP socket connected to the server and its own
  :class:`dtls.DTLSConnection`.
- server (:mod:`dtlspipe.tunnel_server`): one DTLS listening socket feeding a
  :class:`dtls.DTLSServer`; each session gets its own UDP socket connected to the remote
  service, so replies find their session.

"Left" is the side a session's first datagram came from (the plaintext sender for the
client, the DTLS client for the server); "right" is where it goes.
"""

from __future__ import annotations

from dtls.aio.udp import Address, bind_udp

from .sessions import MAX_PENDING, MAX_PLAINTEXT, Session, SessionPolicy, fmt
from .tunnel_client import ClientSession, TunnelClient
from .tunnel_server import ServerSession, TunnelServer

__all__ = [
    "MAX_PENDING",
    "MAX_PLAINTEXT",
    "Address",
    "ClientSession",
    "ServerSession",
    "Session",
    "SessionPolicy",
    "TunnelClient",
    "TunnelServer",
    "bind_udp",
    "fmt",
]

"""dtls.aio: DTLS clients and servers on anyio (asyncio, uvloop and trio).

The I/O layer over the sans-I/O engine: sockets, the clock, the OS's random source and
timers live here and nowhere else in ``dtls``::

    async with await dtls.aio.connect("127.0.0.1", 5684, psk=key, identity=b"me") as s:
        await s.send(b"hello")
        print(await s.receive())

    async def echo(stream: dtls.aio.DTLSStream) -> None:
        async for data in stream:
            await stream.send(data)

    listener = await dtls.aio.create_server("127.0.0.1:5684", psk=key)
    await listener.serve(echo)

See docs/library.md for the options, the error model and the bounds.
"""

try:
    from .. import DTLSConfiguration as _engine  # noqa: F401 - is the dtls above ours?
except ImportError:  # PyPI's Dtls (PyDTLS) installs a package of the same name
    raise ImportError(
        "the dtls package installed is not dtlspipe's engine (PyPI's 'Dtls', PyDTLS, uses "
        "the same import name): uninstall it (pip uninstall Dtls) or use another virtual "
        "environment"
    ) from None

from .attributes import DTLSAttribute
from .client import connect
from .errors import (
    AlertReceivedError,
    AuthenticationFailed,
    ConnectionLost,
    HandshakeError,
    HandshakeTimeout,
    PeerUnreachable,
)
from .keylog import KeyLogError
from .server import DTLSListener, create_server
from .stream import DTLSStream

__all__ = [
    "AlertReceivedError",
    "AuthenticationFailed",
    "ConnectionLost",
    "DTLSAttribute",
    "DTLSListener",
    "DTLSStream",
    "HandshakeError",
    "HandshakeTimeout",
    "KeyLogError",
    "PeerUnreachable",
    "connect",
    "create_server",
]

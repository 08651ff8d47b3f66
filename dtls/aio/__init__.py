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

from importlib import import_module
from typing import TYPE_CHECKING

try:
    from .. import DTLSConfiguration as _engine  # noqa: F401 - is the dtls above ours?
except ImportError:  # PyPI's Dtls (PyDTLS) installs a package of the same name
    raise ImportError(
        "the dtls package installed is not dtlspipe's engine (PyPI's 'Dtls', PyDTLS, uses "
        "the same import name): uninstall it (pip uninstall Dtls) or use another virtual "
        "environment"
    ) from None

if TYPE_CHECKING:
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

#: the public names and the submodule of each, imported at the first use of one: the
#: tunnel (dtlspipe) uses only .udp, .keylog, .timers and their like, and importing one
#: of those runs this file first; the streams, client and listener then stay unloaded
_EXPORTS = {
    "AlertReceivedError": "errors",
    "AuthenticationFailed": "errors",
    "ConnectionLost": "errors",
    "DTLSAttribute": "attributes",
    "DTLSListener": "server",
    "DTLSStream": "stream",
    "HandshakeError": "errors",
    "HandshakeTimeout": "errors",
    "KeyLogError": "keylog",
    "PeerUnreachable": "errors",
    "connect": "client",
    "create_server": "server",
}

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


def __getattr__(name: str) -> object:
    """PEP 562: ``dtls.aio.connect`` and the other public names, imported when first
    asked for (then kept in the module, so this runs once per name)."""
    submodule = _EXPORTS.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value: object = getattr(import_module(f".{submodule}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})

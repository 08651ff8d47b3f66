"""dtlspipe: UDP over DTLS 1.2 with pre-shared keys, built on the sans-I/O ``dtls`` engine."""

__version__ = "0.1.0"


def require_our_dtls() -> None:
    """Raise ImportError, naming the conflict, when the ``dtls`` package Python finds is
    not this project's engine: PyPI's ``Dtls`` (PyDTLS, an OpenSSL wrapper) installs a
    package of the same import name."""
    import dtls

    if not hasattr(dtls, "DTLSConfiguration"):
        where = getattr(dtls, "__file__", None) or "?"
        raise ImportError(
            f"the dtls package at {where} is not dtlspipe's engine: PyPI's 'Dtls' (PyDTLS) "
            "uses the same import name; uninstall it (pip uninstall Dtls) or keep the two "
            "in separate virtual environments"
        )

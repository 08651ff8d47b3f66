"""dtlspipe: UDP over DTLS 1.2 with pre-shared keys, built on the sans-I/O ``dtls`` engine."""

__version__ = "0.1.0"

"""xmppcore — an XMPP server with a pure (sans-I/O) protocol core."""

__all__ = ["__version__"]

__version__ = "0.1.0"

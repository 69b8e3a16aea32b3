"""The slixmpp stream a bot runs on: a client account or an external component.

As an account (RFC 6120) the bot authenticates with SASL after STARTTLS (§5), or over TLS from
the first byte (XEP-0368), and never in plaintext.  It verifies the server's certificate for
the JID's domain against ``cafile`` or the system's trust store; ``insecure`` turns that off for
tests against servers with throw-away certificates.

As a component (XEP-0114) the bot opens a ``jabber:component:accept`` stream and proves it
knows the shared secret with a SHA-1 handshake (§3).  That protocol has no TLS: run it on
loopback or a private network.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable

import slixmpp
from slixmpp.basexmpp import BaseXMPP

from .settings import Mode, Settings

__all__ = ["DEFAULT_PLUGINS", "make_client"]

log = logging.getLogger(__name__)

# XEP-0030 Service Discovery and XEP-0199 XMPP Ping (answering, not sending).
DEFAULT_PLUGINS = ("xep_0030", "xep_0199")


def make_client(settings: Settings, plugins: Iterable[str] = ()) -> BaseXMPP:
    """A new, unconnected slixmpp stream for ``settings`` with ``plugins`` registered."""
    xmpp: BaseXMPP
    if settings.mode is Mode.COMPONENT:
        assert settings.server is not None  # load_settings insists
        host, port = settings.server
        xmpp = slixmpp.ComponentXMPP(settings.jid, settings.secret,  # type: ignore[no-untyped-call]
                                     host, port)
        xmpp.enable_direct_tls = False
        xmpp.enable_starttls = False
        xmpp.enable_plaintext = True  # XEP-0114 §3: the handshake protects only the secret
    else:
        xmpp = slixmpp.ClientXMPP(settings.jid, settings.secret)
        xmpp.enable_plaintext = False
        xmpp.enable_direct_tls = settings.direct_tls
        xmpp.enable_starttls = not settings.direct_tls
        _configure_tls(xmpp, settings)
    for plugin in (*DEFAULT_PLUGINS, *plugins):
        xmpp.register_plugin(plugin)
    return xmpp


def _configure_tls(xmpp: BaseXMPP, settings: Settings) -> None:
    if settings.insecure:
        log.warning("--insecure: the server's certificate is NOT verified (for testing only)")
        xmpp.ssl_context.check_hostname = False
        xmpp.ssl_context.verify_mode = ssl.CERT_NONE
    elif settings.cafile is not None:
        xmpp.ca_certs = settings.cafile

"""XEP-0199: XMPP Ping — the server answers pings to itself and to accounts' bare JIDs."""

from __future__ import annotations

from xmppcore.server.iq import IqRequest
from xmppcore.server.module_api import IqScope, ModuleContext, Xep
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_PING

PROTOCOL = (Xep(199, "2.0.1"),)


def setup(mod: ModuleContext) -> None:
    async def pong(request: IqRequest) -> Element | None:
        return None  # XEP-0199 §4.2: an empty result

    for scope in IqScope:
        mod.add_feature(NS_PING, scope)
        mod.iq_handler(NS_PING, "ping", pong, scope=scope)

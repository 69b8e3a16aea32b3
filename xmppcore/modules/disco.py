"""XEP-0030: Service Discovery — what the server and its accounts are and support.

Answers disco#info and disco#items for the server's domain and, on behalf of accounts, for
their bare JIDs (RFC 6121 §8.5.1.1).  Features and identities come from what every loaded
module declared through ``mod.add_feature`` / ``mod.add_identity``, so the answer always
matches what is loaded.  Nodes are not supported yet: a query with a node gets
``item-not-found``.
"""

from __future__ import annotations

from xmppcore.server.iq import IqRequest
from xmppcore.server.module_api import IqScope, ModuleContext, Xep
from xmppcore.stanza.errors import Condition, StanzaError
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_DISCO_INFO, NS_DISCO_ITEMS

PROTOCOL = (Xep(30, "2.5rc3", status="partial"),)


def setup(mod: ModuleContext) -> None:
    registry = mod.disco

    def info(scope: IqScope) -> Element:
        query = Element("query", NS_DISCO_INFO)
        # XEP-0030 §3.1: identities and features, each listed once, features sorted.
        for identity in registry.identities[scope]:
            attrs = {"category": identity.category, "type": identity.type}
            if identity.name:
                attrs["name"] = identity.name
            query.add("identity", attrs=attrs)
        for var in sorted(set(registry.features[scope])):
            query.add("feature", attrs={"var": var})
        return query

    def check_node(request: IqRequest) -> None:
        if request.payload.get("node"):
            raise StanzaError(Condition.ITEM_NOT_FOUND, "no such node")

    async def host_info(request: IqRequest) -> Element:
        check_node(request)
        return info(IqScope.HOST)

    async def account_info(request: IqRequest) -> Element:
        # XEP-0030 §8: without a presence subscription a stranger learns nothing about an
        # account, not even that it exists. Rosters come later; until then only the account
        # itself is answered.
        if request.sender.bare != request.to.bare:
            raise StanzaError(Condition.SERVICE_UNAVAILABLE)
        check_node(request)
        return info(IqScope.ACCOUNT)

    async def host_items(request: IqRequest) -> Element:
        check_node(request)
        return Element("query", NS_DISCO_ITEMS)

    async def account_items(request: IqRequest) -> Element:
        check_node(request)
        query = Element("query", NS_DISCO_ITEMS)
        # XEP-0030 §4.1: an account's connected resources, but only for the account itself
        # until rosters say who else may see its presence (§8: others get an empty list).
        if request.sender.bare == request.to.bare:
            for session in mod.sessions_of(request.to.bare):
                if session.jid is not None:
                    query.add("item", attrs={"jid": str(session.jid)})
        return query

    mod.add_identity("server", "im", "xmppcore")
    mod.add_identity("account", "registered", scope=IqScope.ACCOUNT)
    for scope in IqScope:
        mod.add_feature(NS_DISCO_INFO, scope)
        mod.add_feature(NS_DISCO_ITEMS, scope)
    mod.iq_handler(NS_DISCO_ITEMS, "query", host_items)
    mod.iq_handler(NS_DISCO_ITEMS, "query", account_items, scope=IqScope.ACCOUNT)
    mod.iq_handler(NS_DISCO_INFO, "query", host_info)
    mod.iq_handler(NS_DISCO_INFO, "query", account_info, scope=IqScope.ACCOUNT)

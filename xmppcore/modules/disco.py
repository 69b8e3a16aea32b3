"""XEP-0030: Service Discovery — what the server and its accounts are and support.

Answers disco#info and disco#items for the server's domain and, on behalf of accounts, for
their bare JIDs (RFC 6121 §8.5.1.1).  Features and identities come from what every loaded
module declared through ``mod.add_feature`` / ``mod.add_identity``, so the answer always
matches what is loaded.  The server's disco#items lists the external components (XEP-0114)
configured on its subdomains.  Nodes are not supported yet: a query with a node gets
``item-not-found``.

An account is described only to those who may see its presence (§8): the account itself, and
contacts the account has a ``from`` or ``both`` subscription with (read from the roster module,
``dependency("roster")``, when it is loaded).  Anyone else gets ``service-unavailable`` for
disco#info, as for an account that does not exist, and an empty disco#items.  The items are the
account's resources: every bound one for the account itself, the available ones (those its
presence reveals) for a contact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from xmppcore.jid import JID
from xmppcore.server.iq import IqRequest
from xmppcore.server.module_api import IqScope, ModuleContext, Xep
from xmppcore.stanza.errors import Condition, StanzaError
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_DISCO_INFO, NS_DISCO_ITEMS

if TYPE_CHECKING:
    from .roster import Roster

PROTOCOL = (Xep(30, "2.5rc3", status="partial"),)


async def _shares_presence(mod: ModuleContext, user: JID, contact: JID) -> bool:
    """True when ``user``'s roster gives ``contact`` a 'from' or 'both' subscription (§8)."""
    try:
        roster = cast("Roster", mod.dependency("roster"))
    except KeyError:
        return False  # no rosters loaded: no subscriptions
    return await roster.shares_presence(user, contact)


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
        # account, not even that it exists.
        own = request.sender.bare == request.to.bare
        if not own and not await _shares_presence(mod, request.to, request.sender):
            raise StanzaError(Condition.SERVICE_UNAVAILABLE)
        check_node(request)
        return info(IqScope.ACCOUNT)

    async def host_items(request: IqRequest) -> Element:
        check_node(request)
        query = Element("query", NS_DISCO_ITEMS)
        for domain in mod.components():  # XEP-0114 services on our subdomains (XEP-0030 §4.2)
            query.add("item", attrs={"jid": domain})
        return query

    async def account_items(request: IqRequest) -> Element:
        check_node(request)
        query = Element("query", NS_DISCO_ITEMS)
        # XEP-0030 §4.1: an account's resources; §8: others than the account and its presence
        # subscribers get an empty list.  A contact sees only the available resources: a
        # session that sent no presence (or went unavailable) is invisible to it.
        own = request.sender.bare == request.to.bare
        if own or await _shares_presence(mod, request.to, request.sender):
            for session in mod.sessions_of(request.to.bare):
                if session.jid is not None and (own or session.available):
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

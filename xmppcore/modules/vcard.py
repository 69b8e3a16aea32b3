"""XEP-0054: vcard-temp — each account's vCard, kept by the server and readable by anyone.

The server answers vCard requests to an account's bare JID on the account's behalf and never
forwards them to a resource (§3.3).  Only the account itself may publish its vCard (§3.2); the
whole vCard is replaced on every set, and an empty ``<vCard/>`` removes it.  A vCard larger than
``max_size`` is refused with ``not-acceptable`` and nothing is stored: XEP-0054 sets no limit
(ejabberd 23.01 has none below its stanza size limit), so we follow the condition XEP-0060
§7.1.3.4 uses for a payload over a service's size limit and that RFC 6120 §8.3.3.12 defines for
a request that "does not meet criteria defined by the recipient".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from xmppcore.modules.private import element_from_json, element_to_json, xml_size
from xmppcore.server import hooks
from xmppcore.server.iq import IqRequest
from xmppcore.server.module_api import IqScope, IqType, ModuleContext, Xep
from xmppcore.stanza.errors import Condition, StanzaError
from xmppcore.storage.api import KeyValueStore, StoreKind
from xmppcore.xml.element import Element

__all__ = ["PROTOCOL", "NS_VCARD", "Options", "setup"]

PROTOCOL = (Xep(54, "1.2"),)
NS_VCARD = "vcard-temp"


@dataclass(frozen=True)
class Options:
    max_size: int = 65536   # bytes of the <vCard/> element as XML; photos (XEP-0153) fit

    def __post_init__(self) -> None:
        if self.max_size < 1:
            raise ValueError("max_size must be at least 1")


def _is_empty(vcard: Element) -> bool:
    """No fields: the account has no vCard (a set of it deletes the stored one)."""
    return not any(isinstance(c, Element) or c.strip() for c in vcard.children)


def setup(mod: ModuleContext) -> None:
    options: Options = mod.options
    store = cast(KeyValueStore, mod.open_store("vcard", StoreKind.KEYVAL))

    async def get_vcard(request: IqRequest) -> Element:
        stored = await store.get(request.to.local)
        if stored is not None:
            return element_from_json(stored)
        if request.sender.bare == request.to.bare:
            # §3.1: one's own missing vCard may be an empty <vCard/> (what ejabberd answers)
            # or an error; the empty element lets a client edit it without a special case.
            return Element("vCard", NS_VCARD)
        # §3.3: "If no vCard exists or the user does not exist, the server MUST return a stanza
        # error, which SHOULD [be] service-unavailable or item-not-found".  The router answers a
        # missing account with service-unavailable; the same here keeps the two alike.
        raise StanzaError(Condition.SERVICE_UNAVAILABLE)

    async def set_vcard(request: IqRequest) -> None:
        if request.sender.bare != request.to.bare:
            # §3.2: a set on another user's vCard MUST fail, "which SHOULD be forbidden".
            raise StanzaError(Condition.FORBIDDEN, "only the account itself may change its vCard")
        vcard = request.payload
        if xml_size([vcard]) > options.max_size:
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"a vCard may hold at most {options.max_size} bytes")
        await store.set(request.to.local, None if _is_empty(vcard) else element_to_json(vcard))

    async def forget_account(event: hooks.AccountEvent) -> None:
        await store.set(event.jid.local, None)  # a deleted account's vCard goes with it

    # XEP-0054 §4: the feature is advertised; ejabberd lists it for the server and for accounts.
    mod.add_feature(NS_VCARD, IqScope.HOST)
    mod.add_feature(NS_VCARD, IqScope.ACCOUNT)
    mod.iq_handler(NS_VCARD, "vCard", get_vcard, types=(IqType.GET,), scope=IqScope.ACCOUNT)
    mod.iq_handler(NS_VCARD, "vCard", set_vcard, types=(IqType.SET,), scope=IqScope.ACCOUNT)
    mod.hook(hooks.ACCOUNT_DELETED, forget_account)

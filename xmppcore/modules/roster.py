"""RFC 6121 §2: the roster — get, add, update and remove items, pushes, versioning (§2.6).

Only the account itself reads or changes its roster (§2.1.5/§2.3.3: anyone else gets
``forbidden``).  Every change is pushed to the account's *interested* resources, those that
have asked for the roster (§2.2), including the one that made the change.  A client sets only
'jid', 'name' and the groups: 'subscription' (except "remove"), 'ask' and 'approved' belong to
the server (§2.1.2) and are ignored in a roster set.  Versions are opaque strings (§2.6.1); a
roster get carrying the current version gets an empty result, any other the whole roster.

The roster also answers presence subscription stanzas (RFC 6121 §3) through the pure table of
:mod:`xmppcore.modules.subscription`; see :mod:`xmppcore.modules.roster_subscriptions`.  It
supports pre-approvals and advertises them as a stream feature (§3.4).
Other modules reach a host's rosters through ``mod.dependency("roster")`` (a :class:`Roster`).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import cast

from xmppcore.jid import JID, InvalidJID
from xmppcore.server import hooks
from xmppcore.server.iq import IqRequest
from xmppcore.server.module_api import IqScope, IqType, ModuleContext, Rfc
from xmppcore.server.sessions import Session
from xmppcore.stanza.errors import Condition, StanzaError
from xmppcore.storage.api import KeyValueStore, MapStore, StoreKind
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT, NS_ROSTER

from .roster_store import RosterItem, RosterStore
from .roster_subscriptions import register_subscriptions

__all__ = [
    "PROTOCOL", "NS_ROSTER_VER", "NS_PRE_APPROVAL", "Options", "RosterUpdate", "parse_roster_set", "Roster", "setup",
]

PROTOCOL = (Rfc(6121, "2"),)
NS_ROSTER_VER = "urn:xmpp:features:rosterver"
NS_PRE_APPROVAL = "urn:xmpp:features:pre-approval"

_SUBSCRIPTION_VALUES = frozenset({"none", "to", "from", "both", "remove"})


@dataclass(frozen=True)
class Options:
    """``[modules.roster]``."""

    max_items: int = 1000          # items per roster; beyond it a new item is policy-violation
    max_name_length: int = 1024    # characters in 'name' (§2.3.3: not-acceptable beyond)
    max_group_length: int = 1024   # characters in one <group/> (§2.3.3: not-acceptable beyond)
    versioning: bool = True        # roster versioning (§2.6)

    def __post_init__(self) -> None:
        for key in ("max_items", "max_name_length", "max_group_length"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1")


@dataclass(frozen=True, slots=True)
class RosterUpdate:
    """A valid roster set: add or update ``jid`` with a name and groups, or remove it."""

    jid: JID
    remove: bool = False
    name: str | None = None
    groups: tuple[str, ...] = ()


def parse_roster_set(query: Element, options: Options) -> RosterUpdate:
    """Check a roster set's ``<query/>`` (RFC 6121 §2.3.3, §2.5); raise ``StanzaError``."""
    items = query.findall("item", NS_ROSTER)
    if len(items) != 1 or any(el.qname != (NS_ROSTER, "item") for el in query.elements()):
        raise StanzaError(Condition.BAD_REQUEST, "a roster set carries exactly one item")
    item = items[0]
    try:
        jid = JID.parse(item.get("jid") or "")
    except InvalidJID:
        raise StanzaError(Condition.BAD_REQUEST, "the item's 'jid' is not a valid JID") from None
    subscription = item.get("subscription")
    if subscription is not None and subscription not in _SUBSCRIPTION_VALUES:
        raise StanzaError(Condition.BAD_REQUEST, "unknown 'subscription' value")
    if subscription == "remove":
        return RosterUpdate(jid, remove=True)
    # §2.1.2.5: any other 'subscription' value, and 'ask'/'approved', are the server's to set.
    name = item.get("name") or None
    if name is not None and len(name) > options.max_name_length:
        raise StanzaError(Condition.NOT_ACCEPTABLE, "the item's name is too long")
    groups = tuple(group.text for group in item.findall("group", NS_ROSTER))
    if any(not group for group in groups):
        # §2.3.3: to take an item out of every group a client sends no <group/> at all.
        raise StanzaError(Condition.NOT_ACCEPTABLE, "a group name must not be empty")
    if any(len(group) > options.max_group_length for group in groups):
        raise StanzaError(Condition.NOT_ACCEPTABLE, "a group name is too long")
    if len(set(groups)) != len(groups):
        raise StanzaError(Condition.BAD_REQUEST, "the item lists a group twice")
    return RosterUpdate(jid, name=name, groups=groups)


class Roster:
    """One host's rosters: what other modules use (exported as ``dependency("roster")``)."""

    def __init__(self, mod: ModuleContext, store: RosterStore, options: Options) -> None:
        self._mod = mod
        self.store = store
        self.options = options
        self._interested: set[Session] = set()
        self._push_ids = (f"push-{secrets.token_hex(4)}-{n}" for n in itertools.count(1))
        # Set by the subscription logic: what removing an item means for its subscription.
        self.on_remove: Callable[[JID, RosterItem], Awaitable[None]] | None = None

    # -- interested resources (§2.2) ----------------------------------------------------------
    def mark_interested(self, session: Session) -> None:
        self._interested.add(session)

    def forget(self, session: Session) -> None:
        self._interested.discard(session)

    def is_interested(self, session: Session) -> bool:
        return session in self._interested

    # -- reading ------------------------------------------------------------------------------
    async def item(self, user: JID, contact: JID) -> RosterItem | None:
        """``contact``'s record in ``user``'s roster, listed or not."""
        return await self.store.get(user.local, contact)

    async def shares_presence(self, user: JID, contact: JID) -> bool:
        """RFC 6121 §2.1.2.5: ``user``'s roster gives ``contact`` a 'from' or 'both' subscription.

        The one rule behind presence broadcasts, probe answers, last activity (XEP-0012 §3)
        and what account disco tells contacts (XEP-0030 §8).
        """
        item = await self.item(user.bare, contact.bare)
        return item is not None and item.listed and item.state.from_

    async def items(self, user: JID) -> list[RosterItem]:
        """The roster a client sees."""
        return await self.store.listed(user.local)

    # -- changing (callers hold ``store.locked(user.local)``) ----------------------------------
    async def save(self, user: JID, item: RosterItem, *, push: bool = True) -> None:
        """Store ``item`` and push it when it is (or just was) visible to clients."""
        before = await self.store.get(user.local, item.jid)
        version = await self.store.put(user.local, item)
        if push and (item.listed or (before is not None and before.listed)):
            self.push(user, item.element() if item.listed else _removed(item.jid), version)

    async def delete(self, user: JID, contact: JID) -> None:
        version = await self.store.delete(user.local, contact)
        self.push(user, _removed(contact), version)

    def push(self, user: JID, item: Element, version: str) -> None:
        """A roster push (§2.1.6) to each interested resource of ``user``."""
        for session in self._mod.sessions_of(user.bare):
            if session in self._interested and session.jid is not None:
                query = Element("query", NS_ROSTER)
                if self.options.versioning:
                    query.attrs["ver"] = version
                query.append(item.copy())
                iq = Element("iq", NS_CLIENT, {
                    "type": "set", "id": next(self._push_ids), "from": str(user.bare), "to": str(session.jid),
                })
                iq.append(query)
                session.deliver(iq)

    # -- the IQ handlers -------------------------------------------------------------------------
    async def on_get(self, request: IqRequest) -> Element | None:
        _check_own(request)
        session = self._session_of(request.sender)
        if session is not None:
            self.mark_interested(session)
        asked = request.payload.get("ver") if self.options.versioning else None
        version = await self.store.version(request.to.local)
        if asked is not None and asked == version:
            return None  # §2.6.3: unchanged; changes made later arrive as pushes
        query = Element("query", NS_ROSTER)
        if asked is not None:
            query.attrs["ver"] = version
        for item in await self.items(request.to):
            query.append(item.element())
        return query

    async def on_set(self, request: IqRequest) -> Element | None:
        _check_own(request)
        update = parse_roster_set(request.payload, self.options)
        user = request.to.bare
        async with self.store.locked(user.local):
            existing = await self.item(user, update.jid)
            existing_listed = existing if existing is not None and existing.listed else None
            if update.remove:
                if existing_listed is None:
                    raise StanzaError(Condition.ITEM_NOT_FOUND, "no such item in the roster")
                await self.delete(user, update.jid)
            else:
                if existing_listed is None and len(await self.items(user)) >= self.options.max_items:
                    raise StanzaError(Condition.POLICY_VIOLATION, "the roster is full")
                base = existing or RosterItem(update.jid)
                await self.save(user, replace(base, name=update.name, groups=update.groups, listed=True))
        if update.remove and existing_listed is not None and self.on_remove is not None:
            # Outside the lock: cancelling may route presence back to this very account.
            await self.on_remove(user, existing_listed)
        return None

    def _session_of(self, full: JID) -> Session | None:
        for session in self._mod.sessions_of(full.bare):
            if session.jid == full:
                return session
        return None


def _removed(contact: JID) -> Element:
    return Element("item", NS_ROSTER, {"jid": str(contact), "subscription": "remove"})


def _check_own(request: IqRequest) -> None:
    # §2.3.3: only the account itself may touch its roster; others get forbidden.
    if request.sender.bare != request.to.bare:
        raise StanzaError(Condition.FORBIDDEN, "a roster belongs to its account alone")


def setup(mod: ModuleContext) -> None:
    options: Options = mod.options or Options()
    items = cast(MapStore, mod.open_store("roster", StoreKind.MAP))
    versions = cast(KeyValueStore, mod.open_store("roster_version", StoreKind.KEYVAL))
    roster = Roster(mod, RosterStore(items, versions), options)

    async def on_closed(event: hooks.SessionEvent) -> None:
        roster.forget(event.session)

    async def forget_account(event: hooks.AccountEvent) -> None:
        # XEP-0077 §3.2: the server "SHOULD also cancel all existing presence subscriptions",
        # as removing each item would (§2.5.2); then the roster and its version go.
        user = event.jid
        for item in await roster.store.all(user.local):
            if roster.on_remove is not None:
                await roster.on_remove(user, item)
        async with roster.store.locked(user.local):
            await roster.store.delete_user(user.local)

    mod.iq_handler(NS_ROSTER, "query", roster.on_get, types=(IqType.GET,), scope=IqScope.ACCOUNT)
    mod.iq_handler(NS_ROSTER, "query", roster.on_set, types=(IqType.SET,), scope=IqScope.ACCOUNT)
    mod.hook(hooks.SESSION_CLOSED, on_closed)
    mod.hook(hooks.ACCOUNT_DELETED, forget_account)
    if options.versioning:
        mod.add_stream_feature(Element("ver", NS_ROSTER_VER))
    # RFC 6121 §3.4: a server that supports pre-approvals "MUST advertise" this stream feature.
    mod.add_stream_feature(Element("sub", NS_PRE_APPROVAL))
    register_subscriptions(mod, roster)
    mod.export(roster)

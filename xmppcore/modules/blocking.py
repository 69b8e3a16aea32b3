"""XEP-0191: Blocking Command — per-account blocklists, their pushes, and their enforcement.

An account's blocklist lives in a map store (user × blocked JID → when it was added).  The
commands are IQs the server answers for the account's own bare JID (§3.2–§3.5); block and
unblock are pushed to every resource of the account that has asked for the blocklist.

Enforcement (§3.3) sits on two filter hooks, so it sees stanzas before any module delivers them:

- ``FILTER_FROM_CLIENT``: a stanza the user sends to a blocked JID is not routed; the sender gets
  ``<not-acceptable/>`` with ``<blocked xmlns='urn:xmpp:blocking:errors'/>``.
- ``FILTER_TO_ACCOUNT``: a stanza from a blocked JID to the user is never delivered: presence
  vanishes, messages and IQ get/set are answered with ``service-unavailable`` (so the user looks
  offline), IQ results and errors vanish.  Stanzas the server sends *on the user's behalf* to a
  JID the user blocks (presence broadcasts, probes) are dropped here too, except the errors the
  server itself returns.

The account itself and its own server are never blocked: XEP-0191 §5 note 1 forbids blocking one
of a user's resources from another, and the user must keep reaching its server (to unblock).

Options (``[modules.blocking]``): ``max_items`` (default 1000) bounds each blocklist; a block that
would exceed it is refused with ``policy-violation`` and changes nothing.

Matching follows §6 (as XEP-0016 does): ``user@domain/resource`` matches only that resource,
``user@domain`` any of its resources, ``domain/resource`` only that JID, and ``domain`` the domain
and every JID at it.

TODO(roster): §3.3 also asks that, on a block, the user's server sends unavailable presence to the
blocked JID when it may see the user's presence, and §3.4 the current presence after an unblock.
That needs the roster's subscription state; the roster/presence module can do it with the
exported :class:`Blocklists` (note that ``FILTER_TO_ACCOUNT`` drops non-error stanzas from the user
to a JID it blocks, so the unavailable presence must be sent before the block is stored).
"""

from __future__ import annotations

import logging
import secrets
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from xmppcore.jid import JID, InvalidJID
from xmppcore.server import hooks
from xmppcore.server.iq import IqRequest
from xmppcore.server.module_api import IqScope, IqType, ModuleContext, Xep
from xmppcore.server.sessions import Session
from xmppcore.stanza.errors import Condition, ErrorType, StanzaError
from xmppcore.stanza.model import error_reply
from xmppcore.storage.api import JSONValue, MapStore, StoreKind
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT

__all__ = [
    "NS_BLOCKING", "NS_BLOCKING_ERRORS", "Options", "Blocklists",
    "matches", "is_own", "parse_items", "blocked_error", "setup",
]

PROTOCOL = (Xep(191, "1.3"),)

NS_BLOCKING = "urn:xmpp:blocking"
NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"

log = logging.getLogger(__name__)

# Blocking must act before any module delivers, stores or answers a stanza.
_FILTER_PRIORITY = 100
_CACHED_ACCOUNTS = 4096


@dataclass(frozen=True)
class Options:
    # A stranger-controlled list is bounded (STYLE rule 8); a block beyond it changes nothing.
    max_items: int = 1000

    def __post_init__(self) -> None:
        if self.max_items < 1:
            raise ValueError("max_items must be at least 1")


# -- pure rules ------------------------------------------------------------------------------------
def matches(item: JID, jid: JID) -> bool:
    """True when blocklist ``item`` covers ``jid`` (XEP-0191 §6, the XEP-0016 §2.1 order)."""
    if item.local:
        # user@domain/resource: only that resource; user@domain: any resource.
        return jid == item if item.resource else jid.bare == item
    if item.resource:
        return jid == item  # domain/resource: only that resource
    return jid.domain == item.domain  # domain: the domain and every address at it


def is_own(user: JID, other: JID) -> bool:
    """True when ``other`` is ``user``'s own account or its server, which are never blocked."""
    return other.bare == user.bare or (other.is_domain and other.domain == user.domain)


def parse_items(payload: Element) -> list[JID]:
    """The JIDs of a ``<block/>``/``<unblock/>``, normalised and without repeats.

    Raises ``bad-request`` for an item without 'jid' and ``jid-malformed`` for one that is no JID
    (RFC 6120 §8.3.3.8), so one bad item refuses the whole command and nothing changes.
    """
    jids: list[JID] = []
    for item in payload.findall("item", NS_BLOCKING):
        text = item.get("jid")
        if text is None:
            raise StanzaError(Condition.BAD_REQUEST, "an <item/> needs a 'jid' attribute")
        try:
            jid = JID.parse(text)
        except InvalidJID:
            raise StanzaError(Condition.JID_MALFORMED, "an <item/> holds an invalid JID") from None
        if jid not in jids:
            jids.append(jid)
    return jids


def blocked_error(stanza: Element) -> Element:
    """The error answering a stanza the user sent to a JID it blocks (XEP-0191 §3.3, Example 8)."""
    reply = error_reply(stanza, StanzaError(Condition.NOT_ACCEPTABLE, type=ErrorType.CANCEL))
    error = reply.find("error")
    assert error is not None
    error.add("blocked", NS_BLOCKING_ERRORS)
    return reply


def _item_list(name: str, jids: Iterable[JID]) -> Element:
    payload = Element(name, NS_BLOCKING)
    for jid in jids:
        payload.add("item", attrs={"jid": str(jid)})
    return payload


# -- storage ---------------------------------------------------------------------------------------
class Blocklists:
    """The blocklists of one host's accounts; exported for other modules (presence, roster).

    Lists are read on every stanza to an account, so the latest ones are cached.  A load that
    overlaps a write is not cached (the generation counter says so), so no stale list survives.
    """

    def __init__(self, store: MapStore, *, cached: int = _CACHED_ACCOUNTS) -> None:
        self._store = store
        self._cache: OrderedDict[str, tuple[JID, ...]] = OrderedDict()
        self._cached = cached
        self._generation = 0

    async def items(self, username: str) -> tuple[JID, ...]:
        """The account's blocked JIDs, oldest first."""
        items = self._cache.get(username)
        if items is not None:
            self._cache.move_to_end(username)
            return items
        generation = self._generation
        items = _decode(username, await self._store.get_all(username))
        if generation == self._generation:
            self._cache[username] = items
            if len(self._cache) > self._cached:
                self._cache.popitem(last=False)
        return items

    async def blocks(self, user: JID, other: JID) -> bool:
        """True when the account ``user`` (of this host) has blocked ``other``."""
        known = self.known_blocks(user, other)
        if known is not None:
            return known
        return any(matches(item, other) for item in await self.items(user.local))

    def known_blocks(self, user: JID, other: JID) -> bool | None:
        """:meth:`blocks` without waiting: None when ``user``'s list is not in the cache.

        Every stanza to an account asks this two or three times, and almost every list is cached
        and empty; answering here spares the hot path a coroutine per question.
        """
        items = self._cache.get(user.local)
        if items is None:
            return None
        self._cache.move_to_end(user.local)
        return bool(items) and not is_own(user, other) and any(matches(item, other) for item in items)

    async def add(self, username: str, jids: list[JID], *, now: float, limit: int) -> None:
        """Block ``jids``; ``policy-violation`` (nothing stored) when the list would exceed ``limit``."""
        current = set(await self.items(username))
        new = [jid for jid in jids if jid not in current]
        if len(current) + len(new) > limit:
            # RFC 6120 §8.3.3.12: a local service policy; the limit is named so the user knows.
            raise StanzaError(Condition.POLICY_VIOLATION, f"a blocklist holds at most {limit} JIDs")
        # The time, then the place in the command, keep the list in the order it was built.
        await self._write(username, {str(jid): {"added": now, "order": i} for i, jid in enumerate(new)})

    async def remove(self, username: str, jids: list[JID] | None) -> None:
        """Unblock ``jids``, or every JID when None."""
        if jids is None:
            jids = list(await self.items(username))
        await self._write(username, {str(jid): None for jid in jids})

    async def _write(self, username: str, changes: dict[str, JSONValue]) -> None:
        self._generation += 1
        self._cache.pop(username, None)
        try:
            for key, value in changes.items():
                await self._store.set(username, key, value)
        finally:
            self._generation += 1
            self._cache.pop(username, None)


def _decode(username: str, stored: dict[str, JSONValue]) -> tuple[JID, ...]:
    entries: list[tuple[float, int, str, JID]] = []
    for key, value in stored.items():
        try:
            jid = JID.parse(key)
        except InvalidJID:
            log.warning("ignoring an invalid JID in the blocklist of %s", username)
            continue
        entry = value if isinstance(value, dict) else {}
        added, order = entry.get("added"), entry.get("order")
        entries.append((
            float(added) if isinstance(added, (int, float)) else 0.0,
            order if isinstance(order, int) else 0,
            key, jid,
        ))
    return tuple(entry[-1] for entry in sorted(entries, key=lambda e: e[:3]))


# -- the module ------------------------------------------------------------------------------------
def setup(mod: ModuleContext) -> None:
    lists = Blocklists(cast(MapStore, mod.open_store("blocklist", StoreKind.MAP)))

    async def forget_account(event: hooks.AccountEvent) -> None:
        await lists.remove(event.jid.local, None)  # a deleted account's blocklist goes with it

    mod.export(lists)
    mod.hook(hooks.ACCOUNT_DELETED, forget_account)
    mod.add_feature(NS_BLOCKING)
    _register_commands(mod, lists, mod.options)
    _register_enforcement(mod, lists)


def _own_account(request: IqRequest) -> None:
    if request.sender.bare != request.to.bare:
        raise StanzaError(Condition.FORBIDDEN, "only the account itself manages its blocklist")


def _register_commands(mod: ModuleContext, lists: Blocklists, options: Options) -> None:
    """§3.2-§3.5: the blocklist, block and unblock IQs, and their pushes."""
    # §3.3: pushes go to the resources that have asked for the blocklist in this session.
    interested: weakref.WeakSet[Session] = weakref.WeakSet()

    async def push(user: JID, payload: Element) -> None:
        for session in mod.sessions_of(user.bare):
            if session in interested and session.jid is not None:
                iq = Element("iq", NS_CLIENT, {
                    "type": "set", "id": f"push-{secrets.token_hex(6)}",
                    "from": str(user.bare), "to": str(session.jid),
                })
                iq.append(payload.copy())
                await mod.route(iq)

    async def get_blocklist(request: IqRequest) -> Element:
        _own_account(request)
        for session in mod.sessions_of(request.sender.bare):
            if session.jid == request.sender:
                interested.add(session)
        return _item_list("blocklist", await lists.items(request.to.local))

    async def block(request: IqRequest) -> None:
        _own_account(request)
        jids = parse_items(request.payload)
        if not jids:
            raise StanzaError(Condition.BAD_REQUEST, "<block/> needs at least one <item/>")  # §3.3
        await lists.add(request.to.local, jids, now=mod.now(), limit=options.max_items)
        await push(request.to, _item_list("block", jids))

    async def unblock(request: IqRequest) -> None:
        _own_account(request)
        jids = parse_items(request.payload)
        # §3.5: an empty <unblock/> unblocks every JID.
        await lists.remove(request.to.local, jids or None)
        await push(request.to, _item_list("unblock", jids))

    mod.iq_handler(NS_BLOCKING, "blocklist", get_blocklist, types=(IqType.GET,), scope=IqScope.ACCOUNT)
    mod.iq_handler(NS_BLOCKING, "block", block, types=(IqType.SET,), scope=IqScope.ACCOUNT)
    mod.iq_handler(NS_BLOCKING, "unblock", unblock, types=(IqType.SET,), scope=IqScope.ACCOUNT)


def _register_enforcement(mod: ModuleContext, lists: Blocklists) -> None:
    """§3.3: what a block does to stanzas in each direction."""

    # Each check asks the cache first and waits for storage only on a miss (hot path).
    async def from_client(event: hooks.StanzaEvent) -> hooks.Handled | None:
        user = event.sender.bare
        blocked = lists.known_blocks(user, event.to)
        if blocked is None:
            blocked = await lists.blocks(user, event.to)
        if not blocked:
            return None
        stanza = event.stanza
        # RFC 6120 §8.3.1 / §8.2.3: errors and IQ results are never answered, only held back.
        if stanza.get("type") != "error" and not (stanza.name == "iq" and stanza.get("type") == "result"):
            reply = blocked_error(stanza)
            if event.origin is not None:
                event.origin.deliver(reply)  # straight back: routing it would meet the filter below
        return hooks.Handled.STOP

    async def to_account(event: hooks.StanzaEvent) -> hooks.Handled | None:
        stanza, sender, to = event.stanza, event.sender, event.to
        blocked = lists.known_blocks(to.bare, sender)
        if blocked is None:
            blocked = await lists.blocks(to.bare, sender)
        if blocked:
            if stanza.name != "presence":
                # §3.3: messages and IQ get/set get service-unavailable; bounce() never answers
                # an error or an IQ result.  Presence of any type gets nothing at all.
                await mod.bounce(stanza, sender, to, Condition.SERVICE_UNAVAILABLE)
            return hooks.Handled.STOP
        if sender.local and sender.domain == mod.host and stanza.get("type") != "error":
            blocked = lists.known_blocks(sender.bare, to)
            if blocked is None:
                blocked = await lists.blocks(sender.bare, to)
            if blocked:
                return hooks.Handled.STOP  # sent on the user's behalf to a JID it blocks (§3.3)
        return None

    mod.hook(hooks.FILTER_FROM_CLIENT, from_client, priority=_FILTER_PRIORITY)
    mod.hook(hooks.FILTER_TO_ACCOUNT, to_account, priority=_FILTER_PRIORITY)

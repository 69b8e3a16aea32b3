"""RFC 6121 §3: presence subscription stanzas, applied to rosters through the Appendix A table.

Outbound (a local user sends subscribe/subscribed/unsubscribe/unsubscribed): the user's roster
item moves as :data:`~xmppcore.modules.subscription.TABLE` says, the item is pushed when it
changed, and the stanza goes on to the contact stamped with the user's bare JID (§3.1.2) only
when the table says to route it.  Inbound (the stanza reaches a local account): the account's
item moves, and the stanza is delivered to the account's available resources only when the
table says so; a request nobody is online to see waits in the roster record and is delivered
on the next initial presence (§3.1.3).  Removing an item cancels both directions (§2.5.2).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from xmppcore.jid import JID
from xmppcore.server import hooks
from xmppcore.server.module_api import ModuleContext
from xmppcore.stanza.errors import Condition
from xmppcore.stanza.model import PresenceType, make_presence, readdressed
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT

from .roster_store import RosterItem
from .subscription import SubEvent, Transition, transition

if TYPE_CHECKING:
    from .roster import Roster

__all__ = ["Subscriptions", "register_subscriptions"]

_OUTBOUND = {
    PresenceType.SUBSCRIBE: SubEvent.OUT_SUBSCRIBE, PresenceType.SUBSCRIBED: SubEvent.OUT_SUBSCRIBED,
    PresenceType.UNSUBSCRIBE: SubEvent.OUT_UNSUBSCRIBE, PresenceType.UNSUBSCRIBED: SubEvent.OUT_UNSUBSCRIBED,
}
_INBOUND = {
    PresenceType.SUBSCRIBE: SubEvent.IN_SUBSCRIBE, PresenceType.SUBSCRIBED: SubEvent.IN_SUBSCRIBED,
    PresenceType.UNSUBSCRIBE: SubEvent.IN_UNSUBSCRIBE, PresenceType.UNSUBSCRIBED: SubEvent.IN_UNSUBSCRIBED,
}
# §3.1.2, §3.4: these create a roster item for a contact the user did not have yet.
_CREATES_ITEM = frozenset({SubEvent.OUT_SUBSCRIBE, SubEvent.OUT_SUBSCRIBED})


class Subscriptions:
    """Applies subscription stanzas of one host to its rosters."""

    def __init__(self, mod: ModuleContext, roster: Roster) -> None:
        self._mod = mod
        self._roster = roster

    async def _apply(self, user: JID, contact: JID, event: SubEvent, status: str | None = None) -> Transition | None:
        """Move ``user``'s item for ``contact``; None when a full roster refuses a new one."""
        store, limit = self._roster.store, self._roster.options.max_items
        async with store.locked(user.local):
            stored = await store.get(user.local, contact)
            item = stored or RosterItem(contact, listed=False)
            listed = item.listed or event in _CREATES_ITEM
            if listed and not item.listed and len(await store.listed(user.local)) >= limit:
                return None
            if stored is None and event is SubEvent.IN_SUBSCRIBE and len(await store.all(user.local)) >= 2 * limit:
                return None  # a flood of requests from strangers: remember no more of them
            outcome = transition(item.state, event, item.approved)
            new = replace(item.with_state(outcome.state, outcome.approved), listed=listed)
            if event is SubEvent.IN_SUBSCRIBE and outcome.state.pending_in and outcome.forward:
                new = replace(new, request=status)
            if not new.listed and not new.state.pending_in:
                if stored is not None:
                    await store.delete(user.local, contact)  # a stranger's request, withdrawn
            elif new != stored:
                await self._roster.save(user, new)
            return outcome

    # -- outbound: a local user's stanza ---------------------------------------------------------
    async def on_from_client(self, event: hooks.StanzaEvent) -> hooks.Handled | None:
        stanza = event.stanza
        kind = PresenceType.of(stanza) if stanza.name == "presence" else None
        if kind not in _OUTBOUND or not event.to.local or "to" not in stanza.attrs:
            return None
        assert kind is not None
        user, contact = event.sender.bare, event.to.bare
        outcome = await self._apply(user, contact, _OUTBOUND[kind])
        if outcome is None:
            await self._mod.bounce(stanza, event.sender, contact, Condition.POLICY_VIOLATION, "the roster is full")
        elif outcome.forward:
            # §3.1.2: stamped with the user's bare JID, addressed to the contact's bare JID.
            await self._mod.route(readdressed(stanza, user, contact))
            await self._after_outbound(user, contact, kind, outcome)
        return hooks.Handled.STOP

    async def _after_outbound(self, user: JID, contact: JID, kind: PresenceType, outcome: Transition) -> None:
        if kind is PresenceType.SUBSCRIBED and outcome.state.from_:
            # §3.1.5: the new subscriber gets the user's current presence from every resource.
            for session in self._mod.sessions_of(user):
                if session.available and session.presence is not None and session.jid is not None:
                    await self._mod.route(make_presence(session.presence.get("type"), session.jid, contact,
                                                         children=session.presence.children))
        elif kind is PresenceType.UNSUBSCRIBED:
            await self._say_goodbye(user, contact)  # §3.2.2

    async def _say_goodbye(self, user: JID, contact: JID) -> None:
        """Unavailable presence from each of ``user``'s available resources to ``contact``."""
        for session in self._mod.sessions_of(user):
            if session.available and session.jid is not None:
                await self._mod.route(make_presence("unavailable", session.jid, contact))

    # -- inbound: a stanza for a local account -----------------------------------------------------
    async def on_to_account(self, event: hooks.StanzaEvent) -> hooks.Handled | None:
        kind = PresenceType.of(event.stanza)
        if kind not in _INBOUND:
            return None
        assert kind is not None
        user, contact = event.to.bare, event.sender.bare
        sub_event = _INBOUND[kind]
        before = await self._roster.store.get(user.local, contact)
        outcome = await self._apply(user, contact, sub_event, event.stanza.findtext("status"))
        if outcome is None:
            return hooks.Handled.STOP
        if outcome.forward:
            delivered = readdressed(event.stanza, contact, user)
            for session in self._mod.sessions_of(user):
                if session.available:
                    session.deliver(delivered)
        if outcome.auto_subscribed:
            # A.3.1 and §3.4: answered on the user's behalf.
            await self._mod.route(make_presence("subscribed", user, contact))
        if sub_event is SubEvent.IN_UNSUBSCRIBE and before is not None and before.state.from_:
            await self._say_goodbye(user, contact)  # §3.3.3
        return hooks.Handled.STOP

    async def on_available(self, event: hooks.SessionEvent) -> None:
        """§3.1.3: requests that arrived while the user was away, delivered on initial presence."""
        session = event.session
        user = session.full_jid.bare
        for item in await self._roster.store.all(user.local):
            if item.state.pending_in:
                children: list[Element | str] = []
                if item.request:
                    children.append(Element("status", NS_CLIENT, {}, [item.request]))
                session.deliver(make_presence("subscribe", item.jid, user, children=children))

    async def on_removed(self, user: JID, item: RosterItem) -> None:
        """§2.5.2: removing an item cancels the subscription in each direction."""
        state = item.state
        if state.to or state.pending_out:
            await self._mod.route(make_presence("unsubscribe", user, item.jid))
        if state.from_ or state.pending_in:
            await self._say_goodbye(user, item.jid)
            await self._mod.route(make_presence("unsubscribed", user, item.jid))


def register_subscriptions(mod: ModuleContext, roster: Roster) -> None:
    subscriptions = Subscriptions(mod, roster)
    roster.on_remove = subscriptions.on_removed
    mod.hook(hooks.FILTER_FROM_CLIENT, subscriptions.on_from_client, stanzas=("presence",))
    # Above the presence module, which would deliver these like any other presence.
    mod.hook(hooks.PRESENCE_BARE, subscriptions.on_to_account, priority=10)
    mod.hook(hooks.PRESENCE_FULL, subscriptions.on_to_account, priority=10)
    mod.hook(hooks.SESSION_AVAILABLE, subscriptions.on_available)

"""RFC 6121 §4: presence — availability, broadcast to subscribers, probes and directed presence.

This module keeps each session's availability and priority (message delivery uses them,
§8.5.2.1.1) and sends a session's presence to whoever may see it:

- **Initial presence** (§4.2.2): to the account's available resources, the sender included, and
  to every contact with a subscription ``from`` or ``both`` (routed to the contact's bare JID, so
  the router reaches each of its available resources); then a probe goes to every contact with
  ``to`` or ``both`` (§4.3.1), whose answers reach the new session.
- **Updates** (§4.4.2) go to the same people; **unavailable presence** (§4.5.2) too, and also to
  everyone who got directed presence from the session (§4.6.3) and would not hear of it otherwise.
- **A session that ends** without unavailable presence (§4.5.2: "gracefully or ungracefully")
  gets one generated for it, sent to the same people.  At most ``MAX_DIRECTED`` recipients of
  directed presence are remembered per session; presence directed to more still goes out, but
  their unavailable presence is not guaranteed.
- **Probes** to an account (§4.3.2) are answered by the server, never delivered: a subscriber gets
  the last presence of each available resource, from its full JID; an account with no available
  resource answers with its last unavailable presence, from the full JID that sent it, stamped
  with a XEP-0203 ``<delay/>``; an account whose last unavailable presence is unknown (it was never
  available since the store began) says nothing, as §4.3.2 allows.  A prober without a
  subscription gets ``unsubscribed`` from the bare JID (§4.3.2 item 1), which cancels its stale
  ``to`` subscription and, coming from the server, leaves any pre-approval alone (§3.4).

Subscriptions are read from the roster module (``dependency("roster")``) when it is loaded; without
it only the account's own resources share presence.  Contacts on other domains are reached
through the router, which hands them to server-to-server federation.  Probes to contacts of the
same host go from the new session's full JID, so that their answers reach that session alone
instead of every resource of the account; probes that cross servers go from the bare JID, as
§4.3.1 says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from xmppcore.jid import JID
from xmppcore.server import hooks
from xmppcore.server.module_api import ModuleContext, Rfc, WritesBehind, Xep
from xmppcore.server.sessions import Session
from xmppcore.stanza.datetime_profile import utc_datetime
from xmppcore.stanza.errors import StreamError
from xmppcore.stanza.model import PresenceType, make_presence, readdressed
from xmppcore.storage.api import JSONValue, KeyValueStore, StorageError, StoreKind
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT, NS_STREAMS
from xmppcore.xml.parser import StreamParser
from xmppcore.xml.serializer import serialize

if TYPE_CHECKING:
    from .roster import Roster

__all__ = ["PROTOCOL", "NS_DELAY", "MAX_DIRECTED", "parse_priority", "addressed", "delay_stamp", "setup"]

PROTOCOL = (Rfc(6121, "4"), Xep(203, "2.0"))

NS_DELAY = "urn:xmpp:delay"
MAX_DIRECTED = 1000  # directed-presence recipients remembered per session (§4.6.3)
_MAX_STORED = 8192   # characters of a remembered unavailable presence; beyond, its children go
_STREAM_OPEN = f"<stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}'>".encode()
_SHARED = (PresenceType.AVAILABLE, PresenceType.UNAVAILABLE)


def parse_priority(presence: Element) -> int:
    """RFC 6121 §4.7.2.3: an integer from -128 to 127; absent or invalid means 0."""
    text = presence.findtext("priority")
    if text is None:
        return 0
    try:
        value = int(text.strip())
    except ValueError:
        return 0
    return value if -128 <= value <= 127 else 0


def addressed(presence: Element, sender: Session, recipient: Session) -> Element:
    """A copy of ``presence`` from ``sender``'s full JID to ``recipient``'s."""
    return readdressed(presence, sender.full_jid, recipient.full_jid)


def delay_stamp(when: float) -> str:
    """XEP-0082 DateTime in UTC, to the second: ``2002-09-10T23:41:07Z`` (XEP-0203 'stamp')."""
    return utc_datetime(when, milliseconds=False)


class _LastUnavailable:
    """Each account's last unavailable presence and when it was sent (answers to probes, §4.3.2)."""

    def __init__(self, store: KeyValueStore, writes: WritesBehind) -> None:
        self._store = store
        self._writes = writes

    def remember(self, presence: Element, sender: JID, when: float) -> None:
        stored = Element(presence.name, NS_CLIENT, {"from": str(sender), "type": "unavailable"}, presence.children)
        text = serialize(stored, NS_CLIENT)
        if len(text) > _MAX_STORED:
            text = serialize(Element(stored.name, NS_CLIENT, stored.attrs), NS_CLIENT)
        user, record = sender.local, {"xml": text, "when": when}
        # Written at every logout and read only by later probes: in the background, not urgent,
        # so that logouts commit together; a probe waits for it (recall).  See last.py.
        self._writes.start(user, lambda: self._store.set(user, record, urgent=False))

    async def forget(self, event: hooks.AccountEvent) -> None:
        """A deleted account leaves no presence behind (a new account of that name has none)."""
        await self._writes.settled(event.jid.local)
        await self._store.set(event.jid.local, None)

    async def recall(self, user: JID, to: JID) -> Element | None:
        """The remembered presence addressed to ``to`` with its ``<delay/>``; None if unknown."""
        await self._writes.settled(user.local)
        doc: JSONValue | None = await self._store.get(user.local)
        if not isinstance(doc, dict) or not isinstance(doc.get("xml"), str):
            return None
        when = doc.get("when")
        if not isinstance(when, (int, float)) or isinstance(when, bool):
            return None
        try:
            events = StreamParser().feed(_STREAM_OPEN + cast(str, doc["xml"]).encode("utf-8"))
        except (StreamError, UnicodeEncodeError):
            return None
        stanzas = [event for event in events if isinstance(event, Element)]
        if len(stanzas) != 1 or "from" not in stanzas[0].attrs:
            return None
        presence = stanzas[0]
        presence.attrs["to"] = str(to)
        presence.add("delay", NS_DELAY, {"stamp": delay_stamp(float(when))})
        return presence


class _Presence:
    """One host's presence logic; hook handlers are its ``on_*`` methods."""

    def __init__(self, mod: ModuleContext, last: _LastUnavailable) -> None:
        self._mod = mod
        self._last = last
        # §4.6.3: who got directed presence from each session, in order, at most MAX_DIRECTED.
        self._directed: dict[Session, dict[JID, None]] = {}

    # -- who may see a user's presence ------------------------------------------------------------
    def _roster(self) -> Roster | None:
        try:
            return cast("Roster", self._mod.dependency("roster"))
        except KeyError:
            return None  # roster not loaded: no subscriptions, only the account's own resources

    async def _contacts(self, user: JID, *, subscribers: bool) -> list[JID]:
        """Contacts with ``from``/``both`` (``subscribers``) or ``to``/``both`` (otherwise)."""
        roster = self._roster()
        if roster is None:
            return []
        try:
            items = await roster.items(user)
        except StorageError:
            # The account's own resources still hear it, and SESSION_AVAILABLE still fires.
            self._mod.log.exception("cannot read the roster of %s", user)
            return []
        return [
            item.jid for item in items
            if (item.state.from_ if subscribers else item.state.to)
            and item.jid.local and item.jid.bare != user
        ]

    def _own_available(self, session: Session) -> list[Session]:
        return [s for s in self._mod.sessions_of(session.full_jid.bare) if s.available and s.jid is not None]

    async def _broadcast(self, session: Session, stanza: Element) -> list[JID]:
        """``stanza`` from ``session`` to each subscriber's bare JID; returns those reached."""
        contacts = await self._contacts(session.full_jid.bare, subscribers=True)
        for contact in contacts:
            await self._mod.route(readdressed(stanza, session.full_jid, contact))
        return contacts

    # -- presence a client broadcasts (no 'to') ---------------------------------------------------
    async def on_broadcast(self, event: hooks.StanzaEvent) -> hooks.Handled | None:
        session = event.origin
        if session is None or session.jid is None:
            return hooks.Handled.STOP
        kind = PresenceType.of(event.stanza)
        if kind is PresenceType.AVAILABLE:
            await self._available(session, event.stanza)
        elif kind is PresenceType.UNAVAILABLE:
            await self._unavailable(session, event.stanza, echo=True)
        return hooks.Handled.STOP

    async def _available(self, session: Session, stanza: Element) -> None:
        first = not session.available
        session.available = True
        session.priority = parse_priority(stanza)
        session.presence = stanza
        for other in self._own_available(session):
            other.deliver(addressed(stanza, session, other))
            if first and other is not session and other.presence is not None:
                # §4.2.2: the new resource learns about the account's other resources.
                session.deliver(addressed(other.presence, other, session))
        await self._broadcast(session, stanza)  # §4.2.2 initial, §4.4.2 updates: subscribers only
        if first:
            for contact in await self._contacts(session.full_jid.bare, subscribers=False):
                # §4.3.1; on this host the answers come back to this session's full JID (see the
                # docstring), across servers to the bare JID.
                prober = session.full_jid if contact.domain == self._mod.host else session.full_jid.bare
                await self._mod.route(make_presence("probe", prober, contact))
            await self._mod.fire(hooks.SESSION_AVAILABLE, hooks.SessionEvent(session))

    async def _unavailable(self, session: Session, stanza: Element, *, echo: bool) -> None:
        """``echo``: the session sent it and hears it too (a closed session hears nothing)."""
        was_available = session.available
        session.available = False
        session.presence = None
        reached: list[JID] = []
        if was_available:
            for other in self._own_available(session):
                other.deliver(addressed(stanza, session, other))
            if echo:
                session.deliver(addressed(stanza, session, session))
            reached = await self._broadcast(session, stanza)
        # §4.6.3: directed presence is followed by unavailable even from a never-available session.
        await self._to_directed(session, stanza, reached)
        if was_available:
            self._remember_if_last(session, stanza)

    def _remember_if_last(self, session: Session, stanza: Element) -> None:
        if not any(s.available for s in self._mod.sessions_of(session.full_jid.bare) if s is not session):
            self._last.remember(stanza, session.full_jid, self._mod.now())

    # -- directed presence (§4.6) -----------------------------------------------------------------
    async def on_from_client(self, event: hooks.StanzaEvent) -> hooks.Handled | None:
        """Remember directed available presence; directed unavailable presence ends it (§4.6.3)."""
        session, stanza = event.origin, event.stanza
        if session is None or stanza.name != "presence" or "to" not in stanza.attrs:
            return None
        if event.to.bare == event.sender.bare:
            return None  # the account's own resources hear its unavailable presence anyway
        kind = PresenceType.of(stanza)
        if kind is PresenceType.AVAILABLE:
            recipients = self._directed.setdefault(session, {})
            if event.to in recipients or len(recipients) < MAX_DIRECTED:
                recipients[event.to] = None
            else:
                self._mod.log.debug("[%s] directed presence beyond %d recipients is not remembered",
                                    session.session_id, MAX_DIRECTED)
        elif kind is PresenceType.UNAVAILABLE:
            self._directed.get(session, {}).pop(event.to, None)
        return None

    async def _to_directed(self, session: Session, stanza: Element, reached: list[JID]) -> None:
        """Unavailable ``stanza`` to the session's directed-presence recipients not yet told."""
        subscribers = set(reached)
        for target in self._directed.pop(session, {}):
            if target.bare in subscribers and (not target.resource or self._is_available(target)):
                continue  # the broadcast to the subscriber's bare JID already reached it
            await self._mod.route(readdressed(stanza, session.full_jid, target))

    def _is_available(self, full: JID) -> bool:
        return any(s.jid == full and s.available for s in self._mod.sessions_of(full.bare))

    # -- presence to a local account --------------------------------------------------------------
    async def on_bare(self, event: hooks.StanzaEvent) -> hooks.Handled | None:
        kind = PresenceType.of(event.stanza)
        if kind is PresenceType.PROBE:
            await self.answer_probe(event.to.bare, event.sender, event.stanza)
        elif kind not in (None, PresenceType.ERROR):
            # §8.5.2.1.2: presence to a bare JID goes to every available resource.
            for session in self._mod.sessions_of(event.to.bare):
                if session.available:
                    session.deliver(event.stanza)
        return hooks.Handled.STOP

    async def on_full(self, event: hooks.StanzaEvent) -> hooks.Handled | None:
        if PresenceType.of(event.stanza) is not PresenceType.PROBE:
            return None  # the router delivers it to that resource
        # §4.3: probes are the server's to answer, whatever resource they name.
        await self.answer_probe(event.to.bare, event.sender, event.stanza)
        return hooks.Handled.STOP

    async def answer_probe(self, user: JID, prober: JID, probe: Element) -> None:
        """RFC 6121 §4.3.2: ``user``'s server answers ``prober`` on the user's behalf."""
        roster = self._roster()
        if roster is None:
            return  # no rosters, no subscriptions to answer from
        if prober.bare != user:
            if not await roster.shares_presence(user, prober):
                # §4.3.2 item 1: from the bare JID, "since specifying a full JID would constitute
                # a presence leak".
                await self._mod.route(make_presence("unsubscribed", user, prober.bare, stanza_id=probe.get("id")))
                return
        available = [s for s in self._mod.sessions_of(user) if s.available and s.presence is not None]
        for session in available:
            assert session.presence is not None
            # §4.3.2 item 4: the last presence of each available resource, from its full JID.
            await self._mod.route(readdressed(session.presence, session.full_jid, prober))
        if not available:
            last = await self._last.recall(user, prober)  # §4.3.2 item 3
            if last is not None:
                await self._mod.route(last)

    # -- the end of a session -----------------------------------------------------------------------
    async def on_closed(self, event: hooks.SessionEvent) -> None:
        """§4.5.2: a session that ends is unavailable to everyone who saw it available."""
        session = event.session
        if session.jid is None:
            self._directed.pop(session, None)
            return
        gone = Element("presence", NS_CLIENT, {"type": "unavailable"})
        if session.available:
            await self._unavailable(session, gone, echo=False)
        else:
            await self._to_directed(session, gone, [])


def setup(mod: ModuleContext) -> None:
    last = _LastUnavailable(cast(KeyValueStore, mod.open_store("last_presence", StoreKind.KEYVAL)),
                            WritesBehind(mod.log))
    presence = _Presence(mod, last)
    mod.hook(hooks.PRESENCE_BROADCAST, presence.on_broadcast)
    # After the filters that may refuse the stanza (blocking runs at 100), before it is routed.
    mod.hook(hooks.FILTER_FROM_CLIENT, presence.on_from_client, priority=-10, stanzas=("presence",))
    mod.hook(hooks.PRESENCE_BARE, presence.on_bare)
    mod.hook(hooks.PRESENCE_FULL, presence.on_full)
    mod.hook(hooks.SESSION_CLOSED, presence.on_closed)
    mod.hook(hooks.ACCOUNT_DELETED, last.forget)

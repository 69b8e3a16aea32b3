"""RFC 6121 §4: presence a client broadcasts, and directed presence to local accounts.

This module keeps each session's availability and priority (which message delivery uses,
§8.5.2.1.1) and shares a session's presence with the account's other resources.  Roster
based broadcast to contacts and the subscription state machine build on it (§3, §4.2.2).
"""

from __future__ import annotations

from xmppcore.server import hooks
from xmppcore.server.module_api import ModuleContext, Rfc
from xmppcore.server.sessions import Session
from xmppcore.stanza.model import PresenceType
from xmppcore.xml.element import Element

PROTOCOL = (Rfc(6121, "4", status="partial"),)


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
    copy = Element(presence.name, presence.ns, dict(presence.attrs), presence.children)
    copy.attrs["from"] = str(sender.full_jid)
    copy.attrs["to"] = str(recipient.full_jid)
    return copy


def setup(mod: ModuleContext) -> None:
    def own_available(session: Session) -> list[Session]:
        return [s for s in mod.sessions_of(session.full_jid.bare) if s.available and s.jid is not None]

    async def on_broadcast(event: hooks.StanzaEvent) -> hooks.Handled | None:
        session = event.origin
        if session is None or session.jid is None:
            return hooks.Handled.STOP
        kind = PresenceType.of(event.stanza)
        if kind is PresenceType.AVAILABLE:
            first = not session.available
            session.available = True
            session.priority = parse_priority(event.stanza)
            session.presence = event.stanza
            for other in own_available(session):
                other.deliver(addressed(event.stanza, session, other))
                if first and other is not session and other.presence is not None:
                    # §4.2.2: the new resource learns about the account's other resources.
                    session.deliver(addressed(other.presence, other, session))
            if first:
                await mod.fire(hooks.SESSION_AVAILABLE, hooks.SessionEvent(session))
        elif kind is PresenceType.UNAVAILABLE:
            was_available = session.available
            session.available = False
            session.presence = None
            if was_available:
                for other in own_available(session):
                    other.deliver(addressed(event.stanza, session, other))
                session.deliver(addressed(event.stanza, session, session))
        return hooks.Handled.STOP

    async def on_bare(event: hooks.StanzaEvent) -> hooks.Handled | None:
        kind = PresenceType.of(event.stanza)
        if kind in (None, PresenceType.PROBE, PresenceType.ERROR):
            return hooks.Handled.STOP
        # §8.5.2.1.2: presence to a bare JID goes to every available resource.
        for session in mod.sessions_of(event.to.bare):
            if session.available:
                session.deliver(event.stanza)
        return hooks.Handled.STOP

    async def on_closed(event: hooks.SessionEvent) -> None:
        session = event.session
        if not session.available or session.jid is None:
            return
        session.available = False
        gone = Element("presence", event.session.presence.ns if event.session.presence else "jabber:client",
                       {"type": "unavailable"})
        for other in own_available(session):
            other.deliver(addressed(gone, session, other))

    mod.hook(hooks.PRESENCE_BROADCAST, on_broadcast)
    mod.hook(hooks.PRESENCE_BARE, on_bare)
    mod.hook(hooks.SESSION_CLOSED, on_closed)

"""RFC 6121 §8.5.2: delivering messages addressed to an account's bare JID.

``normal`` and ``chat`` go to the available resources with the highest non-negative
priority — all of them when several share it (§8.5.2.1.1); ``headline`` goes to every
available resource with a non-negative priority.  With no such resource the event is left
to later handlers (offline storage); the router's default then answers
``service-unavailable`` (§8.5.2.2).  ``groupchat`` to a bare JID is refused (§8.5.2.1.1).
"""

from __future__ import annotations

from xmppcore.server import hooks
from xmppcore.server.module_api import ModuleContext, Rfc
from xmppcore.server.sessions import Session
from xmppcore.stanza.errors import Condition
from xmppcore.stanza.model import MessageType

PROTOCOL = (Rfc(6121, "8.5.2"),)


def deliverable(sessions: list[Session], kind: MessageType) -> list[Session]:
    """The sessions a bare-JID message of ``kind`` goes to."""
    eligible = [s for s in sessions if s.available and s.priority >= 0]
    if not eligible or kind is MessageType.HEADLINE:
        return eligible
    top = max(s.priority for s in eligible)
    return [s for s in eligible if s.priority == top]


def setup(mod: ModuleContext) -> None:
    async def on_bare(event: hooks.StanzaEvent) -> hooks.Handled | None:
        kind = MessageType.of(event.stanza)
        if kind is MessageType.ERROR:
            return hooks.Handled.STOP  # errors to an account with no matching resource vanish
        if kind is MessageType.GROUPCHAT:
            await mod.bounce(event.stanza, event.sender, event.to, Condition.SERVICE_UNAVAILABLE)
            return hooks.Handled.STOP
        targets = deliverable(mod.sessions_of(event.to.bare), kind)
        if not targets:
            return None  # offline storage or the router's default decides
        for session in targets:
            session.deliver(event.stanza)
        return hooks.Handled.STOP

    mod.hook(hooks.MESSAGE_BARE, on_bare)

"""RFC 6120 §8.1 and §10, RFC 6121 §8: where each stanza goes.

From a client: validate and stamp ``from`` (§8.1.2.1), parse ``to`` (``jid-malformed``), run
the filter hook, then route.  Routing classifies the destination — a domain we host, one of
its accounts' bare JIDs, or a full JID — fires the matching hook and falls back to the
defaults of RFC 6121 §8.5 when no module stops the event.  Errors are never answered with
errors (§8.3.1), and IQ results and errors are never answered at all.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from ..jid import JID, InvalidJID
from ..stanza.errors import Condition, StanzaError, StreamCondition
from ..stanza.model import MessageType, PresenceType, error_reply
from ..xml.element import Element
from . import hooks
from .host import Host
from .iq import IqScope
from .sessions import Session, SessionRegistry

if TYPE_CHECKING:
    from .auth import AccountManager
    from .components import Components

__all__ = ["Router"]

log = logging.getLogger(__name__)

_SUBSCRIPTION_TYPES = frozenset({
    PresenceType.SUBSCRIBE, PresenceType.SUBSCRIBED, PresenceType.UNSUBSCRIBE, PresenceType.UNSUBSCRIBED,
})


class Router:
    """Routes stanzas between local sessions, hosts and remote domains."""

    def __init__(self, hosts: Mapping[str, Host], sessions: SessionRegistry, accounts: AccountManager) -> None:
        self._hosts = hosts
        self._sessions = sessions
        self._accounts = accounts
        # Where stanzas for other domains go (server-to-server federation); None: nowhere.
        self.remote: Callable[[Element, JID, JID], Awaitable[None]] | None = None
        # External components (XEP-0114): the domains they serve and how to reach them.
        self.components: Components | None = None

    # -- from a local client ---------------------------------------------------------------
    async def route_from_client(self, session: Session, stanza: Element) -> None:
        """Handle a stanza a bound client sent."""
        full = session.full_jid
        claimed = stanza.get("from")
        if claimed is not None and claimed != str(full) and not self._is_own_address(claimed, full):
            # RFC 6120 §8.1.2.1 and §4.9.3.9: a client may only name its own JIDs.
            session.close(StreamCondition.INVALID_FROM, "'from' does not match the bound JID")
            return
        stamped = Element(stanza.name, stanza.ns, {**stanza.attrs, "from": str(full)}, stanza.children)
        target = stanza.get("to")
        if target is None:
            to = full.bare  # RFC 6120 §8.1.1.1: no 'to' means the account itself.
        else:
            try:
                to = JID.parse(target)
            except InvalidJID:
                self._reply_error(session, stamped, Condition.JID_MALFORMED)
                return
        host = self._hosts.get(full.domain)
        if host is not None:
            event = hooks.StanzaEvent(stamped, full, to, session)
            try:
                if await host.bus.fire(hooks.FILTER_FROM_CLIENT, event):
                    return
            except hooks.HookFailed:
                # A check could not run (e.g. storage is down): refuse rather than guess.
                self._reply_error(session, stamped, Condition.INTERNAL_SERVER_ERROR)
                return
            if stanza.name == "presence" and target is None:
                await host.bus.fire(hooks.PRESENCE_BROADCAST, event)
                return
        await self.route(stamped, full, to, origin=session)

    @staticmethod
    def _is_own_address(claimed: str, full: JID) -> bool:
        try:
            jid = JID.parse(claimed)
        except InvalidJID:
            return False
        return jid == full or jid == full.bare

    def _reply_error(self, session: Session, stanza: Element, condition: Condition) -> None:
        if stanza.get("type") == "error" or (stanza.name == "iq" and stanza.get("type") == "result"):
            return  # RFC 6120 §8.3.1, §8.2.3: responses are never answered
        reply = error_reply(stanza, StanzaError(condition))
        reply.attrs.pop("from", None)  # the server answers; its origin is implicit
        reply.attrs["to"] = str(session.full_jid)
        session.deliver(reply)

    # -- routing -----------------------------------------------------------------------------
    async def route_stanza(self, stanza: Element) -> None:
        """Route a stanza the server itself built (``from`` and ``to`` set and valid)."""
        await self.route(stanza, JID.parse(stanza.attrs["from"]), JID.parse(stanza.attrs["to"]))

    async def route(self, stanza: Element, sender: JID, to: JID, origin: Session | None = None) -> None:
        """Deliver ``stanza`` from ``sender`` to ``to``."""
        host = self._hosts.get(to.domain)
        if host is None:
            components = self.components
            if components is not None and components.serves(to.domain):
                await components.send(stanza, sender, to)  # XEP-0114
            elif self.remote is not None and self.is_local(sender.domain):
                # RFC 6120 §10.4: a domain we do not serve is reached over server-to-server streams.
                await self.remote(stanza, sender, to)
            else:
                await self.bounce(stanza, sender, to, Condition.REMOTE_SERVER_NOT_FOUND)
            return
        event = hooks.StanzaEvent(stanza, sender, to, origin)
        if not to.local:
            await self._to_host(host, event)
            return
        try:
            if await host.bus.fire(hooks.FILTER_TO_ACCOUNT, event):
                return
        except hooks.HookFailed:
            if stanza.get("type") != "error":
                # Fail closed: nobody gets it, and the sender hears it did not go through.
                await self.bounce(stanza, sender, to, Condition.INTERNAL_SERVER_ERROR)
                return
            # An error (such as that very bounce) carries nothing new: let it reach its sender.
        if to.resource:
            await self._to_full(host, event)
        else:
            await self._to_bare(host, event)

    def is_local(self, domain: str) -> bool:
        """A domain this server answers for: a hosted one or a configured component's."""
        return domain in self._hosts or (self.components is not None and self.components.serves(domain))

    async def _to_host(self, host: Host, event: hooks.StanzaEvent) -> None:
        name = event.stanza.name
        if name == "iq":
            await self._dispatch_iq(host, IqScope.HOST, event)
        elif name == "message":
            if not await host.bus.fire(hooks.MESSAGE_HOST, event):
                if MessageType.of(event.stanza) not in (MessageType.ERROR, MessageType.HEADLINE):
                    await self.bounce(event.stanza, event.sender, event.to, Condition.SERVICE_UNAVAILABLE)
        else:
            await host.bus.fire(hooks.PRESENCE_HOST, event)

    async def _to_full(self, host: Host, event: hooks.StanzaEvent) -> None:
        stanza, to = event.stanza, event.to
        session = self._sessions.get(to)
        if session is not None:
            hook = hooks.MESSAGE_FULL if stanza.name == "message" else (
                hooks.PRESENCE_FULL if stanza.name == "presence" else None)
            if hook is None:
                session.deliver(stanza)
            else:
                final = await host.bus.fire_stanza(hook, event)
                if final is not None:
                    session.deliver(final.stanza)  # as the handlers left it (hooks.Replace)
            return
        # RFC 6121 §8.5.3.2: no session with that resource.
        if stanza.name == "message":
            kind = MessageType.of(stanza)
            if kind is MessageType.CHAT:
                await self._to_bare(host, event)  # §8.5.3.2.1: the account's other resources
            elif kind in (MessageType.NORMAL, MessageType.GROUPCHAT):
                await self.bounce(stanza, event.sender, to, Condition.SERVICE_UNAVAILABLE)
            # headline and error: silently ignored (§8.5.3.2.1)
        elif stanza.name == "presence":
            if PresenceType.of(stanza) in _SUBSCRIPTION_TYPES:
                await self._to_bare(host, event)  # §8.5.3.2.3
        elif stanza.get("type") in ("get", "set"):
            await self.bounce(stanza, event.sender, to, Condition.SERVICE_UNAVAILABLE)  # §8.5.3.2.2

    async def _to_bare(self, host: Host, event: hooks.StanzaEvent) -> None:
        stanza, to = event.stanza, event.to
        bare = to.bare
        if not self._sessions.is_online(bare) and not await self._accounts.exists(host.domain, bare.local):
            # RFC 6121 §8.5.1: no such account.
            if stanza.name != "presence":
                await self.bounce(stanza, event.sender, to, Condition.SERVICE_UNAVAILABLE)
            return
        if stanza.name == "iq":
            if to.resource:  # §8.5.3.2.2 already handled; a full JID never reaches here for iq
                return
            await self._dispatch_iq(host, IqScope.ACCOUNT, event)
        elif stanza.name == "message":
            if await host.bus.fire_stanza(hooks.MESSAGE_BARE, event) is not None:
                kind = MessageType.of(stanza)
                if kind not in (MessageType.ERROR, MessageType.HEADLINE):
                    # §8.5.2.2: no module took it (no available resource, no offline storage).
                    await self.bounce(stanza, event.sender, to, Condition.SERVICE_UNAVAILABLE)
        else:
            await host.bus.fire(hooks.PRESENCE_BARE, event)

    async def _dispatch_iq(self, host: Host, scope: IqScope, event: hooks.StanzaEvent) -> None:
        reply = await host.iq.dispatch(scope, event.stanza, event.sender, event.to)
        if reply is not None:
            await self.route(reply, event.to, event.sender)

    async def bounce(self, stanza: Element, sender: JID, to: JID, condition: Condition, text: str | None = None) -> None:
        """Answer ``stanza`` with an error from ``to`` (never an error to an error, §8.3.1)."""
        if stanza.get("type") == "error" or (stanza.name == "iq" and stanza.get("type") == "result"):
            return
        reply = error_reply(stanza, StanzaError(condition, text))
        reply.attrs["from"] = str(to)
        reply.attrs["to"] = str(sender)
        await self.route(reply, to, sender)

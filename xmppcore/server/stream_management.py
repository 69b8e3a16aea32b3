"""XEP-0198 §5 at run time: sessions that outlive their connection, resumption, and the end.

A :class:`ClientSession` is what the session registry, the router and the modules know as a
client's session.  It is carried by one connection at a time (``server/c2s.py``).  When a
connection with resumption enabled is lost without a closing tag (§7: an "unfinished" stream),
the session is *detached*, not closed: it stays bound and available, and stanzas for it are kept
in its XEP-0198 queue for up to the resumption time.  A client that authenticates as the same
account on a new connection and sends ``<resume/>`` gets the very same session object back, so
everything modules keep per session (presence, directed presence, carbons) carries on untouched.

When a session ends — a clean ``</stream:stream>``, a stream error, a resumption that never
came, a conflict, shutdown — the stanzas the client never acknowledged are handled "in the same
way that [the server] would treat a stanza sent to an unavailable resource" (§4): once the
session is unbound, each message and IQ request is routed again to the address it was sent to,
so a message reaches another resource of the account or offline storage, and what neither takes
goes back to its sender with an error (RFC 6121 §8.5.3.2).  Presence is not rerouted: the state
it carried is probed again at the next login and subscription requests are kept by the roster.
Message Carbons copies are not rerouted either: the original went to its own recipient.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING

from ..jid import JID, InvalidJID
from ..protocol import events as ev
from ..protocol.stream_management import SmPolicy, SmSession
from ..stanza.errors import StreamCondition
from ..xml.element import Element
from . import durability, hooks
from .durability import Commitments
from .sessions import Session

if TYPE_CHECKING:
    from .app import Server
    from .c2s import ClientConnection

__all__ = ["ClientSession", "StreamManagementRuntime"]

log = logging.getLogger(__name__)

_NS_CARBONS = "urn:xmpp:carbons:2"
_REMEMBERED_ENDS = 10_000  # ended sessions whose final 'h' a late <resume/> is told (§5)


class ClientSession(Session):
    """A bound client session, carried by a connection or, for a while, by none (detached)."""

    __slots__ = (
        "_runtime", "connection", "_last_connection", "sm", "_expiry", "_resuming", "ended", "_flushed", "_held",
    )

    def __init__(self, runtime: StreamManagementRuntime, connection: ClientConnection) -> None:
        super().__init__(connection.session_id)
        self._runtime = runtime
        self.connection: ClientConnection | None = connection
        self._last_connection = connection  # its inbound stanzas are routed before the session ends
        self.sm: SmSession | None = None    # XEP-0198 state, once enabled
        self._expiry: asyncio.TimerHandle | None = None
        self._resuming = False
        self.ended = False
        self._flushed = False
        # Stanzas waiting, in order, for the commitments of the routing that delivered them.
        self._held: collections.deque[tuple[Element, Commitments | None]] | None = None

    @property
    def detached(self) -> bool:
        return self.connection is None and not self.ended

    # -- Session -----------------------------------------------------------------------------------
    def deliver(self, stanza: Element) -> None:
        """Send ``stanza`` to the client — once what the routing delivering it wrote is committed
        (server/durability.py: an archive id it carries must not be seen before), and after
        every stanza held before it."""
        waiting = durability.unfinished()
        held = self._held
        if held is None:
            if waiting is None:
                self._deliver_now(stanza)
                return
            held = self._held = collections.deque()
        held.append((stanza, waiting))
        if len(held) == 1:
            self._release_held()

    def _release_held(self) -> None:
        """Deliver the held stanzas whose commitments are done, up to the first that waits."""
        held = self._held
        while held:
            stanza, waiting = held[0]
            if waiting is not None and not waiting.done:
                waiting.when_done(self._release_held)
                return
            held.popleft()
            self._deliver_now(stanza)
        self._held = None

    async def _held_delivered(self) -> None:
        """Return once no stanza is held (each commitment it waits for is bounded: a commit)."""
        while self._held:
            _, waiting = self._held[0]
            if waiting is not None:
                await waiting.wait()
            self._release_held()

    def _deliver_now(self, stanza: Element) -> None:
        connection = self.connection
        if connection is not None:
            connection.send(stanza)
        elif self.sm is not None and not self._flushed:
            self.sm.track(stanza, transmitted=False)  # held for the client's return (§5)
            if self.sm.overflowing and not self.ended:
                log.info("[%s] too many stanzas held for the detached session", self.session_id)
                self.end()

    def close(self, condition: StreamCondition | None = None, text: str | None = None) -> None:
        connection = self.connection
        if connection is not None:
            connection.close(condition, text)
        else:
            self.end()  # detached: replaced by a new bind of its resource, or the server stops

    # -- the connection's life ------------------------------------------------------------------
    def connection_ended(self, connection: ClientConnection, *, resumable: bool) -> None:
        """``connection`` is over; detach when it was lost with resumption enabled, else end."""
        if connection is not self.connection:
            return  # a connection the session already left for a resumed one
        self.connection = None
        if resumable and self.sm is not None and self.sm.resume_timeout > 0 and not self.ended:
            loop = asyncio.get_running_loop()
            self._expiry = loop.call_later(self.sm.resume_timeout, self._expired)
            log.info("[%s] connection lost; resumable for %d s", self.session_id, self.sm.resume_timeout)
        else:
            self.end()

    def _expired(self) -> None:
        self._expiry = None
        log.info("[%s] not resumed in time", self.session_id)
        self.end()

    def claim(self) -> ClientConnection:
        """Start a resumption: the session leaves the connection still carrying it, if any, which is
        dropped (§5: "the old stream SHOULD be terminated"); returns the connection to wait for."""
        self._resuming = True
        old = self.connection
        self.connection = None
        if old is not None:
            old.abandon()
        return old or self._last_connection

    def release(self) -> None:
        """The resumption did not happen (the new connection went away meanwhile): the session
        waits again, for the full resumption time when it was taken from a live connection."""
        self._resuming = False
        if self.connection is None and self._expiry is None and not self.ended and self.sm is not None:
            self._expiry = asyncio.get_running_loop().call_later(self.sm.resume_timeout, self._expired)

    def attach(self, connection: ClientConnection) -> None:
        """The session continues on ``connection`` (after ``claim``)."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._resuming = False
        self.connection = self._last_connection = connection

    @property
    def resuming(self) -> bool:
        return self._resuming

    # -- the end -----------------------------------------------------------------------------------
    def end(self) -> None:
        """Unbind now; then route the last stanzas, reroute the unacknowledged ones, tell the modules."""
        if self.ended:
            return
        self.ended = True
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._runtime.forget(self)
        server = self._runtime.server
        server.sessions.unbind(self)  # False for a session replaced by a resource conflict
        if self.jid is not None:
            server.spawn(self._wind_up(self.jid))

    async def _wind_up(self, jid: JID) -> None:
        server = self._runtime.server
        # RFC 6121 §4.5.2: what the session sent before its stream ended (an unavailable presence
        # with its status) is routed before the modules speak for it.
        await self._last_connection.inbound_done()
        await self._held_delivered()  # into the XEP-0198 queue, below, or nowhere without it
        if self.sm is not None:
            self._flushed = True
            await self._runtime.reroute(self.sm.take_unacknowledged(), self.session_id)
        await server.hosts[jid.domain].bus.fire(hooks.SESSION_CLOSED, hooks.SessionEvent(self))


class StreamManagementRuntime:
    """The server's XEP-0198 sessions that can be resumed, by SM-ID."""

    def __init__(self, server: Server) -> None:
        self.server = server
        cfg = server.config.c2s
        self.policy: SmPolicy | None = SmPolicy(
            resume_timeout=cfg.sm_resume_timeout, max_resume_timeout=cfg.sm_max_resume_timeout,
            max_unacked=cfg.sm_max_unacked,
        ) if cfg.stream_management else None
        self._resumable: dict[str, ClientSession] = {}
        # §5: a <resume/> naming a session that timed out may be told the 'h' it ended with.
        self._ended: collections.OrderedDict[str, tuple[JID, int]] = collections.OrderedDict()

    def enabled(self, session: ClientSession, event: ev.StreamManagementEnabled, state: SmSession) -> None:
        session.sm = state
        if event.sm_id is not None:
            self._resumable[event.sm_id] = session

    def find(self, previd: str, user: JID) -> ClientSession | int | None:
        """The session ``previd`` names if ``user`` (a bare JID) owns it and it can be resumed now;
        else the 'h' it ended with, when remembered; else None."""
        session = self._resumable.get(previd)
        if session is not None and session.jid is not None and session.jid.bare == user:
            # Another connection already resuming it wins; this one is told it is not there.
            return None if session.resuming else session
        ended = self._ended.get(previd)
        return ended[1] if ended is not None and ended[0] == user else None

    def forget(self, session: ClientSession) -> None:
        """``session`` ended: it can no longer be resumed."""
        sm = session.sm
        if sm is None or sm.id is None or self._resumable.get(sm.id) is not session:
            return
        del self._resumable[sm.id]
        if session.jid is not None:
            self._ended[sm.id] = (session.jid.bare, sm.inbound_h)
            while len(self._ended) > _REMEMBERED_ENDS:
                self._ended.popitem(last=False)

    async def reroute(self, stanzas: list[Element], session_id: str) -> None:
        """Unacknowledged stanzas of an ended session, as to an unavailable resource (§4)."""
        router = self.server.router
        for stanza in stanzas:
            if stanza.name == "presence" or any(child.ns == _NS_CARBONS for child in stanza.elements()):
                continue
            try:
                sender, to = JID.parse(stanza.attrs["from"]), JID.parse(stanza.attrs["to"])
            except (KeyError, InvalidJID):
                continue  # nothing to route it by (an error the server addressed to the session)
            try:
                await router.route(stanza, sender, to)
            except Exception:
                log.exception("[%s] rerouting an unacknowledged <%s/> failed", session_id, stanza.name)

    def stop(self) -> None:
        """Server shutdown: detached sessions end now (their messages go to offline storage)."""
        for session in list(self._resumable.values()):
            if session.detached:
                session.end()

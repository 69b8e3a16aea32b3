"""The runtime side of a client connection: answers the c2s core's events (RFC 6120 §5–§7).

STARTTLS upgrades the transport; credentials come from the account store after the
throttle's delay; in-band registration requests (XEP-0077) go to the host's
``REGISTRATION_REQUESTED`` handler, when it has one; binding goes through the session registry;
stanzas are routed one at a time, in order, with backpressure on the socket when the router
falls behind, and each one is reported to the core once routed and once what its routing wrote is
committed (XEP-0198 acknowledges no earlier; ``durability.py``: the next stanza is routed while
those writes commit).  The session a connection binds is a :class:`~.stream_management.ClientSession`, which
a later connection may resume (XEP-0198 §5).

XEP-0352 client state changes travel the same ordered path as stanzas and reach the modules as
``CLIENT_STATE``; stanzas for the client go through the session's delivery filter, which is a
property of the stream: it is removed (what it held goes where the session's other undelivered
stanzas go) when the stream ends or its session is resumed elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from .. import unpredictable
from ..jid import JID
from ..protocol import events as ev
from ..protocol.c2s import C2SServer, C2SState
from ..stanza.errors import Condition, StanzaError, StreamCondition
from ..stanza.model import error_reply
from ..storage.api import StorageError
from ..transport.tcp import StreamTransport
from ..transport.tls import tls_exporter
from ..xml.element import Element
from . import durability, hooks
from .stream_management import ClientSession

if TYPE_CHECKING:
    from .app import Server
    from .router import Router

__all__ = ["ClientConnection"]

log = logging.getLogger(__name__)

_QUEUE_HIGH = 256   # inbound stanzas waiting for the router before we stop reading
_QUEUE_LOW = 32
_MAX_UNCOMMITTED = 64  # routed stanzas whose writes are still committing, before routing waits


class _SessionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Puts the session id on every line (STYLE rule 10)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['session'] if self.extra else '-'}] {msg}", kwargs


def _new_stream_id() -> str:
    return unpredictable.token_urlsafe(12)


class ClientConnection:
    """One client's connection; once bound or resumed, it carries a :class:`ClientSession`.

    Thousands sit idle at once, so what only activity needs is made when needed and dropped
    after: the inbound queue and its worker exist while stanzas wait, tasks while they run.
    """

    __slots__ = (
        "session_id", "session", "_server", "_transport", "core", "_inbox", "_worker", "_drained",
        "_drain_waiters", "_tasks", "_authenticated", "_reading_paused", "_ended", "peer",
        "counted_unauthenticated",
    )

    def __init__(self, server: Server, transport: StreamTransport, *, direct_tls: bool) -> None:
        self.session_id = unpredictable.token_hex(4)
        self.session: ClientSession | None = None
        self._server = server
        self._transport = transport
        cfg = server.config.c2s
        bindings = self._channel_bindings() if direct_tls else {}
        self.core = C2SServer(
            domains=server.is_hosted,
            id_factory=_new_stream_id,
            now=asyncio.get_running_loop().time(),
            tls_available=server.tls_context is not None,
            tls_required=cfg.tls_required,
            tls_active=direct_tls,
            channel_bindings=bindings,
            mechanisms=cfg.sasl_mechanisms,
            max_stanza_size=cfg.max_stanza_size,
            auth_timeout=cfg.auth_timeout,
            max_auth_failures=cfg.max_auth_failures,
            keepalive_interval=cfg.keepalive_interval,
            extra_features=self._host_stream_features,
            scram_secret=server.secret,
            scram_iterations=server.config.auth.scram_iterations,
            in_band_registration=self._registration_offered,
            stream_management=server.stream_management.policy,
        )
        self._inbox: deque[Element | ev.ClientStateChanged] | None = None  # waiting to be routed
        self._worker: asyncio.Task[None] | None = None  # routes the inbox while it is not empty
        self._drained = False  # the stream ended and its stanzas were routed
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._tasks: set[asyncio.Task[None]] | None = None
        self._authenticated = False
        self._reading_paused = False
        self._ended = False
        self.peer = transport.peer_address
        self.counted_unauthenticated = False  # set by Server.admit_unauthenticated
        if not server.admit_unauthenticated(self):
            self.core.close(StreamCondition.POLICY_VIOLATION, "too many unauthenticated connections from your address")
        self._log.debug("connection from %s%s", self.peer, " (direct TLS)" if direct_tls else "")

    @property
    def _log(self) -> _SessionLog:
        """A logger putting the session id on each line; made per use (rare), not kept."""
        return _SessionLog(log, {"session": self.session_id})

    def _host_stream_features(self) -> list[Element]:
        host = self._server.hosts.get(self.core.domain)
        # Not copied: the core only puts them in the <features/> it serializes.
        return list(host.stream_features) if host is not None else []

    def _registration_offered(self, domain: str) -> bool:
        host = self._server.hosts.get(domain)
        return host is not None and host.bus.has_handlers(hooks.REGISTRATION_REQUESTED)

    # -- events from the core ------------------------------------------------------------------
    def handle_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.StanzaReceived):
            self._enqueue(event.stanza)
        elif isinstance(event, ev.TlsRequested):
            self._transport.pause_reading()
            self._spawn(self._start_tls())
        elif isinstance(event, ev.CredentialsNeeded):
            self._spawn(self._credentials(event))
        elif isinstance(event, ev.AuthSucceeded):
            self._on_authenticated(event)
        elif isinstance(event, ev.AuthFailed):
            self._log.info("authentication failed (%s, %s) from %s",
                           event.condition.value, event.mechanism or "-", self.peer)
            self._server.throttle.record_failure(
                self._server.now(), f"ip:{self.peer}", f"user:{event.username}@{self.core.domain}")
        elif isinstance(event, ev.BindRequested):
            self._bind(event.resource)
        elif isinstance(event, ev.RegistrationRequested):
            self._spawn(self._register(event.stanza))
        elif isinstance(event, ev.StreamManagementEnabled):
            assert self.session is not None and self.core.sm.session is not None
            self._server.stream_management.enabled(self.session, event, self.core.sm.session)
        elif isinstance(event, ev.ResumeRequested):
            self._spawn(self._resume(event))
        elif isinstance(event, ev.ClientStateChanged):
            self._enqueue(event)  # XEP-0352 §5.1: in order with the stanzas around it
        elif isinstance(event, ev.StreamClosed):
            self._on_closed(event)

    def transport_closed(self) -> None:
        self._on_closed(None)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if self._tasks is not None:
            self._tasks.discard(task)
            if not self._tasks:
                self._tasks = None

    async def _start_tls(self) -> None:
        context = self._server.tls_context
        assert context is not None
        try:
            await self._transport.start_tls(context)
        except (OSError, asyncio.TimeoutError) as exc:  # ssl.SSLError is an OSError
            self._log.info("TLS handshake with %s failed: %s", self.peer, exc)
            self._transport.abort()
            return
        if self.core.state is not C2SState.TLS_PENDING:
            return
        self.core.tls_established(channel_bindings=self._channel_bindings())
        self._transport.resume_reading()
        self._transport.pump()

    def _channel_bindings(self) -> dict[str, bytes]:
        obj = self._transport.ssl_object
        data = tls_exporter(obj) if obj is not None else None
        return {"tls-exporter": data} if data else {}

    async def _credentials(self, event: ev.CredentialsNeeded) -> None:
        server = self._server
        keys = (f"ip:{self.peer}", f"user:{event.username}@{self.core.domain}")
        delay = server.throttle.delay(server.now(), *keys)
        if delay > 0:
            # Slow down repeated guessing from this address or against this account.
            await asyncio.sleep(delay)
        try:
            creds = await server.accounts.credentials(self.core.domain, event.username, event.hash_name)
        except (StorageError, ValueError):
            self._log.exception("cannot read credentials")
            if self.core.state is C2SState.AUTH_PENDING:
                self.core.credentials_unavailable()
                self._transport.pump()
            return
        if self.core.state is C2SState.AUTH_PENDING:
            self.core.provide_credentials(creds)
            self._transport.pump()

    async def _register(self, stanza: Element) -> None:
        """XEP-0077 §3.1.1: the host's registration handler answers; nobody: service-unavailable."""
        answers: list[Element] = []
        host = self._server.hosts.get(self.core.domain)
        if host is not None:
            event = hooks.RegistrationEvent(stanza, self.core.domain, self.peer, answers.append)
            await host.bus.fire(hooks.REGISTRATION_REQUESTED, event)
        if answers:
            reply = answers[0]
        else:
            # The handler failed (the bus logged it), or the module was unloaded meanwhile.
            failed = host is not None and host.bus.has_handlers(hooks.REGISTRATION_REQUESTED)
            condition = Condition.INTERNAL_SERVER_ERROR if failed else Condition.SERVICE_UNAVAILABLE
            reply = error_reply(stanza, StanzaError(condition), include_payload=False)
        if self.core.state is C2SState.REGISTRATION_PENDING:
            self.core.send_registration_reply(reply)
            self._transport.pump()

    def _on_authenticated(self, event: ev.AuthSucceeded) -> None:
        self._authenticated = True
        self._server.release_unauthenticated(self)
        self._server.throttle.record_success(f"user:{event.username}@{self.core.domain}")
        self._log.info("%s@%s authenticated with %s from %s",
                       event.username, self.core.domain, event.mechanism, self.peer)

    def _bind(self, resource: str | None) -> None:
        username = self.core.username
        assert username is not None
        session = ClientSession(self._server.stream_management, self)
        try:
            jid = self._server.sessions.bind(session, username, self.core.domain, resource)
        except StanzaError as err:
            self.core.bind_failed(err.condition, err.text)
            return
        self.session = session
        self.core.bind_succeeded(jid)
        self._log.info("bound %s", jid)
        host = self._server.hosts[jid.domain]
        if host.bus.has_handlers(hooks.SESSION_BOUND):  # none by default: no task per login then
            self._spawn(host.bus.fire(hooks.SESSION_BOUND, hooks.SessionEvent(session)))

    async def _resume(self, event: ev.ResumeRequested) -> None:
        """XEP-0198 §5: the same account's session ``previd`` continues on this connection."""
        assert self.core.username is not None
        found = self._server.stream_management.find(event.previd, JID(self.core.username, self.core.domain, ""))
        if not isinstance(found, ClientSession):
            self._log.info("cannot resume %s", "an ended session" if found is not None else "an unknown session")
            self.core.resume_failed(Condition.ITEM_NOT_FOUND, h=found)
            self._transport.pump()
            return
        previous = found.claim()
        # XEP-0352 §5.2: the client state is not restored on resumption; what the old stream's
        # filter held waits in the XEP-0198 queue, before anything newer.
        found.set_delivery_filter(None)
        try:
            await previous.inbound_done()  # §4: our 'h' counts the old stream's stanzas once routed
        except asyncio.CancelledError:
            found.release()  # this connection went away meanwhile
            raise
        if self.core.state is not C2SState.RESUME_PENDING:
            found.release()
            return
        if found.ended or found.sm is None or found.jid is None:
            self.core.resume_failed(Condition.ITEM_NOT_FOUND, h=found.sm.inbound_h if found.sm else None)
        else:
            found.attach(self)
            self.session = found
            self.core.resume_succeeded(found.jid, found.sm)
            self._log.info("resumed %s (session %s)", found.jid, found.session_id)
        self._transport.pump()

    # -- inbound stanzas -------------------------------------------------------------------------
    def _enqueue(self, item: Element | ev.ClientStateChanged) -> None:
        if self._ended:
            return  # the core reports nothing after the stream's end; nothing after it is routed
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = deque()
        inbox.append(item)
        if self._worker is None:
            self._worker = asyncio.ensure_future(self._route_inbound(inbox))
        if len(inbox) >= _QUEUE_HIGH and not self._reading_paused:
            self._reading_paused = True
            self._transport.pause_reading()

    async def _route_inbound(self, inbox: deque[Element | ev.ClientStateChanged]) -> None:
        """Route what waits, one at a time, in order; end when nothing does (an idle session
        keeps no task), after the stream's end once its last stanza is routed and committed.

        A routing may leave writes committing (server/durability.py): the next stanza is routed
        at once, so that one group commit carries several of this connection's messages, and
        each stanza counts as handled — XEP-0198 §4: delivered or stored — once its writes are
        committed, in order.  What those writes name reaches no client before (the sessions hold
        it), so the order of what each recipient gets is the order of routing.
        """
        router = self._server.router
        uncommitted: deque[durability.Commitments] = deque()  # routed, in order, not yet handled
        try:
            while inbox or uncommitted:
                if inbox and len(uncommitted) < _MAX_UNCOMMITTED:
                    await self._route_one(router, inbox.popleft(), uncommitted)
                else:
                    await uncommitted[0].wait()
                while uncommitted and uncommitted[0].done:
                    uncommitted.popleft()
                    self.core.stanza_handled()  # an error reply to the client went out before, like any answer
                self._transport.pump_soon()  # answers and acks leave with whatever else this iteration queued
                if self._reading_paused and len(inbox) <= _QUEUE_LOW:
                    self._reading_paused = False
                    self._transport.resume_reading()
        finally:
            self._worker = self._inbox = None
            if self._ended:
                self._set_drained()

    async def _route_one(self, router: Router, item: Element | ev.ClientStateChanged,
                         uncommitted: deque[durability.Commitments]) -> None:
        session = self.session
        assert session is not None  # the core emits stanzas only once bound or resumed
        if isinstance(item, ev.ClientStateChanged):
            await self._client_state(session, item.active)  # a nonza: XEP-0198 does not count it
            return
        with durability.collecting() as commitments:
            try:
                await router.route_from_client(session, item)
            except Exception:
                self._log.exception("routing <%s/> failed", item.name)
        uncommitted.append(commitments)

    async def _client_state(self, session: ClientSession, active: bool) -> None:
        """XEP-0352: tell the modules, while this stream still carries the session (a filter
        installed for a stream that is gone would outlive it)."""
        if self._ended or session.connection is not self or session.jid is None:
            return
        host = self._server.hosts.get(session.jid.domain)
        if host is not None:
            await host.bus.fire(hooks.CLIENT_STATE, hooks.ClientStateEvent(session, active))

    async def inbound_done(self) -> None:
        """Return once the stream has ended and every stanza it carried has been routed."""
        if self._drained:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._drain_waiters is None:
            self._drain_waiters = []
        self._drain_waiters.append(waiter)
        await waiter

    def _set_drained(self) -> None:
        self._drained = True
        waiters, self._drain_waiters = self._drain_waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    # -- for the session -----------------------------------------------------------------------------
    def send(self, stanza: Element) -> None:
        """A stanza for the client, through the session's delivery filter (kept by XEP-0198
        until acknowledged, when enabled; what the filter holds has not been sent)."""
        if self.core.state in (C2SState.BOUND, C2SState.CLOSED):
            session = self.session
            for admitted in session.filtered(stanza) if session is not None else (stanza,):
                self.core.send_stanza(admitted)
            # One write per loop iteration, not per stanza: a burst to this client costs one
            # system call (docs/performance.md).
            self._transport.pump_soon()

    def close(self, condition: StreamCondition | None = None, text: str | None = None) -> None:
        self.core.close(condition, text)
        self._transport.pump()

    def abandon(self) -> None:
        """Drop the connection without a word: its session was resumed elsewhere (XEP-0198 §5)."""
        self._transport.abort()

    # -- the end -----------------------------------------------------------------------------------
    def _on_closed(self, event: ev.StreamClosed | None) -> None:
        if self._ended:
            return
        self._ended = True
        if event is not None and event.condition is not None:
            self._log.info("stream closed with %s%s", event.condition.value,
                           " by peer" if event.by_peer else "")
        if not self._authenticated:
            self._server.release_unauthenticated(self)
        if self._worker is None:
            self._set_drained()  # else the worker does, once it has routed what is queued
        for task in list(self._tasks or ()):
            task.cancel()
        self._server.connection_ended(self)
        if self.session is not None:
            if self.session.connection is self:
                # The filter belonged to this stream: what it held is queued for a resumption
                # (unsent, so XEP-0198 counts it only when it goes out) or dropped with the session.
                self.session.set_delivery_filter(None)
            # The session ends, or waits to be resumed (XEP-0198 §5).  Also for a session
            # replaced by a resource conflict: others must still hear that it went away.
            self.session.connection_ended(self, resumable=self.core.resumable)


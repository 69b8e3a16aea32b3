"""RFC 6120 §4–§7: the server side of a client-to-server stream, sans I/O.

Stream header checks, STARTTLS (§5), SASL (§6), resource binding (§7), the legacy
``<session/>`` of RFC 3921 §3, XEP-0077 in-band registration before authentication (when the
runtime offers it; ``protocol/c2s_register.py``), XEP-0198 stream management
(``protocol/stream_management.py``; resumption takes the place of binding), XEP-0352 client
state indication (when offered), the authentication timeout and whitespace keepalives.
Once bound, what only negotiation needed is dropped, so that an idle session costs little.
Feed it bytes with ``receive_data``; read ``pop_events`` and ``data_to_send``; answer
``TlsRequested``, ``CredentialsNeeded``, ``RegistrationRequested``, ``BindRequested`` and
``ResumeRequested`` with the matching method, and call ``stanza_handled`` once the runtime has
routed each ``StanzaReceived``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from ..jid import JID, InvalidJID
from ..stanza.errors import Condition, ProtocolUsageError, StanzaError, StreamCondition, StreamError
from ..xml.element import Element
from ..xml.namespaces import NS_BIND, NS_CLIENT, NS_SASL, NS_SESSION, NS_STREAMS, NS_TLS, NS_XML
from ..xml.parser import StreamHeader
from ..xml.serializer import serialize
from . import events as ev
from .sasl import ScramCredentials
from .sasl_server import Failure, NeedCredentials, Reply, SaslNegotiator, SaslStep, Success
from .c2s_header import check_client_header, requested_domain, response_version
from .c2s_register import NS_REGISTER, NS_REGISTER_FEATURE, HeldInput, PreAuthRegistration
from .stream import XmlStream, checked_move, expect_state
from .stream_management import NS_SM, SmPolicy, SmServerStream, SmSession, failed_element

__all__ = ["C2SServer", "C2SState", "TRANSITIONS", "ALL_MECHANISMS", "NS_CSI", "NS_REGISTER", "NS_REGISTER_FEATURE"]

ALL_MECHANISMS = ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN")
NS_CSI = "urn:xmpp:csi:0"  # XEP-0352
_STANZAS = frozenset({"message", "presence", "iq"})
_NO_BINDINGS: Mapping[str, bytes] = MappingProxyType({})
_PRE_AUTH_FEATURES: dict[tuple[object, ...], str] = {}  # serialized, by what decides them
_PRE_AUTH_FEATURES_MAX = 64
_NO_REGISTRATION = PreAuthRegistration(None)  # once bound, registration is never offered again


class C2SState(enum.Enum):
    """Where a client stream stands in negotiation."""

    WAIT_HEADER = "wait-header"        # expecting <stream:stream> (initially and after a restart)
    NEGOTIATING = "negotiating"        # features sent; STARTTLS or SASL expected
    TLS_PENDING = "tls-pending"        # <proceed/> sent; the transport is handshaking
    AUTH_PENDING = "auth-pending"      # waiting for the runtime's credentials
    REGISTRATION_PENDING = "registration-pending"  # waiting for the runtime's XEP-0077 answer
    WAIT_BIND = "wait-bind"            # authenticated; expecting the bind request
    BIND_PENDING = "bind-pending"      # waiting for the session registry
    RESUME_PENDING = "resume-pending"  # XEP-0198 §5: waiting for the runtime to find the old session
    BOUND = "bound"                    # stanzas flow
    CLOSED = "closed"


# Allowed transitions; tests read this table (STYLE rule 2).
TRANSITIONS: Mapping[C2SState, frozenset[C2SState]] = {
    C2SState.WAIT_HEADER: frozenset({C2SState.NEGOTIATING, C2SState.WAIT_BIND, C2SState.CLOSED}),
    C2SState.NEGOTIATING: frozenset({C2SState.TLS_PENDING, C2SState.AUTH_PENDING, C2SState.REGISTRATION_PENDING,
                                     C2SState.WAIT_HEADER, C2SState.CLOSED}),
    C2SState.REGISTRATION_PENDING: frozenset({C2SState.NEGOTIATING, C2SState.CLOSED}),
    C2SState.TLS_PENDING: frozenset({C2SState.WAIT_HEADER, C2SState.CLOSED}),
    C2SState.AUTH_PENDING: frozenset({C2SState.NEGOTIATING, C2SState.WAIT_HEADER, C2SState.CLOSED}),
    C2SState.WAIT_BIND: frozenset({C2SState.BIND_PENDING, C2SState.RESUME_PENDING, C2SState.CLOSED}),
    C2SState.RESUME_PENDING: frozenset({C2SState.BOUND, C2SState.WAIT_BIND, C2SState.CLOSED}),
    C2SState.BIND_PENDING: frozenset({C2SState.BOUND, C2SState.WAIT_BIND, C2SState.CLOSED}),
    C2SState.BOUND: frozenset({C2SState.CLOSED}),
    C2SState.CLOSED: frozenset(),
}
_HOLDING = frozenset({C2SState.REGISTRATION_PENDING, C2SState.RESUME_PENDING})  # input waits for the runtime


def _normalize_localpart(raw: str) -> str | None:
    try:
        jid = JID.make(raw, "localhost")
    except InvalidJID:
        return None
    return jid.local


class C2SServer(XmlStream):
    """The receiving entity of one client connection; ``sm`` is its XEP-0198 side."""

    __slots__ = (
        "_is_hosted", "_new_id", "_tls_available", "_tls_required", "_tls_active", "_bindings",
        "_mechanisms", "_auth_deadline", "_max_failures", "_failures", "_keepalive", "_last_input",
        "_extra_features", "_scram_secret", "_scram_iterations", "_registration", "_held", "state",
        "domain", "stream_id", "username", "jid", "_peer_from", "_peer_version", "_sasl",
        "_bind_iq_id", "_abort_requested", "sm", "_lost", "_csi_offered", "client_active",
    )
    content_ns = NS_CLIENT

    def __init__(
        self, *, domains: Callable[[str], bool], id_factory: Callable[[], str], now: float,
        tls_available: bool = True, tls_required: bool = True, tls_active: bool = False,
        channel_bindings: Mapping[str, bytes] | None = None, mechanisms: Sequence[str] = ALL_MECHANISMS,
        max_stanza_size: int = 262144, auth_timeout: float = 30.0, max_auth_failures: int = 3,
        keepalive_interval: float = 0.0, extra_features: Callable[[], list[Element]] | None = None,
        scram_secret: bytes = b"", scram_iterations: int = 4096,
        in_band_registration: Callable[[str], bool] | None = None,  # does a domain offer XEP-0077?
        stream_management: SmPolicy | None = None,
    ) -> None:
        super().__init__(max_stanza_size=max_stanza_size)
        self._is_hosted = domains
        self._new_id = id_factory
        self._tls_available = tls_available
        self._tls_required = tls_required
        self._tls_active = tls_active
        self._bindings = dict(channel_bindings) if channel_bindings else _NO_BINDINGS
        self._mechanisms = tuple(mechanisms)
        self._auth_deadline = now + auth_timeout
        self._max_failures = max_auth_failures
        self._failures = 0
        self._keepalive = keepalive_interval
        self._last_input = now
        self._extra_features = extra_features
        self._scram_secret = scram_secret
        self._scram_iterations = scram_iterations
        self._registration = PreAuthRegistration(in_band_registration)
        self._held = HeldInput()  # input behind a registration or resumption request
        self.state = C2SState.WAIT_HEADER
        self.domain = ""
        self.stream_id = ""
        self.username: str | None = None
        self.jid: JID | None = None
        self._peer_from: str | None = None
        self._peer_version = "1.0"
        self._sasl: SaslNegotiator | None = None
        self._bind_iq_id = ""
        self._abort_requested = False
        self.sm = SmServerStream(stream_management, new_id=id_factory, send=self._send)  # inert if not offered
        self._lost = False  # the connection went away without a closing tag (XEP-0198: resumable)
        self._csi_offered = False
        self.client_active = True  # XEP-0352 §4.2: "A stream always begins in 'active' state"

    # -- answers from the runtime --------------------------------------------------------------
    def tls_established(self, *, channel_bindings: Mapping[str, bytes] | None = None) -> None:
        """TLS is up (RFC 6120 §5.4.3.3): the client restarts the stream next."""
        self._expect(C2SState.TLS_PENDING)
        self._tls_active = True
        self._bindings = dict(channel_bindings) if channel_bindings else _NO_BINDINGS
        self._restart()
        self._to(C2SState.WAIT_HEADER)

    def provide_credentials(self, credentials: ScramCredentials | None) -> None:
        """Answer ``CredentialsNeeded``; None means there is no such account."""
        self._credentials_answered(lambda sasl: sasl.provide_credentials(credentials))

    def credentials_unavailable(self) -> None:
        """Storage failed: ``temporary-auth-failure`` (RFC 6120 §6.5.12)."""
        self._credentials_answered(lambda sasl: sasl.credentials_unavailable())

    def _credentials_answered(self, step: Callable[[SaslNegotiator], SaslStep]) -> None:
        self._expect(C2SState.AUTH_PENDING)
        assert self._sasl is not None
        if self._abort_requested:
            self._abort_requested = False
            self._sasl_step(self._sasl.handle(Element("abort", NS_SASL)))
            return
        self._sasl_step(step(self._sasl))

    def connection_lost(self) -> None:
        self._lost = not self._closed
        super().connection_lost()
        self.state = C2SState.CLOSED

    def bind_succeeded(self, jid: JID) -> None:
        """Answer ``BindRequested`` with the full JID the session now has (RFC 6120 §7.6.1)."""
        self._expect(C2SState.BIND_PENDING)
        self.jid = jid
        result = Element("iq", NS_CLIENT, {"type": "result", "id": self._bind_iq_id})
        result.add("bind", NS_BIND).add("jid", text=str(jid))
        self._send(result)
        self._to(C2SState.BOUND)
        self._negotiated()

    def bind_failed(self, condition: Condition, text: str | None = None) -> None:
        """Refuse the bind request (e.g. ``resource-constraint``); the client may try again."""
        self._expect(C2SState.BIND_PENDING)
        self._reply_error(self._bind_iq_id, StanzaError(condition, text))
        self._to(C2SState.WAIT_BIND)

    def send_registration_reply(self, reply: Element) -> None:
        """Answer ``RegistrationRequested`` with an IQ result or error carrying its id.

        Elements the client sent meanwhile are handled next, in order (it may pipeline its
        SASL ``<auth/>`` behind the registration, XEP-0077 §3.1.1).
        """
        self._expect(C2SState.REGISTRATION_PENDING)
        self._registration.check_reply(reply)
        self._send(reply)
        self._to(C2SState.NEGOTIATING)
        self._replay_held()

    def resume_succeeded(self, jid: JID, session: SmSession) -> None:
        """Answer ``ResumeRequested`` (XEP-0198 §5): ``<resumed/>``, then the stanzas the client's
        'h' does not cover.  Route the old stream's stanzas first: our 'h' counts them."""
        self._expect(C2SState.RESUME_PENDING)
        self.jid = jid
        self._to(C2SState.BOUND)
        self._negotiated()
        try:
            self.sm.resume(session)
        except StreamError as err:
            self._fail(err)
            return
        self._replay_held()

    def resume_failed(self, condition: Condition = Condition.ITEM_NOT_FOUND, *, h: int | None = None) -> None:
        """Refuse ``ResumeRequested`` (§5: ``item-not-found`` for an unknown or expired session,
        with the 'h' it ended with when known); the client may bind instead."""
        self._expect(C2SState.RESUME_PENDING)
        self._send(failed_element(condition, h))
        self._to(C2SState.WAIT_BIND)
        self._replay_held()

    def stanza_handled(self) -> None:
        """The runtime routed the oldest ``StanzaReceived`` not yet reported (XEP-0198 §4
        "handled"): call once per event, in order, even after the stream ended."""
        self.sm.stanza_handled(stream_open=not self._closed)

    @property
    def resumable(self) -> bool:
        """The connection was lost (no closing tag, no stream error) with resumption enabled."""
        return self._lost and self.sm.session is not None and self.sm.session.id is not None

    def _replay_held(self) -> None:
        """Elements the client pipelined behind a request we waited on, in order."""
        try:
            self._held.replay(self._on_element, waiting=lambda: self._closed or self.state in _HOLDING)
        except StreamError as err:
            self._fail(err)

    def send_stanza(self, stanza: Element) -> None:
        """Queue a stanza for the bound client; with XEP-0198 it is kept until acknowledged, even
        when the stream has ended (the session may be resumed, or the stanza goes elsewhere)."""
        if self.state is not C2SState.BOUND and self.state is not C2SState.CLOSED:
            raise ProtocolUsageError(f"cannot send stanzas in state {self.state.value}")
        if not self.sm.outbound(stanza, stream_open=not self._closed) and not self._closed:
            self._send(stanza)
        if self.sm.overflowing and not self._closed:
            # XEP-0198 leaves the bound to the server: a client that stops acknowledging is cut off.
            self.close(StreamCondition.POLICY_VIOLATION, "too many unacknowledged stanzas")

    # -- timers --------------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        """When ``handle_timer`` should next run, or None."""
        if self._closed:
            return None
        if self.state is not C2SState.BOUND:
            return self._auth_deadline
        when = self.sm.get_timer()
        if self._keepalive > 0:
            keepalive = self._last_input + self._keepalive
            if when is None or keepalive < when:
                when = keepalive
        return when

    def handle_timer(self, now: float) -> None:
        """Authentication timeout, then whitespace keepalives (RFC 6120 §4.6.1)."""
        if self._closed:
            return
        if self.state is not C2SState.BOUND:
            if now >= self._auth_deadline:
                self.close(StreamCondition.CONNECTION_TIMEOUT, "authentication took too long")
            return
        if self._keepalive > 0 and now >= self._last_input + self._keepalive:
            self._send_raw(" ")
            self._last_input = now
        self.sm.handle_timer(now)  # XEP-0198: ask for an ack of what is still unacknowledged

    # -- stream handling -----------------------------------------------------------------------
    def _on_input(self, now: float) -> None:
        self._last_input = now
        self.sm.clock = now

    def _header_attrs(self) -> dict[str, str]:
        attrs = {"id": self.stream_id or self._new_stream_id(), f"{{{NS_XML}}}lang": "en"}
        version = response_version(self._peer_version)
        if version is not None:
            attrs["version"] = version
        if self.domain:
            attrs["from"] = self.domain
        if self._peer_from:
            attrs["to"] = self._peer_from
        return attrs

    def _new_stream_id(self) -> str:
        self.stream_id = self._new_id()
        return self.stream_id

    def _on_header(self, header: StreamHeader) -> None:
        if self.state is not C2SState.WAIT_HEADER:
            raise StreamError(StreamCondition.NOT_WELL_FORMED, "unexpected stream header")
        self._peer_version = header.attrs.get("version", "")
        self._new_stream_id()
        # The domain is taken first so that even an error header says who we are (§4.9.1.2).
        self.domain = requested_domain(header, current=self.domain, is_hosted=self._is_hosted)
        self._peer_from = check_client_header(header, domain=self.domain)
        self._send_header()
        self._events.append(ev.StreamOpened(
            to=self.domain, from_=self._peer_from, version=header.attrs.get("version", ""),
            lang=header.attrs.get(f"{{{NS_XML}}}lang"),
        ))
        self._send_features()

    def _send_features(self) -> None:
        if self.username is not None:
            features = Element("features", NS_STREAMS)
            features.add("bind", NS_BIND)
            features.add("session", NS_SESSION).add("optional")
            extras = [*(self._extra_features() if self._extra_features else ()), *self.sm.features()]
            for extra in extras:
                features.append(extra)
            self._csi_offered = any(extra.ns == NS_CSI for extra in extras)  # added by a module
            self._send(features)
            self._to(C2SState.WAIT_BIND)
            return
        offer_tls = self._tls_available and not self._tls_active
        sasl = self._tls_active or not self._tls_required
        if sasl:
            self._sasl = self._new_sasl()
        registration = self._registration.offered(self.domain, tls_active=self._tls_active)
        # The same few feature lists go to every connection before authentication: each is
        # serialized once (what decides its content is the key).
        key = (offer_tls, self._tls_required, registration,
               self._sasl.offered if sasl and self._sasl is not None else None, tuple(self._bindings))
        text = _PRE_AUTH_FEATURES.get(key)
        if text is None:
            features = Element("features", NS_STREAMS)
            if offer_tls:
                starttls = features.add("starttls", NS_TLS)
                if self._tls_required:
                    starttls.add("required")
            if sasl and self._sasl is not None:
                for child in self._sasl.features():
                    features.append(child)
            if registration:
                features.append(self._registration.feature())
            text = serialize(features, NS_CLIENT)
            if len(_PRE_AUTH_FEATURES) >= _PRE_AUTH_FEATURES_MAX:
                _PRE_AUTH_FEATURES.clear()
            _PRE_AUTH_FEATURES[key] = text
        self._send_raw(text)
        self._to(C2SState.NEGOTIATING)

    def _new_sasl(self) -> SaslNegotiator:
        offered = [
            m for m in self._mechanisms
            if (not m.endswith("-PLUS") or self._bindings) and (m != "PLAIN" or self._tls_active)
        ]
        withheld = [] if self._tls_active else [m for m in self._mechanisms if m not in offered]
        return SaslNegotiator(
            domain=self.domain, offered=offered, withheld_without_tls=withheld,
            channel_bindings=self._bindings,
            nonce_factory=self._new_id, normalize_username=_normalize_localpart,
            unknown_user_key=self._scram_secret, unknown_user_iterations=self._scram_iterations,
        )

    def _on_element(self, element: Element) -> None:
        if self._is_stream_error(element):
            self._peer_stream_error(element)
            return
        state = self.state
        if element.ns == NS_SM and self.sm.offered and state in (C2SState.BOUND, C2SState.WAIT_BIND):
            event = self.sm.on_element(element, bound=state is C2SState.BOUND)
            if isinstance(event, ev.ResumeRequested):
                self._to(C2SState.RESUME_PENDING)  # XEP-0198 §5: instead of binding
            if event is not None:
                self._events.append(event)
        elif element.ns == NS_CSI and state is C2SState.BOUND and self._csi_offered:
            self._on_client_state(element)
        elif state is C2SState.BOUND:
            self._on_bound_element(element)
        elif state is C2SState.NEGOTIATING:
            self._on_negotiation_element(element)
        elif state is C2SState.WAIT_BIND:
            self._on_bind_element(element)
        elif state in _HOLDING:
            self._held.hold(element, state.value)
        elif state is C2SState.AUTH_PENDING and element.ns == NS_SASL and element.name == "abort":
            # The abort takes effect when the credentials arrive: answering then, and only
            # then, keeps one lookup per stream, so a late answer can never complete
            # another exchange the client started in the meantime.
            self._abort_requested = True
        else:
            # TLS_PENDING, AUTH_PENDING and BIND_PENDING expect nothing from the peer.
            raise StreamError(StreamCondition.POLICY_VIOLATION, f"unexpected <{element.name}/> in {state.value}")

    def _on_negotiation_element(self, element: Element) -> None:
        if element.ns == NS_TLS and element.name == "starttls":
            if not self._tls_available or self._tls_active:
                # RFC 6120 §5.4.2.2: <failure/>, then close the stream.
                self._send(Element("failure", NS_TLS))
                self.close()
                return
            self._send(Element("proceed", NS_TLS))
            self._to(C2SState.TLS_PENDING)
            self._events.append(ev.TlsRequested())
            return
        if element.ns == NS_SASL:
            if self._sasl is None:
                # RFC 6120 §5.3.1: TLS is mandatory-to-negotiate and has not been negotiated.
                self._send(Element("failure", NS_SASL, children=[Element("encryption-required", NS_SASL)]))
                return
            self._sasl_step(self._sasl.handle(element))
            return
        if self._sasl is not None and PreAuthRegistration.is_request(element, self.domain):
            self._on_registration_request(element)
            return
        if element.ns == NS_CLIENT and element.name in _STANZAS:
            # RFC 6120 §4.9.3.12: stanzas before authentication.
            raise StreamError(StreamCondition.NOT_AUTHORIZED)
        raise StreamError(StreamCondition.UNSUPPORTED_STANZA_TYPE, f"<{element.name}/> is not expected here")

    def _on_registration_request(self, element: Element) -> None:
        outcome = self._registration.request(element, domain=self.domain, tls_active=self._tls_active)
        if isinstance(outcome, StanzaError):
            self._reply_error(element.get("id") or "", outcome)
            return
        self._to(C2SState.REGISTRATION_PENDING)
        self._events.append(outcome)

    def _sasl_step(self, step: SaslStep) -> None:
        assert self._sasl is not None
        mechanism = self._sasl.mechanism
        if isinstance(step, NeedCredentials):
            self._to(C2SState.AUTH_PENDING)
            self._events.append(ev.CredentialsNeeded(
                username=step.username, hash_name=step.hash_name, mechanism=mechanism))
        elif isinstance(step, Reply):
            self._to(C2SState.NEGOTIATING)
            self._send(step.element)
        elif isinstance(step, Success):
            self._send(step.element)
            self.username = step.username
            self._events.append(ev.AuthSucceeded(username=step.username, mechanism=mechanism))
            self._restart()
            self._to(C2SState.WAIT_HEADER)
        elif isinstance(step, Failure):
            self._to(C2SState.NEGOTIATING)
            self._send(step.element)
            self._events.append(ev.AuthFailed(
                username=step.username, condition=step.condition, mechanism=mechanism))
            self._failures += 1
            if self._failures >= self._max_failures:
                # RFC 6120 §6.4.5: a configurable number of retries (2 to 5), then the stream ends.
                self.close(StreamCondition.POLICY_VIOLATION, "too many failed authentication attempts")

    def _on_bind_element(self, element: Element) -> None:
        iq_id = element.get("id") or ""
        if not (element.ns == NS_CLIENT and element.name in _STANZAS):
            raise StreamError(StreamCondition.UNSUPPORTED_STANZA_TYPE, f"<{element.name}/> is not expected here")
        bind = element.find("bind", NS_BIND) if element.name == "iq" else None
        if bind is None and not self._addressed_to_server_or_self(element.get("to")):
            # RFC 6120 §7.1: nothing may go to other entities before a resource is bound.
            raise StreamError(StreamCondition.NOT_AUTHORIZED, "bind a resource first")
        if bind is None or element.get("type") != "set":
            # RFC 6120 §7.1: nothing but binding before a resource is bound.
            if element.name == "iq" and element.get("type") in ("get", "set"):
                self._reply_error(iq_id, StanzaError(Condition.NOT_AUTHORIZED, "bind a resource first"))
            return
        resource = (bind.findtext("resource") or "").strip()
        if resource:
            try:
                resource = JID.make("x", "localhost", resource).resource
            except InvalidJID:
                # RFC 6120 §7.7.2.1: a resourcepart that fails its profile.
                self._reply_error(iq_id, StanzaError(Condition.BAD_REQUEST, "invalid resource"))
                return
        self._bind_iq_id = iq_id
        self._to(C2SState.BIND_PENDING)
        self._events.append(ev.BindRequested(resource=resource or None))

    def _addressed_to_server_or_self(self, to: str | None) -> bool:
        if not to:
            return True
        try:
            jid = JID.parse(to)
        except InvalidJID:
            return False
        return jid == JID("", self.domain, "") or jid == JID(self.username or "", self.domain, "")

    def _on_client_state(self, element: Element) -> None:
        """XEP-0352 §4.2: ``<active/>`` or ``<inactive/>``, nonzas that XEP-0198 does not count;
        a change goes to the runtime, which acts on it in order with the stanzas around it (§5.1)."""
        if element.name not in ("active", "inactive"):
            raise StreamError(StreamCondition.UNSUPPORTED_STANZA_TYPE, f"<{element.name}/> is not supported")
        active = element.name == "active"
        if active != self.client_active:
            self.client_active = active
            self._events.append(ev.ClientStateChanged(active=active))

    def _on_bound_element(self, element: Element) -> None:
        if element.ns != NS_CLIENT or element.name not in _STANZAS:
            if element.name in _STANZAS:
                raise StreamError(StreamCondition.INVALID_NAMESPACE, "stanzas must be in jabber:client")
            raise StreamError(StreamCondition.UNSUPPORTED_STANZA_TYPE, f"<{element.name}/> is not supported")
        if element.name == "iq" and element.get("type") == "set" and element.get("to") in (None, "", self.domain):
            if element.find("session", NS_SESSION) is not None:
                # RFC 3921 §3 (kept optional by RFC 6121 Appendix E): just say yes.
                self._send(Element("iq", NS_CLIENT, {"type": "result", "id": element.get("id") or ""}))
                self.sm.stanza_handled_here()  # XEP-0198 counts it, though the runtime never sees it
                return
            if element.find("bind", NS_BIND) is not None:
                self._reply_error(element.get("id") or "", StanzaError(Condition.NOT_ALLOWED, "already bound"))
                self.sm.stanza_handled_here()
                return
        self.sm.stanza_received()
        self._events.append(ev.StanzaReceived(stanza=element))

    # -- helpers -------------------------------------------------------------------------------
    def _negotiated(self) -> None:
        """Bound: let go of what only negotiation needed (an idle session should cost little)."""
        self._sasl = None
        self._bindings = _NO_BINDINGS
        self._extra_features = None
        self._registration = _NO_REGISTRATION
        self._bind_iq_id = ""

    def _reply_error(self, iq_id: str, error: StanzaError) -> None:
        reply = Element("iq", NS_CLIENT, {"type": "error", "id": iq_id})
        reply.append(error.to_element(NS_CLIENT))
        self._send(reply)

    def _expect(self, state: C2SState) -> None:
        expect_state(self.state, state)

    def _to(self, state: C2SState) -> None:
        self.state = checked_move(self.state, state, TRANSITIONS)

    def _finish(self, err: StreamError | None, *, by_peer: bool) -> None:
        super()._finish(err, by_peer=by_peer)
        self.state = C2SState.CLOSED

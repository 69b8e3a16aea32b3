"""RFC 6120 §4–§7: the client side of a client-to-server stream, sans I/O.

The initiating entity: it opens the stream, upgrades it with STARTTLS (§5), authenticates with
the best SASL mechanism both sides allow (§6: SCRAM of RFC 5802/RFC 7677, with the -PLUS channel
bindings of RFC 9266 when TLS gives us binding data; PLAIN of RFC 4616 only under TLS) and binds
a resource (§7).  Our tests, the conformance runner and the bots drive it like ``C2SServer``:
``start()``, then ``receive_data``/``pop_events``/``data_to_send``; answer ``TlsProceed`` with
``tls_established`` and ``BindFailed`` with ``bind`` or ``close``.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Callable, Mapping, Sequence

from ..jid import JID, InvalidJID
from ..stanza.errors import (
    ProtocolUsageError, SaslCondition, SaslFailure, StanzaError, StreamCondition, StreamError,
)
from ..xml.element import Element
from ..xml.namespaces import NS_BIND, NS_CLIENT, NS_SASL, NS_SASL_CB, NS_STREAMS, NS_TLS, NS_XML
from ..xml.parser import StreamHeader
from . import events as ev
from .sasl import ScramClient, parse_mechanism, plain_client_message
from .stream import XmlStream, checked_move, expect_state

__all__ = ["C2SClient", "C2SClientState", "CLIENT_TRANSITIONS", "DEFAULT_MECHANISMS"]

DEFAULT_MECHANISMS = ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN")
_STANZAS = frozenset({"message", "presence", "iq"})
_SASL_CONDITIONS = frozenset(c.value for c in SaslCondition)


class C2SClientState(enum.Enum):
    """Where the client stands in negotiation."""

    IDLE = "idle"                      # start() not called yet
    WAIT_HEADER = "wait-header"        # our header is sent (initially or after a restart)
    WAIT_FEATURES = "wait-features"    # the server's header arrived; <stream:features> next
    TLS_REQUESTED = "tls-requested"    # <starttls/> sent; <proceed/> or <failure/> next
    TLS_HANDSHAKE = "tls-handshake"    # the transport is handshaking
    AUTHENTICATING = "authenticating"  # <auth/> sent; challenges until <success/> or <failure/>
    BINDING = "binding"                # the bind request is out
    WAIT_BIND = "wait-bind"            # the server refused the bind; the caller decides
    BOUND = "bound"                    # stanzas flow
    CLOSED = "closed"


_S = C2SClientState
# Allowed transitions; tests read this table (STYLE rule 2).
CLIENT_TRANSITIONS: Mapping[C2SClientState, frozenset[C2SClientState]] = {
    _S.IDLE: frozenset({_S.WAIT_HEADER, _S.CLOSED}),
    _S.WAIT_HEADER: frozenset({_S.WAIT_FEATURES, _S.CLOSED}),
    _S.WAIT_FEATURES: frozenset({_S.TLS_REQUESTED, _S.AUTHENTICATING, _S.BINDING, _S.CLOSED}),
    _S.TLS_REQUESTED: frozenset({_S.TLS_HANDSHAKE, _S.CLOSED}),
    _S.TLS_HANDSHAKE: frozenset({_S.WAIT_HEADER, _S.CLOSED}),
    _S.AUTHENTICATING: frozenset({_S.WAIT_HEADER, _S.CLOSED}),
    _S.BINDING: frozenset({_S.BOUND, _S.WAIT_BIND, _S.CLOSED}),
    _S.WAIT_BIND: frozenset({_S.BINDING, _S.CLOSED}),
    _S.BOUND: frozenset({_S.CLOSED}),
    _S.CLOSED: frozenset(),
}


def _b64(data: bytes) -> str:
    # RFC 6120 §6.4.2: an empty initial response is a single '='.
    return base64.b64encode(data).decode("ascii") if data else "="


def _unb64(text: str) -> bytes:
    text = "".join(text.split())
    try:
        return base64.b64decode(text, validate=True) if text not in ("", "=") else b""
    except (binascii.Error, ValueError) as exc:
        raise SaslFailure(SaslCondition.INCORRECT_ENCODING, "the server sent bad base64") from exc


class C2SClient(XmlStream):
    """The initiating entity of one client connection."""

    content_ns = NS_CLIENT

    def __init__(
        self, *, jid: str, password: str, now: float, nonce_factory: Callable[[], str],
        tls_available: bool, require_tls: bool = True, tls_active: bool = False,
        channel_bindings: Mapping[str, bytes] | None = None, mechanisms: Sequence[str] = DEFAULT_MECHANISMS,
        authzid: str | None = None, max_stanza_size: int = 262144, negotiation_timeout: float = 30.0,
        keepalive_interval: float = 0.0,
    ) -> None:
        """``jid`` names the account and, when full, the resource to ask for; ``tls_active`` and
        ``channel_bindings`` describe direct TLS (XEP-0368); ``authzid`` is sent as given."""
        super().__init__(max_stanza_size=max_stanza_size)
        parsed = JID.parse(jid)
        if not parsed.local:
            raise ValueError(f"{jid!r} names no account")
        self.requested_jid = parsed
        self._password = password
        self._nonce = nonce_factory
        self._tls_available = tls_available
        self._require_tls = require_tls
        self._tls_active = tls_active
        self._bindings = dict(channel_bindings or {})
        self._preference = tuple(mechanisms)
        self._authzid = authzid
        self._deadline = now + negotiation_timeout
        self._keepalive = keepalive_interval
        self._last_input = now
        self.state = C2SClientState.IDLE
        self.stream_id = ""
        self.mechanism = ""
        self.jid: JID | None = None
        self._authenticated = False
        self._scram: ScramClient | None = None
        self._scram_final_sent = False
        self._server_verified = False
        self._binds = 0  # bind requests sent; the latest one's id is f"bind-{n}"

    # -- calls from the caller -----------------------------------------------------------------
    def start(self) -> None:
        """Open the stream (RFC 6120 §4.2)."""
        self._expect(C2SClientState.IDLE)
        self._send_header()
        self._to(C2SClientState.WAIT_HEADER)

    def tls_established(self, *, channel_bindings: Mapping[str, bytes] | None = None) -> None:
        """TLS is up: restart the stream over it (RFC 6120 §5.4.3.3)."""
        self._expect(C2SClientState.TLS_HANDSHAKE)
        self._tls_active = True
        self._bindings = dict(channel_bindings or {})
        self._restart_stream()

    def bind(self, resource: str | None = None) -> None:
        """Ask again after ``BindFailed`` (None: let the server choose)."""
        self._expect(C2SClientState.WAIT_BIND)
        self._send_bind(resource)

    def send_stanza(self, stanza: Element) -> None:
        """Queue a stanza; only once bound."""
        if self.state is not C2SClientState.CLOSED:
            self._expect(C2SClientState.BOUND)
            self._send(stanza)

    def connection_lost(self) -> None:
        super().connection_lost()
        self._to(C2SClientState.CLOSED)

    # -- timers --------------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        """When ``handle_timer`` should next run, or None."""
        if self._closed:
            return None
        if self.state is not C2SClientState.BOUND:
            return self._deadline
        return self._last_input + self._keepalive if self._keepalive > 0 else None

    def handle_timer(self, now: float) -> None:
        """The negotiation timeout, then whitespace keepalives (RFC 6120 §4.6.1)."""
        if self._closed:
            return
        if self.state is not C2SClientState.BOUND:
            if now >= self._deadline:
                self.close(StreamCondition.CONNECTION_TIMEOUT, "stream negotiation took too long")
        elif self._keepalive > 0 and now >= self._last_input + self._keepalive:
            self._send_raw(" ")
            self._last_input = now

    # -- stream handling -----------------------------------------------------------------------
    def _on_input(self, now: float) -> None:
        self._last_input = now

    def _header_attrs(self) -> dict[str, str]:
        attrs = {"to": self.requested_jid.domain, "version": "1.0", f"{{{NS_XML}}}lang": "en"}
        if self._tls_active:
            # RFC 6120 §4.7.1: 'from' only once the stream is protected.
            attrs["from"] = str(self.requested_jid.bare)
        return attrs

    def _on_header(self, header: StreamHeader) -> None:
        if self.state is C2SClientState.IDLE:
            raise ProtocolUsageError("call start() before feeding data")
        if self.state is not C2SClientState.WAIT_HEADER:
            raise StreamError(StreamCondition.NOT_WELL_FORMED, "unexpected stream header")
        if header.name != "stream" or header.ns != NS_STREAMS or header.namespaces.get("") != NS_CLIENT:
            raise StreamError(StreamCondition.INVALID_NAMESPACE)
        major, _, minor = header.attrs.get("version", "").partition(".")
        if not (major.isdigit() and minor.isdigit()) or int(major) != 1:
            # RFC 6120 §4.7.5: without version 1.x there are no stream features to negotiate.
            raise StreamError(StreamCondition.UNSUPPORTED_VERSION)
        self.stream_id = header.attrs.get("id", "")
        self._to(C2SClientState.WAIT_FEATURES)

    def _on_element(self, element: Element) -> None:
        if self._is_stream_error(element):
            self._peer_stream_error(element)
            return
        handler = {
            C2SClientState.WAIT_FEATURES: self._on_features,
            C2SClientState.TLS_REQUESTED: self._on_tls_answer,
            C2SClientState.AUTHENTICATING: self._on_sasl,
            C2SClientState.BINDING: self._on_bind_result,
            C2SClientState.BOUND: self._on_bound_element,
        }.get(self.state)
        if handler is None:
            # WAIT_HEADER, TLS_HANDSHAKE and WAIT_BIND expect nothing from the server.
            raise self._unexpected(element)
        handler(element)

    def _on_features(self, features: Element) -> None:
        if features.ns != NS_STREAMS or features.name != "features":
            raise self._unexpected(features)
        self._events.append(ev.FeaturesReceived(features=features))
        if self._authenticated:
            if features.find("bind", NS_BIND) is None:
                self._give_up("the server offers no resource binding")
            else:
                self._send_bind(self.requested_jid.resource or None)
            return
        if not self._tls_active:
            starttls = features.find("starttls", NS_TLS)
            if starttls is not None and self._tls_available:
                self._send(Element("starttls", NS_TLS))
                self._to(C2SClientState.TLS_REQUESTED)
                return
            if self._require_tls or (starttls is not None and starttls.find("required") is not None):
                self._give_up("TLS is required but cannot be negotiated")
                return
        self._start_sasl(features)

    def _on_tls_answer(self, element: Element) -> None:
        if element.ns == NS_TLS and element.name == "proceed":
            self._to(C2SClientState.TLS_HANDSHAKE)
            self._events.append(ev.TlsProceed())
        elif element.ns == NS_TLS and element.name == "failure":
            self._give_up("the server refused STARTTLS")  # RFC 6120 §5.4.2.2: it closes too
        else:
            raise self._unexpected(element)

    # -- SASL (RFC 6120 §6) ----------------------------------------------------------------------
    def _start_sasl(self, features: Element) -> None:
        container = features.find("mechanisms", NS_SASL)
        offered = [m.text.strip() for m in container.findall("mechanism")] if container is not None else []
        cb_list = features.find("sasl-channel-binding", NS_SASL_CB)
        # XEP-0440: the binding types the server supports; without the list, try ours.
        cb_types = None if cb_list is None else {c.get("type") for c in cb_list.findall("channel-binding")}
        binding = next(((k, v) for k, v in self._bindings.items() if cb_types is None or k in cb_types), None)
        mechanism = self._choose_mechanism(offered, binding is not None)
        if mechanism is None:
            self._give_up(f"no acceptable SASL mechanism among {offered}")
            return
        try:
            initial = self._initial_response(mechanism, offered, binding)
        except ValueError as exc:
            self._give_up(f"cannot use {mechanism}: {exc}")
            return
        self.mechanism = mechanism
        self._send(Element("auth", NS_SASL, {"mechanism": mechanism}, text=_b64(initial)))
        self._to(C2SClientState.AUTHENTICATING)

    def _choose_mechanism(self, offered: list[str], can_bind: bool) -> str | None:
        usable = (m for m in self._preference if m in offered and (can_bind or not m.endswith("-PLUS")))
        # PLAIN only under TLS: never a password in the clear.
        return next((m for m in usable if (m == "PLAIN" and self._tls_active) or parse_mechanism(m)), None)

    def _initial_response(self, mechanism: str, offered: list[str], binding: tuple[str, bytes] | None) -> bytes:
        username = self.requested_jid.local
        if mechanism == "PLAIN":
            return plain_client_message(username, self._password, self._authzid or "")
        parsed = parse_mechanism(mechanism)
        assert parsed is not None
        hash_name, plus = parsed
        self._scram = ScramClient(
            hash_name, username=username, password=self._password, client_nonce=self._nonce(),
            authzid=self._authzid, channel_binding=binding, plus=plus,
            server_supports_plus=any(m.endswith("-PLUS") for m in offered),
        )
        return self._scram.client_first()

    def _on_sasl(self, element: Element) -> None:
        if element.ns != NS_SASL or element.name not in ("challenge", "success", "failure"):
            raise self._unexpected(element)
        if element.name == "failure":
            self._on_sasl_failure(element)
            return
        try:
            if element.name == "challenge":
                self._on_challenge(_unb64(element.text))
            else:
                self._on_success(_unb64(element.text))
        except SaslFailure as failure:
            # The server misbehaved (bad nonce, wrong signature...): refuse it (RFC 6120 §6.4.4).
            if element.name == "challenge":
                self._send(Element("abort", NS_SASL))
            self._auth_failed(failure.condition)

    def _on_challenge(self, data: bytes) -> None:
        scram = self._scram
        if scram is None or self._server_verified:
            raise SaslFailure(SaslCondition.MALFORMED_REQUEST, "unexpected challenge")
        if not self._scram_final_sent:
            final = scram.receive_server_first(data)
            self._scram_final_sent = True
            self._send(Element("response", NS_SASL, text=_b64(final)))
            return
        # COMPAT: RFC 3920 servers send server-final in a challenge and an empty <success/>.
        scram.receive_server_final(data)
        self._server_verified = True
        self._send(Element("response", NS_SASL))

    def _on_success(self, data: bytes) -> None:
        if self._scram is not None and not self._server_verified:
            if not self._scram_final_sent or not data:
                # RFC 6120 §6.3.10: SCRAM's server signature must come with the outcome.
                raise SaslFailure(SaslCondition.NOT_AUTHORIZED, "success without server signature")
            self._scram.receive_server_final(data)
        self._scram = None
        self._authenticated = True
        self._events.append(ev.Authenticated(mechanism=self.mechanism))
        self._restart_stream()  # RFC 6120 §6.4.6

    def _on_sasl_failure(self, element: Element) -> None:
        known = [SaslCondition(c.name) for c in element.elements() if c.name in _SASL_CONDITIONS]
        self._auth_failed(known[0] if known else SaslCondition.NOT_AUTHORIZED)

    def _auth_failed(self, condition: SaslCondition) -> None:
        self._events.append(ev.AuthFailed(
            username=self.requested_jid.local, condition=condition, mechanism=self.mechanism))
        self.close()

    # -- resource binding (RFC 6120 §7) ----------------------------------------------------------
    def _send_bind(self, resource: str | None) -> None:
        self._binds += 1
        iq = Element("iq", NS_CLIENT, {"type": "set", "id": f"bind-{self._binds}"})
        bind = iq.add("bind", NS_BIND)
        if resource:
            bind.add("resource", text=resource)
        self._send(iq)
        self._to(C2SClientState.BINDING)

    def _on_bind_result(self, element: Element) -> None:
        kind = element.get("type")
        if element.qname != (NS_CLIENT, "iq") or element.get("id") != f"bind-{self._binds}":
            raise self._unexpected(element)
        if kind == "error":
            refusal = StanzaError.from_element(element.find("error") or Element("error", NS_CLIENT))
            self._to(C2SClientState.WAIT_BIND)
            self._events.append(ev.BindFailed(condition=refusal.condition, text=refusal.text))
            return
        bind = element.find("bind", NS_BIND)
        try:
            jid = JID.parse((bind.findtext("jid") or "") if bind is not None and kind == "result" else "")
        except InvalidJID:
            jid = self.requested_jid.bare
        if jid.bare != self.requested_jid.bare or not jid.resource:  # RFC 6120 §7.6.1: a full JID
            self._give_up(f"the server bound an unexpected address {str(jid)!r}")
            return
        self.jid = jid
        self._to(C2SClientState.BOUND)
        self._events.append(ev.Bound(jid=str(jid)))

    def _on_bound_element(self, element: Element) -> None:
        if element.ns == NS_CLIENT and element.name in _STANZAS:
            self._events.append(ev.StanzaReceived(stanza=element))
        elif element.name in _STANZAS:
            raise StreamError(StreamCondition.INVALID_NAMESPACE, "stanzas must be in jabber:client")
        else:
            raise self._unexpected(element)

    # -- helpers -------------------------------------------------------------------------------
    def _restart_stream(self) -> None:
        self._restart()
        self._send_header()
        self._to(C2SClientState.WAIT_HEADER)

    def _give_up(self, reason: str) -> None:
        self._events.append(ev.NegotiationFailed(reason=reason))
        self.close()

    def _unexpected(self, element: Element) -> StreamError:
        return StreamError(StreamCondition.UNSUPPORTED_STANZA_TYPE,
                           f"<{element.name}/> is not expected in {self.state.value}")

    def _expect(self, state: C2SClientState) -> None:
        expect_state(self.state, state)

    def _to(self, state: C2SClientState) -> None:
        self.state = checked_move(self.state, state, CLIENT_TRANSITIONS)

    def _finish(self, err: StreamError | None, *, by_peer: bool) -> None:
        super()._finish(err, by_peer=by_peer)
        self._to(C2SClientState.CLOSED)

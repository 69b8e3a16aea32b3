"""RFC 6120 §4–§6, XEP-0220, XEP-0178 and XEP-0288: the receiving side of a server-to-server stream, sans I/O.

A peer server connects to us to deliver its users' stanzas.  After STARTTLS (RFC 6120 §5) it
authenticates either with SASL EXTERNAL and its certificate (§6, XEP-0178) or with Server
Dialback (XEP-0220), one domain pair at a time and several pairs per stream (multiplexing);
XEP-0288 lets it ask us to send our own stanzas back over the same connection.  Dialback keys
awaiting a verdict, and the ``<db:verify/>`` questions any stream may bring us as an
authoritative server, are kept and answered by ``s2s_in_dialback.DialbackReceiver``.  Every
stanza is checked against the pairs authenticated so far (§4.9.3.9, §4.9.3.7) and handed on
in ``jabber:client`` (§4.8.3).

Feed it bytes with ``receive_data``; read ``pop_events`` and ``data_to_send``; answer
``TlsRequested`` with ``tls_established`` and ``DialbackKeyReceived`` with
``dialback_verified`` or ``dialback_failed``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping

from ..stanza.errors import (Condition, ProtocolUsageError, SaslCondition, SaslFailure, StreamCondition,
                             StreamError)
from ..xml.element import Element
from ..xml.namespaces import NS_BIDI, NS_CLIENT, NS_DIALBACK, NS_SASL, NS_SERVER, NS_TLS
from ..xml.parser import StreamHeader
from ..xml.serializer import serialize_dialback
from . import events as ev
from .s2s_header import (check_server_header, check_stanza_addresses, domain_of, external_authzid,
                         receiving_features, requested_local_domain, response_header_attrs)
from .s2s_in_dialback import DialbackReceiver
from .stream import XmlStream, checked_move, expect_state

__all__ = ["TRANSITIONS", "S2SInState", "S2SIncoming"]

_STANZAS = frozenset({"message", "presence", "iq"})
_MAX_SASL_FAILURES = 3  # RFC 6120 §6.4.5: a reasonable number of retries, then the stream ends


class S2SInState(enum.Enum):
    """Where an incoming server-to-server stream stands."""

    WAIT_HEADER = "wait-header"      # expecting <stream:stream> (initially and after a restart)
    NEGOTIATING = "negotiating"      # features sent; no domain pair authenticated yet
    TLS_PENDING = "tls-pending"      # <proceed/> sent; the transport is handshaking
    SASL_PENDING = "sasl-pending"    # EXTERNAL without initial response: our empty challenge is out
    AUTHENTICATED = "authenticated"  # at least one pair: stanzas flow, more pairs may join
    CLOSED = "closed"


_S = S2SInState
# Allowed transitions; tests read this table (STYLE rule 2).
TRANSITIONS: Mapping[S2SInState, frozenset[S2SInState]] = {
    _S.WAIT_HEADER: frozenset({_S.NEGOTIATING, _S.AUTHENTICATED, _S.CLOSED}),
    _S.NEGOTIATING: frozenset({_S.TLS_PENDING, _S.SASL_PENDING, _S.WAIT_HEADER, _S.AUTHENTICATED, _S.CLOSED}),
    _S.TLS_PENDING: frozenset({_S.WAIT_HEADER, _S.CLOSED}),
    _S.SASL_PENDING: frozenset({_S.NEGOTIATING, _S.WAIT_HEADER, _S.AUTHENTICATED, _S.CLOSED}),
    _S.AUTHENTICATED: frozenset({_S.CLOSED}),
    _S.CLOSED: frozenset(),
}


def _no_certificate(_domain: str) -> bool:
    return False


class S2SIncoming(XmlStream):
    """The receiving server of one inbound server-to-server connection."""

    content_ns = NS_SERVER
    declares_dialback = True  # XEP-0220 §2.4.1: xmlns:db in our header says we speak dialback

    def __init__(
        self, *, domains: Callable[[str], bool], id_factory: Callable[[], str], now: float,
        dialback_secret: bytes, tls_available: bool = True, tls_required: bool = True,
        tls_active: bool = False, peer_certificate_valid_for: Callable[[str], bool] | None = None,
        dialback: bool = True, require_valid_certificate: bool = False, bidi: bool = True,
        max_stanza_size: int = 262144, auth_timeout: float = 30.0, idle_timeout: float = 600.0,
    ) -> None:
        """``tls_active`` and ``peer_certificate_valid_for`` describe direct TLS (XEP-0368);
        ``require_valid_certificate`` leaves SASL EXTERNAL as the only way in."""
        super().__init__(max_stanza_size=max_stanza_size)
        self._is_hosted = domains
        self._new_id = id_factory
        self._tls_available = tls_available
        self._tls_required = tls_required
        self._tls_active = tls_active
        self._cert_valid_for = peer_certificate_valid_for or _no_certificate
        self._dialback_allowed = dialback and not require_valid_certificate
        self._bidi_offered = bidi
        self._auth_deadline = now + auth_timeout
        self._idle_timeout = idle_timeout
        self._now = now
        self._last_stanza = now
        self._stanza_sent = False  # since the idle timer last looked (send_stanza has no clock)
        self.state = S2SInState.WAIT_HEADER
        self.stream_id = ""
        self.local_domain = ""  # the hosted domain the peer's header asked for
        self.peer_domain = ""   # the peer header's 'from' ("" when it gave none)
        self._bidi = False
        self._pairs: set[tuple[str, str]] = set()       # (remote, local) authenticated
        self._dialback = DialbackReceiver(secret=dialback_secret, is_hosted=domains,
                                          allowed=self._dialback_allowed, tls_required=tls_required)
        self._sasl_identity = ""
        self._sasl_failures = 0

    # -- what the runtime reads ------------------------------------------------------------------
    @property
    def authenticated_pairs(self) -> frozenset[tuple[str, str]]:
        """``(remote, local)`` domain pairs the peer may send stanzas for."""
        return frozenset(self._pairs)

    @property
    def bidi_negotiated(self) -> bool:
        """XEP-0288: the peer asked us to send our stanzas over this connection too."""
        return self._bidi

    # -- answers from the runtime ----------------------------------------------------------------
    def tls_established(self, *, peer_certificate_valid_for: Callable[[str], bool]) -> None:
        """TLS is up (RFC 6120 §5.4.3.3); the callable tells which domains the peer's
        certificate is valid for.  The peer restarts the stream next."""
        self._expect(S2SInState.TLS_PENDING)
        self._tls_active = True
        self._cert_valid_for = peer_certificate_valid_for
        self._restart()
        self._to(S2SInState.WAIT_HEADER)

    def dialback_verified(self, originating: str, receiving: str, valid: bool) -> None:
        """Answer ``DialbackKeyReceived`` with the authoritative server's verdict (XEP-0220 §2.2.1)."""
        answer = None if self._closed else self._dialback.verdict(
            originating, receiving, valid=valid, others_verified=bool(self._pairs))
        if answer is None:
            return
        self._send(answer)
        if valid:
            if self.state is S2SInState.NEGOTIATING:
                self._to(S2SInState.AUTHENTICATED)
            self._authorize(remote=originating, local=receiving, method="dialback")
        elif not self._pairs:
            # XEP-0220 §2.2.1: the peer tried to spoof the domain; "MUST close the XML stream".
            self.close()

    def dialback_failed(self, originating: str, receiving: str, condition: Condition) -> None:
        """The key could not be checked (authoritative server unreachable...): a dialback error,
        which leaves the stream open (XEP-0220 §2.5)."""
        answer = None if self._closed else self._dialback.failure(originating, receiving, condition)
        if answer is not None:
            self._send(answer)

    def send_stanza(self, stanza: Element) -> None:
        """Send a ``jabber:client`` stanza to the peer over its own connection (XEP-0288 §2.2).

        Only with bidi negotiated, and only from a local domain to a remote one that form an
        authenticated pair (the reverse of the pair the peer was authenticated for).
        """
        if self._closed:
            return
        if self.state not in (S2SInState.AUTHENTICATED, S2SInState.SASL_PENDING) or not self._bidi:
            raise ProtocolUsageError("stanzas go out on this stream only once bidi is negotiated and authenticated")
        pair = (domain_of(stanza.get("to")), domain_of(stanza.get("from")))
        if pair not in self._pairs:
            raise ProtocolUsageError(f"{pair[1]} -> {pair[0]} is not an authenticated pair on this stream")
        self._stanza_sent = True
        self._send(stanza.renamespaced(NS_CLIENT, NS_SERVER))

    def connection_lost(self) -> None:
        super().connection_lost()
        self.state = S2SInState.CLOSED

    # -- timers --------------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        """When ``handle_timer`` should next run, or None."""
        if self._closed:
            return None
        if not self._pairs:
            return self._auth_deadline
        if self._idle_timeout > 0:
            return self._last_stanza + self._idle_timeout
        return None

    def handle_timer(self, now: float) -> None:
        """The authentication timeout, then the idle timeout (a clean close)."""
        self._now = now
        if self._closed:
            return
        if not self._pairs:
            if now >= self._auth_deadline:
                self.close(StreamCondition.CONNECTION_TIMEOUT, "authentication took too long")
            return
        if self._idle_timeout <= 0 or now < self._last_stanza + self._idle_timeout:
            return
        if self._stanza_sent:
            # We sent stanzas since the last look without knowing when: count them as now.
            self._stanza_sent = False
            self._last_stanza = now
            return
        self.close()

    # -- stream handling -----------------------------------------------------------------------
    def _on_input(self, now: float) -> None:
        self._now = now

    def _header_attrs(self) -> dict[str, str]:
        return response_header_attrs(
            stream_id=self.stream_id or self._new_stream_id(), local=self.local_domain, peer=self.peer_domain)

    def _new_stream_id(self) -> str:
        self.stream_id = self._new_id()
        return self.stream_id

    def _on_header(self, header: StreamHeader) -> None:
        if self.state is not S2SInState.WAIT_HEADER:
            raise StreamError(StreamCondition.NOT_WELL_FORMED, "unexpected stream header")
        # RFC 6120 §4.7.3: a fresh id for every response header, restarts included.
        self._new_stream_id()
        # The local domain comes first so that even an error header says who we are (§4.9.1.2).
        self.local_domain = requested_local_domain(header, current=self.local_domain, is_hosted=self._is_hosted)
        self.peer_domain = check_server_header(header, local=self.local_domain, peer=self.peer_domain)
        self._send_header()
        self._events.append(ev.StreamOpened(
            to=self.local_domain, from_=self.peer_domain or None, version=header.attrs.get("version", "")))
        self._send(self._features())
        if self._sasl_identity:
            # RFC 6120 §6.4.6: authenticated once the peer restarted after <success/>.
            self._to(S2SInState.AUTHENTICATED)
            self._authorize(remote=self._sasl_identity, local=self.local_domain, method="EXTERNAL")
        else:
            self._to(S2SInState.NEGOTIATING)

    def _features(self) -> Element:
        external = (self._tls_active and not self._sasl_identity and bool(self.peer_domain)
                    and self._cert_valid_for(self.peer_domain))
        return receiving_features(
            after_sasl=bool(self._sasl_identity), tls_available=self._tls_available,
            tls_required=self._tls_required, tls_active=self._tls_active, external=external,
            dialback=self._dialback_allowed, bidi=self._bidi_offered)

    def _on_element(self, element: Element) -> None:
        if self._is_stream_error(element):
            self._peer_stream_error(element)
        elif self.state is S2SInState.SASL_PENDING:
            self._on_sasl_response(element)
        elif self.state in (S2SInState.NEGOTIATING, S2SInState.AUTHENTICATED):
            self._on_open_element(element)
        else:
            # TLS_PENDING: nothing sent in the clear after <starttls/> may count as protected.
            raise StreamError(StreamCondition.POLICY_VIOLATION, f"unexpected <{element.name}/> in {self.state.value}")

    def _on_open_element(self, element: Element) -> None:
        ns, name = element.ns, element.name
        if name in _STANZAS:
            if ns != NS_SERVER:
                raise StreamError(StreamCondition.INVALID_NAMESPACE, "stanzas between servers are in jabber:server")
            self._on_stanza(element)
        elif ns == NS_DIALBACK and name in ("result", "verify"):
            self._on_dialback(element)
        elif ns == NS_TLS and name == "starttls":
            self._on_starttls()
        elif self._tls_required and not self._tls_active:
            raise StreamError(StreamCondition.POLICY_VIOLATION, "STARTTLS first")  # RFC 6120 §5.3.1
        elif ns == NS_SASL:
            self._on_sasl(element)
        elif ns == NS_BIDI and name == "bidi" and self._bidi_offered:
            self._on_bidi()
        else:
            raise StreamError(StreamCondition.UNSUPPORTED_STANZA_TYPE, f"<{name}/> is not expected here")

    # -- STARTTLS (RFC 6120 §5) and bidi (XEP-0288) ----------------------------------------------
    def _on_starttls(self) -> None:
        if self.state is S2SInState.AUTHENTICATED or not self._tls_available or self._tls_active:
            # RFC 6120 §5.4.2.2: <failure/>, then close the stream.
            self._send(Element("failure", NS_TLS))
            self.close()
            return
        self._send(Element("proceed", NS_TLS))
        # RFC 6120 §5.4.3.3: what the peer said before TLS is forgotten.
        self._dialback.forget_pending()
        self._bidi = False
        self._to(S2SInState.TLS_PENDING)
        self._events.append(ev.TlsRequested())

    def _on_bidi(self) -> None:
        if self._bidi:
            return
        if self._pairs:
            # XEP-0288 §2.2: asked before authenticating, so every PeerAuthenticated tells.
            raise StreamError(StreamCondition.POLICY_VIOLATION, "bidi must be requested before authentication")
        self._bidi = True

    # -- SASL EXTERNAL (RFC 6120 §6, XEP-0178 §3) ------------------------------------------------
    def _on_sasl(self, element: Element) -> None:
        if self.state is S2SInState.AUTHENTICATED:
            raise StreamError(StreamCondition.POLICY_VIOLATION, "already authenticated")
        if element.name == "auth":
            if element.get("mechanism") != "EXTERNAL":
                self._sasl_failed(SaslCondition.INVALID_MECHANISM)
            elif not element.text.strip():
                # RFC 6120 §6.4.2: no initial response at all; ask for it with an empty challenge.
                self._send(Element("challenge", NS_SASL, text="="))
                self._to(S2SInState.SASL_PENDING)
            else:
                self._external(element.text)
        elif element.name == "abort":
            self._sasl_failed(SaslCondition.ABORTED)
        else:
            self._sasl_failed(SaslCondition.MALFORMED_REQUEST)  # a response with no exchange under way

    def _on_sasl_response(self, element: Element) -> None:
        if element.ns == NS_SASL and element.name == "response":
            self._external(element.text)
        elif element.ns == NS_SASL and element.name == "abort":
            self._sasl_failed(SaslCondition.ABORTED)
        else:
            raise StreamError(StreamCondition.POLICY_VIOLATION, f"<{element.name}/> during SASL")

    def _external(self, payload: str) -> None:
        try:
            identity = external_authzid(payload, peer_domain=self.peer_domain)
            if not (self._tls_active and self._cert_valid_for(identity)):
                raise SaslFailure(SaslCondition.NOT_AUTHORIZED)  # XEP-0178 §3
        except SaslFailure as failure:
            self._sasl_failed(failure.condition)
            return
        self._send(Element("success", NS_SASL))
        # RFC 6120 §6.4.6: a restart follows; the pair is authorized once it happened.
        self._sasl_identity = identity
        self._dialback.forget_pending()
        self._restart()
        self._to(S2SInState.WAIT_HEADER)

    def _sasl_failed(self, condition: SaslCondition) -> None:
        self._send(SaslFailure(condition).to_element())
        self._sasl_failures += 1
        self._to(S2SInState.AUTHENTICATED if self._pairs else S2SInState.NEGOTIATING)
        if not self._dialback_allowed:
            # XEP-0178 §3: close, unless Server Dialback can still authenticate the peer.
            self.close()
        elif self._sasl_failures >= _MAX_SASL_FAILURES:
            self.close(StreamCondition.POLICY_VIOLATION, "too many failed authentication attempts")

    # -- Server Dialback (XEP-0220 §2.2, in s2s_in_dialback.py) ---------------------------------
    def _on_dialback(self, element: Element) -> None:
        outcome: Element | ev.DialbackKeyReceived | None
        if element.name == "verify":
            outcome = self._dialback.on_verify(element)
        else:
            outcome = self._dialback.on_result(element, stream_id=self.stream_id, tls_active=self._tls_active,
                                               verified=self._pairs)
        if isinstance(outcome, Element):
            self._send(outcome)  # an answer, or a refusal
        elif outcome is not None:
            self._events.append(outcome)  # a key for the runtime to check

    # -- stanzas (RFC 6120 §8, §4.9.3) -----------------------------------------------------------
    def _on_stanza(self, element: Element) -> None:
        if self.state is not S2SInState.AUTHENTICATED:
            raise StreamError(StreamCondition.NOT_AUTHORIZED)  # §4.9.3.12
        check_stanza_addresses(element, is_hosted=self._is_hosted, authenticated=self._pairs)
        self._last_stanza = self._now
        self._events.append(ev.StanzaReceived(stanza=element.renamespaced(NS_SERVER, NS_CLIENT)))

    # -- helpers -------------------------------------------------------------------------------
    def _authorize(self, *, remote: str, local: str, method: str) -> None:
        if not self._pairs:
            self._last_stanza = self._now  # the idle clock starts with the first pair
        self._pairs.add((remote, local))
        self._events.append(ev.PeerAuthenticated(local=local, remote=remote, method=method, bidi=self._bidi))

    def _send(self, element: Element) -> None:
        if element.ns == NS_DIALBACK:
            # The stream's own dialback elements take the db: prefix our header declares.
            self._send_raw(serialize_dialback(element, self.content_ns))
        else:
            super()._send(element)

    def _expect(self, state: S2SInState) -> None:
        expect_state(self.state, state)

    def _to(self, state: S2SInState) -> None:
        self.state = checked_move(self.state, state, TRANSITIONS)

    def _finish(self, err: StreamError | None, *, by_peer: bool) -> None:
        super()._finish(err, by_peer=by_peer)
        self.state = S2SInState.CLOSED

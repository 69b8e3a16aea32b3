"""RFC 6120 §4–§6, XEP-0220, XEP-0178, XEP-0288: the initiating side of a server-to-server stream.

One stream from ``local`` to ``remote``, sans I/O: STARTTLS (RFC 6120 §5), then SASL EXTERNAL
(XEP-0178) when offered, else a Server Dialback key (XEP-0220 §2.1.1, XEP-0185); XEP-0288 bidi
when the peer's certificate is valid for ``remote``.  The stream also carries our ``<db:verify/>``
questions to ``remote`` as an authoritative server (XEP-0220 §2.1.2; see :mod:`.s2s_out_verify`).
Drive it like ``C2SClient``; answer ``TlsProceed`` with ``tls_established``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping

from ..jid import JID, InvalidJID
from ..stanza.errors import Condition, ProtocolUsageError, StreamCondition, StreamError
from ..xml.element import Element
from ..xml.namespaces import (NS_BIDI, NS_BIDI_FEATURE, NS_CLIENT, NS_DIALBACK, NS_DIALBACK_FEATURE, NS_SASL,
                              NS_SERVER, NS_STREAMS, NS_TLS, NS_XML)
from ..xml.parser import StreamHeader
from ..xml.serializer import serialize_dialback
from . import events as ev
from .dialback import dialback_error_condition, dialback_key, result_element, verify_element
from .s2s_out_verify import MAX_PENDING_VERIFICATIONS, VerificationRequests, VerificationUpdate
from .stream import XmlStream, checked_move, expect_state

__all__ = ["S2SOutgoing", "S2SOutState", "OUT_TRANSITIONS", "MAX_PENDING_VERIFICATIONS"]

_STANZAS = frozenset({"message", "presence", "iq"})


class S2SOutState(enum.Enum):
    """Where the outgoing stream stands in negotiation."""

    IDLE = "idle"                      # start() not called yet
    WAIT_HEADER = "wait-header"        # our header is sent (initially or after a restart)
    WAIT_FEATURES = "wait-features"    # the peer's header arrived; <stream:features> next
    TLS_REQUESTED = "tls-requested"    # <starttls/> sent; <proceed/> or <failure/> next
    TLS_HANDSHAKE = "tls-handshake"    # the transport is handshaking
    AUTHENTICATING = "authenticating"  # <auth mechanism='EXTERNAL'/> sent
    DIALBACK = "dialback"              # our <db:result/> key is out; the verdict comes next
    READY = "ready"                    # authenticated: stanzas flow local -> remote
    DRAINING = "draining"              # authentication failed; waiting for verify answers
    CLOSED = "closed"


_S = S2SOutState
# Allowed transitions; tests read this table (STYLE rule 2).
OUT_TRANSITIONS: Mapping[S2SOutState, frozenset[S2SOutState]] = {
    _S.IDLE: frozenset({_S.WAIT_HEADER, _S.CLOSED}),
    _S.WAIT_HEADER: frozenset({_S.WAIT_FEATURES, _S.CLOSED}),
    _S.WAIT_FEATURES: frozenset({_S.TLS_REQUESTED, _S.AUTHENTICATING, _S.DIALBACK, _S.READY, _S.CLOSED}),
    _S.TLS_REQUESTED: frozenset({_S.TLS_HANDSHAKE, _S.CLOSED}),
    _S.TLS_HANDSHAKE: frozenset({_S.WAIT_HEADER, _S.CLOSED}),
    _S.AUTHENTICATING: frozenset({_S.WAIT_HEADER, _S.DIALBACK, _S.CLOSED}),
    _S.DIALBACK: frozenset({_S.READY, _S.DRAINING, _S.CLOSED}),
    _S.READY: frozenset({_S.CLOSED}),
    _S.DRAINING: frozenset({_S.CLOSED}),
    _S.CLOSED: frozenset(),
}


def _never(domain: str) -> bool:
    return False


class S2SOutgoing(XmlStream):
    """The initiating server of one connection, for traffic ``local`` -> ``remote``."""

    content_ns = NS_SERVER
    declares_dialback = True  # XEP-0220 §2.4.1: the xmlns:db declaration announces dialback

    def __init__(
        self, *, local: str, remote: str, now: float, dialback_secret: bytes,
        tls_required: bool = True, tls_active: bool = False,
        peer_certificate_valid_for: Callable[[str], bool] | None = None,
        can_use_external: bool = True, dialback: bool = True, require_valid_certificate: bool = False,
        bidi: bool = True, max_stanza_size: int = 262144, auth_timeout: float = 30.0,
        idle_timeout: float = 600.0,
    ) -> None:
        """``tls_active`` and ``peer_certificate_valid_for`` describe direct TLS (XEP-0368)."""
        super().__init__(max_stanza_size=max_stanza_size)
        self.local = local
        self.remote = remote
        self._secret = dialback_secret
        self._tls_required = tls_required
        self._tls_active = tls_active
        self._cert_valid_for = peer_certificate_valid_for if tls_active and peer_certificate_valid_for else _never
        self._can_use_external = can_use_external
        self._dialback = dialback
        self._require_cert = require_valid_certificate
        self._bidi = bidi
        self._deadline = now + auth_timeout
        self._idle_timeout = idle_timeout
        self._now = now                      # the latest clock reading we were given
        self._last_activity = now            # when an element last arrived
        self._sent_since_check = False       # send_stanza was used since the idle timer last ran
        self.state = S2SOutState.IDLE
        self.stream_id = ""
        self.bidi_negotiated = False
        self._authenticated = False          # SASL EXTERNAL succeeded; features after the restart
        self._peer_dialback = False          # the peer's header or features announce dialback
        self._verifications = VerificationRequests(local=local, remote=remote)

    # -- calls from the runtime ----------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True once ``local`` is authenticated: ``send_stanza`` may be used."""
        return self.state is S2SOutState.READY

    def start(self) -> None:
        """Open the stream (RFC 6120 §4.2)."""
        self._expect(S2SOutState.IDLE)
        self._send_header()
        self._to(S2SOutState.WAIT_HEADER)

    def tls_established(self, *, peer_certificate_valid_for: Callable[[str], bool]) -> None:
        """TLS is up; ``peer_certificate_valid_for(domain)`` tells whether the peer's certificate
        chain verified and names ``domain`` (RFC 6125).  The stream restarts (RFC 6120 §5.4.3.3)."""
        self._expect(S2SOutState.TLS_HANDSHAKE)
        self._tls_active = True
        self._cert_valid_for = peer_certificate_valid_for
        self._restart_stream()

    def send_stanza(self, stanza: Element) -> None:
        """Send a ``jabber:client`` stanza from ``local`` to ``remote`` (written as ``jabber:server``)."""
        self._expect(S2SOutState.READY)
        if _domain(stanza.get("from")) != self.local or _domain(stanza.get("to")) != self.remote:
            # The peer would end the stream with invalid-from/host-unknown (RFC 6120 §4.9.3).
            raise ProtocolUsageError(f"this stream carries stanzas {self.local} -> {self.remote} only")
        self._sent_since_check = True
        self._send(stanza.renamespaced(NS_CLIENT, NS_SERVER))  # RFC 6120 §4.8.3

    def request_verification(self, *, stream_id: str, key: str) -> None:
        """Ask ``remote`` (XEP-0220 §2.1.2) whether ``key`` is its key for ``remote`` -> ``local`` on
        our incoming stream ``stream_id``; sent once the stream allows, ``DialbackVerifyResult`` answers."""
        if self._closed:
            raise ProtocolUsageError("the stream is closed")
        self._apply_verifications(self._verifications.request(stream_id=stream_id, key=key))

    def connection_lost(self) -> None:
        if not self._closed:
            self._apply_verifications(self._verifications.fail_all())
        super().connection_lost()
        self._to(S2SOutState.CLOSED)

    # -- timers --------------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        """When ``handle_timer`` should next run, or None."""
        if self._closed:
            return None
        if self.state is not S2SOutState.READY:
            return self._deadline
        return self._last_activity + self._idle_timeout if self._idle_timeout > 0 else None

    def handle_timer(self, now: float) -> None:
        """The authentication timeout, then closing an idle stream cleanly."""
        if self._closed:
            return
        self._now = max(self._now, now)
        if self.state is S2SOutState.READY:
            if self._idle_timeout > 0 and now >= self._last_activity + self._idle_timeout:
                if not self._sent_since_check:
                    self.close()
                # We sent without a clock reading: count the stream busy until now.
                self._last_activity, self._sent_since_check = now, False
        elif now >= self._deadline:
            if self.state is not S2SOutState.DRAINING:  # there it has been reported already
                self._events.append(ev.NegotiationFailed(reason="timeout"))
            self.close(StreamCondition.CONNECTION_TIMEOUT, "stream negotiation took too long")

    # -- stream handling -----------------------------------------------------------------------
    def _on_input(self, now: float) -> None:
        self._now = max(self._now, now)

    def _header_attrs(self) -> dict[str, str]:
        return {"from": self.local, "to": self.remote, "version": "1.0", f"{{{NS_XML}}}lang": "en"}

    def _send(self, element: Element) -> None:
        if element.ns == NS_DIALBACK:
            # XEP-0220 §2: dialback elements carry the prefix our header declared.
            self._send_raw(serialize_dialback(element, self.content_ns))
        else:
            super()._send(element)

    def _on_header(self, header: StreamHeader) -> None:
        if self.state is S2SOutState.IDLE:
            raise ProtocolUsageError("call start() before feeding data")
        if self.state is not S2SOutState.WAIT_HEADER:
            raise StreamError(StreamCondition.NOT_WELL_FORMED, "unexpected stream header")
        if header.name != "stream" or header.ns != NS_STREAMS or header.namespaces.get("") != NS_SERVER:
            raise StreamError(StreamCondition.INVALID_NAMESPACE)
        major, _, minor = header.attrs.get("version", "").partition(".")
        if not (major.isdigit() and minor.isdigit()) or int(major) != 1:
            # RFC 6120 §4.7.5: without version 1.x there are no stream features to negotiate.
            raise StreamError(StreamCondition.UNSUPPORTED_VERSION)
        self.stream_id = header.attrs.get("id", "")
        # XEP-0220 §2.4.1: declaring the dialback namespace is how a server announces dialback.
        self._peer_dialback = NS_DIALBACK in header.namespaces.values()
        self._to(S2SOutState.WAIT_FEATURES)

    def _on_element(self, element: Element) -> None:
        if self._is_stream_error(element):
            self._peer_stream_error(element)
            return
        self._last_activity = self._now
        if element.ns == NS_DIALBACK:
            self._on_dialback(element)
            return
        handler = {
            S2SOutState.WAIT_FEATURES: self._on_features,
            S2SOutState.TLS_REQUESTED: self._on_tls_answer,
            S2SOutState.AUTHENTICATING: self._on_sasl,
            S2SOutState.DIALBACK: self._on_stanza,
            S2SOutState.READY: self._on_stanza,
            S2SOutState.DRAINING: self._on_stanza,
        }.get(self.state)
        if handler is None:
            # WAIT_HEADER and TLS_HANDSHAKE expect nothing from the peer.
            raise self._unexpected(element)
        handler(element)

    def _on_features(self, features: Element) -> None:
        if features.ns != NS_STREAMS or features.name != "features":
            raise self._unexpected(features)
        self._peer_dialback = self._peer_dialback or features.find("dialback", NS_DIALBACK_FEATURE) is not None
        self._events.append(ev.FeaturesReceived(features=features))
        if self._authenticated:
            self._become_ready("EXTERNAL")
            return
        if not self._tls_active:
            if features.find("starttls", NS_TLS) is not None:
                self._send(Element("starttls", NS_TLS))
                self._to(S2SOutState.TLS_REQUESTED)
                return
            if self._tls_required:
                self._give_up("TLS is required but the peer does not offer it")
                return
        self._authenticate(features)

    def _on_tls_answer(self, element: Element) -> None:
        if element.ns == NS_TLS and element.name == "proceed":
            self._to(S2SOutState.TLS_HANDSHAKE)
            self._events.append(ev.TlsProceed())
        elif element.ns == NS_TLS and element.name == "failure":
            self._give_up("the peer refused STARTTLS")  # RFC 6120 §5.4.2.2: it closes too
        else:
            raise self._unexpected(element)

    # -- authentication (RFC 6120 §6, XEP-0178, XEP-0220, XEP-0288) -----------------------------
    def _authenticate(self, features: Element) -> None:
        certified = self._cert_valid_for(self.remote)
        if self._require_cert and not certified:
            self._give_up(f"the peer's certificate is not valid for {self.remote}")
            return
        if self._bidi and certified and features.find("bidi", NS_BIDI_FEATURE) is not None:
            # XEP-0288 §2.2: before SASL or dialback.  Only with a certificate valid for the
            # remote domain: it is what authenticates the stanzas that will come back.
            self._send(Element("bidi", NS_BIDI))
            self.bidi_negotiated = True
        mechanisms = features.find("mechanisms", NS_SASL)
        offered = [m.text.strip() for m in mechanisms.findall("mechanism")] if mechanisms is not None else []
        if self._can_use_external and self._tls_active and "EXTERNAL" in offered:
            # XEP-0178 §3 / RFC 6120 §6.3.8: no authorization identity ("="); the peer takes
            # the one our header's 'from' names.
            self._send(Element("auth", NS_SASL, {"mechanism": "EXTERNAL"}, text="="))
            self._to(S2SOutState.AUTHENTICATING)
            return
        self._start_dialback("the peer offers no usable authentication")

    def _on_sasl(self, element: Element) -> None:
        if element.ns != NS_SASL or element.name not in ("success", "failure", "challenge"):
            raise self._unexpected(element)
        if element.name == "challenge":
            # EXTERNAL has nothing to say after our initial response: give up on it; the
            # peer answers the abort with <failure/>, which leads to dialback (RFC 6120 §6.4.4).
            self._send(Element("abort", NS_SASL))
        elif element.name == "failure":
            self._start_dialback("SASL EXTERNAL failed")
        else:
            self._authenticated = True
            self._restart_stream()  # RFC 6120 §6.4.6

    def _start_dialback(self, why: str) -> None:
        if not (self._dialback and not self._require_cert and self._peer_dialback):
            self._give_up(f"{why} and dialback is not possible")
            return
        key = dialback_key(self._secret, receiving=self.remote, originating=self.local, stream_id=self.stream_id)
        self._send(result_element(from_=self.local, to=self.remote, key=key))  # XEP-0220 §2.1.1
        self._to(S2SOutState.DIALBACK)
        # Past TLS and SASL: no stream restart can lose the answers to <db:verify/> now.
        self._apply_verifications(self._verifications.allow(peer_dialback=self._peer_dialback))

    def _on_dialback(self, element: Element) -> None:
        kind = element.get("type")
        if element.name not in ("result", "verify") or (kind is None and not self.bidi_negotiated):
            # XEP-0220 §2.2: untyped requests travel towards the receiving entity only.
            raise self._unexpected(element)
        if kind is None:
            self._refuse_dialback_request(element)
        elif element.name == "result":
            self._on_result(element, kind)
        else:
            answered = self._verifications.answer(element, kind)
            self._apply_verifications(answered)
            if answered.results and self.state is S2SOutState.DRAINING and not self._verifications.awaiting_answers:
                self.close()  # the last answer we waited for

    def _refuse_dialback_request(self, element: Element) -> None:
        # XEP-0288 §2.2 lets the peer try dialback back over a bidi stream; we do not take it,
        # and say so with a dialback error rather than ending the stream (XEP-0220 §2.5).
        from_, to, refusal = element.get("to") or "", element.get("from") or "", Condition.FEATURE_NOT_IMPLEMENTED
        self._send(result_element(from_=from_, to=to, error=refusal) if element.name == "result" else
                   verify_element(from_=from_, to=to, stream_id=element.get("id") or "", error=refusal))

    def _on_result(self, element: Element, kind: str) -> None:
        if (self.state is not S2SOutState.DIALBACK or element.get("from") != self.remote
                or element.get("to") != self.local):
            # XEP-0220 §3.1, XEP-0288 §4: only the answer to our own request counts.
            return
        if kind == "valid":
            self._become_ready("dialback")
        elif kind == "invalid":
            self._give_up(f"{self.remote} found our dialback key invalid")
        else:
            self._give_up(f"dialback error: {dialback_error_condition(element).value}")

    def _become_ready(self, method: str) -> None:
        self._to(S2SOutState.READY)
        self._events.append(ev.PeerAuthenticated(
            local=self.local, remote=self.remote, method=method, bidi=self.bidi_negotiated))
        self._apply_verifications(self._verifications.allow(peer_dialback=self._peer_dialback))

    # -- verification requests (XEP-0220 §2.1.2, kept by s2s_out_verify) ---------------------------
    def _apply_verifications(self, update: VerificationUpdate) -> None:
        for element in update.to_send:
            self._send(element)
            self._sent_since_check = True
        self._events.extend(update.results)

    # -- stanzas from the peer (XEP-0288) ----------------------------------------------------------
    def _on_stanza(self, element: Element) -> None:
        if element.name not in _STANZAS:
            raise self._unexpected(element)
        if element.ns != NS_SERVER:
            raise StreamError(StreamCondition.INVALID_NAMESPACE, "stanzas must be in jabber:server")
        if not (self.bidi_negotiated and self.state is S2SOutState.READY):
            # RFC 6120 §4.9.3.12: this direction of our stream is not authenticated (no
            # XEP-0288 bidi, or not yet: §2.2 of it bars stanzas before authentication).
            raise StreamError(StreamCondition.NOT_AUTHORIZED, "this stream carries no stanzas to us")
        sender, recipient = _domain(element.get("from")), _domain(element.get("to"))
        if sender is None or recipient is None:
            raise StreamError(StreamCondition.IMPROPER_ADDRESSING, "stanzas between servers need 'from' and 'to'")
        if sender != self.remote:
            raise StreamError(StreamCondition.INVALID_FROM, f"this stream is authenticated for {self.remote}")
        if recipient != self.local:
            raise StreamError(StreamCondition.HOST_UNKNOWN, f"this stream serves {self.local}")
        self._events.append(ev.StanzaReceived(stanza=element.renamespaced(NS_SERVER, NS_CLIENT)))

    # -- helpers -------------------------------------------------------------------------------
    def _restart_stream(self) -> None:
        self._restart()
        self._send_header()
        self._to(S2SOutState.WAIT_HEADER)

    def _give_up(self, reason: str) -> None:
        self._events.append(ev.NegotiationFailed(reason=reason))
        if self.state is S2SOutState.DIALBACK and self._verifications.awaiting_answers:
            # XEP-0220 §2.5: a dialback error leaves the stream up; let the peer answer the
            # verification requests already out, then close.
            self._to(S2SOutState.DRAINING)
            return
        self.close()

    def _unexpected(self, element: Element) -> StreamError:
        return StreamError(StreamCondition.UNSUPPORTED_STANZA_TYPE,
                           f"<{element.name}/> is not expected in {self.state.value}")

    def _expect(self, state: S2SOutState) -> None:
        expect_state(self.state, state)

    def _to(self, state: S2SOutState) -> None:
        self.state = checked_move(self.state, state, OUT_TRANSITIONS)

    def _finish(self, err: StreamError | None, *, by_peer: bool) -> None:
        if not self._closed:
            self._apply_verifications(self._verifications.fail_all())
        super()._finish(err, by_peer=by_peer)
        self._to(S2SOutState.CLOSED)


def _domain(address: str | None) -> str | None:
    """The domainpart of ``address``, or None when it is absent or no JID (RFC 7622)."""
    try:
        return JID.parse(address).domain if address else None
    except InvalidJID:
        return None

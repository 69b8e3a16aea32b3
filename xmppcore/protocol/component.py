"""XEP-0114: Jabber Component Protocol — the server side of a ``jabber:component:accept`` stream, sans I/O.

An external component connects to us, names its own domain in the header's 'to' (§3: "the
component name, not the server name"), proves it knows that domain's shared secret with
``<handshake>hex(SHA-1(stream id + secret))</handshake>`` and then exchanges stanzas with the
server.  There is no TLS, SASL, version or stream features on such a stream (XEP-0114 is a
historical protocol; the component is trusted once the handshake is right).

Every stanza the component sends must carry 'from' and 'to' (§3, as in ``jabber:server``); the
domainpart of 'from' must be the component's domain, but any JID at that domain is allowed.
Stanzas are handed on in ``jabber:client`` and written back in ``jabber:component:accept``
(RFC 6120 §4.8.3 rewriting at the stream boundary).

Feed it bytes with ``receive_data``; read ``pop_events`` and ``data_to_send``; arm a timer
with ``get_timer`` and call ``handle_timer``.  The runtime decides two things through the
callables given to the constructor: which domains are components with which secret
(``secret_for``) and whether an authenticated component may take its domain now (``admit``,
which answers ``StreamCondition.CONFLICT`` when another connection already serves the domain:
the newcomer is refused and the established connection kept).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Callable, Mapping

from ..jid import JID, InvalidJID
from ..stanza.errors import ProtocolUsageError, StreamCondition, StreamError
from ..xml.element import Element
from ..xml.namespaces import NS_CLIENT, NS_COMPONENT, NS_STREAMS
from ..xml.parser import StreamHeader
from . import events as ev
from .s2s_header import as_domain
from .stream import XmlStream, checked_move

__all__ = ["TRANSITIONS", "ComponentServer", "ComponentState", "handshake_digest"]

_STANZAS = frozenset({"message", "presence", "iq"})


class ComponentState(enum.Enum):
    """Where an incoming component stream stands."""

    WAIT_HEADER = "wait-header"        # expecting <stream:stream to='component domain'>
    WAIT_HANDSHAKE = "wait-handshake"  # our header is out; only <handshake/> may come
    AUTHENTICATED = "authenticated"    # <handshake/> answered: stanzas flow
    CLOSED = "closed"


_S = ComponentState
# Allowed transitions; tests read this table (STYLE rule 2).  XEP-0114 has no restarts.
TRANSITIONS: Mapping[ComponentState, frozenset[ComponentState]] = {
    _S.WAIT_HEADER: frozenset({_S.WAIT_HANDSHAKE, _S.CLOSED}),
    _S.WAIT_HANDSHAKE: frozenset({_S.AUTHENTICATED, _S.CLOSED}),
    _S.AUTHENTICATED: frozenset({_S.CLOSED}),
    _S.CLOSED: frozenset(),
}


def handshake_digest(stream_id: str, secret: str) -> str:
    """XEP-0114 §3: lower-case hex of SHA-1 over the stream id followed by the secret (UTF-8)."""
    return hashlib.sha1((stream_id + secret).encode("utf-8")).hexdigest()


def _xml_escaped(text: str) -> str:
    """The five characters with predefined entities (XML 1.0 §4.6) written as those entities."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;").replace('"', "&quot;"))


def _check_component_header(header: StreamHeader) -> str:
    """Refuse a header XEP-0114 §3 and RFC 6120 §4.8–§4.9 do not allow; returns the raw 'to'.

    The checks run in the order that reports the most basic problem first (§4.9.3), as the
    client and server headers do.
    """
    if header.name != "stream" or header.ns != NS_STREAMS:
        raise StreamError(StreamCondition.INVALID_NAMESPACE, "the root must be <stream> in the streams namespace")
    if header.namespaces.get("") == NS_STREAMS or "stream" not in header.namespaces:
        raise StreamError(StreamCondition.BAD_NAMESPACE_PREFIX)  # RFC 6120 §4.9.3.2
    if header.namespaces.get("") != NS_COMPONENT:
        # XEP-0114 §3: a namespace the server does not support "MUST" be <invalid-namespace/>.
        raise StreamError(StreamCondition.INVALID_NAMESPACE, "the content namespace must be jabber:component:accept")
    to = header.attrs.get("to", "")
    if not to:
        # RFC 6120 §4.9.3.7; XEP-0114 §3: the 'to' names the component, so there is nothing to serve.
        raise StreamError(StreamCondition.IMPROPER_ADDRESSING, "missing 'to' attribute")
    return to


class ComponentServer(XmlStream):
    """The server end of one external component connection (XEP-0114 ``accept`` method)."""

    content_ns = NS_COMPONENT

    def __init__(
        self, *, secret_for: Callable[[str], str | None], admit: Callable[[str], StreamCondition | None],
        id_factory: Callable[[], str], now: float, max_stanza_size: int = 524288, auth_timeout: float = 30.0,
    ) -> None:
        """``secret_for(domain)``: the shared secret of a configured component domain, else None.
        ``admit(domain)``: called once the handshake is right; None accepts, a condition refuses."""
        super().__init__(max_stanza_size=max_stanza_size)
        self._secret_for = secret_for
        self._admit = admit
        self._new_id = id_factory
        self._auth_deadline = now + auth_timeout
        self._domain = ""
        self._secret = ""
        self._stream_id = ""
        self.state = ComponentState.WAIT_HEADER

    # -- what the runtime reads ------------------------------------------------------------------
    @property
    def domain(self) -> str:
        """The component's domain from the header's 'to' ("" until an acceptable header)."""
        return self._domain

    @property
    def stream_id(self) -> str:
        """The id of our response header ("" before it)."""
        return self._stream_id

    @property
    def authenticated(self) -> bool:
        """True once the handshake was accepted (and until the stream closes)."""
        return self.state is ComponentState.AUTHENTICATED

    # -- the runtime's calls ---------------------------------------------------------------------
    def send_stanza(self, stanza: Element) -> None:
        """Send a ``jabber:client`` stanza to the component, written in ``jabber:component:accept``."""
        if self._closed:
            return
        if self.state is not ComponentState.AUTHENTICATED:
            raise ProtocolUsageError("stanzas go to a component only after its handshake")
        self._send(stanza.renamespaced(NS_CLIENT, NS_COMPONENT))

    def connection_lost(self) -> None:
        super().connection_lost()
        self.state = ComponentState.CLOSED

    # -- timers ----------------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        """When ``handle_timer`` should next run, or None.  Only the handshake is timed: an
        authenticated component may stay silent for as long as it likes."""
        if self._closed or self.state is ComponentState.AUTHENTICATED:
            return None
        return self._auth_deadline

    def handle_timer(self, now: float) -> None:
        """No accepted handshake by the deadline: ``connection-timeout`` (RFC 6120 §4.9.3.4)."""
        if self._closed or self.state is ComponentState.AUTHENTICATED:
            return
        if now >= self._auth_deadline:
            self.close(StreamCondition.CONNECTION_TIMEOUT, "no handshake in time")

    # -- stream handling -------------------------------------------------------------------------
    def _header_attrs(self) -> dict[str, str]:
        # XEP-0114 §3: 'from' is the component's domain and 'id' the stream id; no 'version'.
        attrs = {"id": self._stream_id or self._new_stream_id()}
        if self._domain:
            attrs["from"] = self._domain
        return attrs

    def _new_stream_id(self) -> str:
        self._stream_id = self._new_id()
        return self._stream_id

    def _on_header(self, header: StreamHeader) -> None:
        if self.state is not ComponentState.WAIT_HEADER:
            raise StreamError(StreamCondition.NOT_WELL_FORMED, "unexpected stream header")
        self._new_stream_id()
        to = _check_component_header(header)
        domain = as_domain(to)
        secret = self._secret_for(domain) if domain is not None else None
        if domain is None or secret is None:
            # XEP-0114 §3: a name the server will not service is a stream error, here
            # <host-unknown/> (RFC 6120 §4.9.3.6); an error header carries no 'from' (§4.9.1.2).
            raise StreamError(StreamCondition.HOST_UNKNOWN, f"{to} is not a component of this server")
        self._domain, self._secret = domain, secret
        self._send_header()
        self._events.append(ev.StreamOpened(to=domain, from_=None, version=header.attrs.get("version", "")))
        self._to(ComponentState.WAIT_HANDSHAKE)

    def _on_element(self, element: Element) -> None:
        if self._is_stream_error(element):
            self._peer_stream_error(element)
        elif element.ns == NS_COMPONENT and element.name == "handshake":
            self._on_handshake(element)
        elif self.state is not ComponentState.AUTHENTICATED:
            # RFC 6120 §4.9.3.12: stanzas (or anything else) before authentication.
            raise StreamError(StreamCondition.NOT_AUTHORIZED, "send <handshake/> first")
        elif element.name in _STANZAS:
            self._on_stanza(element)
        else:
            # RFC 6120 §4.9.3.24: a first-level child we do not support.
            raise StreamError(StreamCondition.UNSUPPORTED_STANZA_TYPE, f"<{element.name}/> is not supported")

    # -- the handshake (XEP-0114 §3) -------------------------------------------------------------
    def _on_handshake(self, element: Element) -> None:
        if self.state is ComponentState.AUTHENTICATED:
            # Our choice: RFC 6120 §4.9.3.14, as s2s-in answers SASL after authentication.
            raise StreamError(StreamCondition.POLICY_VIOLATION, "already authenticated")
        if not self._handshake_matches(element.text.strip()):
            # XEP-0114 §3: invalid credentials: close, and "SHOULD" say <not-authorized/>.
            raise StreamError(StreamCondition.NOT_AUTHORIZED, "wrong handshake")
        refusal = self._admit(self._domain)
        if refusal is not None:
            raise StreamError(refusal)
        self._send(Element("handshake", NS_COMPONENT))  # §3: empty <handshake/> acknowledges
        self._to(ComponentState.AUTHENTICATED)
        self._events.append(ev.ComponentAuthenticated(domain=self._domain))

    def _handshake_matches(self, given: str) -> bool:
        """Compare in constant time; upper-case hex is accepted too.

        XEP-0114 §3 step 1 asks that characters with predefined XML entities be escaped in the
        concatenation before hashing; whether the raw or the escaped text is meant is not
        spelled out, so both are accepted (they differ only for secrets containing & < > ' ").
        """
        answer = given.lower().encode("utf-8")
        matches = False
        for secret in {self._secret, _xml_escaped(self._secret)}:
            expected = handshake_digest(self._stream_id, secret).encode("ascii")
            matches |= hmac.compare_digest(answer, expected)
        return matches

    # -- stanzas (XEP-0114 §3, RFC 6120 §4.9.3) --------------------------------------------------
    def _on_stanza(self, element: Element) -> None:
        if element.ns != NS_COMPONENT:
            # As c2s and s2s do: a stanza outside the stream's content namespace.
            raise StreamError(StreamCondition.INVALID_NAMESPACE, "stanzas from a component are in jabber:component:accept")
        # XEP-0114 §3: 'from' and 'to' are required; RFC 6120 §4.9.3.7 covers a missing, empty
        # or malformed address alike.
        sender, recipient = _address(element.get("from")), _address(element.get("to"))
        if sender is None or recipient is None:
            raise StreamError(StreamCondition.IMPROPER_ADDRESSING, "a component's stanzas need 'from' and 'to'")
        if sender.domain != self._domain:
            # XEP-0114 §3: any JID at the component's domain, and only there (RFC 6120 §4.9.3.9).
            raise StreamError(StreamCondition.INVALID_FROM, f"a component may only send from {self._domain}")
        self._events.append(ev.StanzaReceived(stanza=element.renamespaced(NS_COMPONENT, NS_CLIENT)))

    # -- helpers ---------------------------------------------------------------------------------
    def _to(self, state: ComponentState) -> None:
        self.state = checked_move(self.state, state, TRANSITIONS)

    def _finish(self, err: StreamError | None, *, by_peer: bool) -> None:
        super()._finish(err, by_peer=by_peer)
        self.state = ComponentState.CLOSED


def _address(text: str | None) -> JID | None:
    """The JID in an address attribute, or None when it is missing, empty or invalid."""
    if not text:
        return None
    try:
        return JID.parse(text)
    except InvalidJID:
        return None

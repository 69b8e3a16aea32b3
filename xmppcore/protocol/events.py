"""Events the sans-I/O stream cores hand to the runtime (RFC 6120 stream negotiation).

Every event is a frozen value; anything that needs the outside world (TLS, credentials, the
session registry) is an event answered by a method call on the core.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..stanza.errors import Condition, SaslCondition, StreamCondition
from ..xml.element import Element

__all__ = [
    "Event", "StreamOpened", "TlsRequested", "CredentialsNeeded", "AuthSucceeded", "AuthFailed",
    "BindRequested", "RegistrationRequested", "StanzaReceived", "StreamClosed", "FeaturesReceived",
    "TlsProceed", "Authenticated", "Bound", "BindFailed", "NegotiationFailed",
    "DialbackKeyReceived", "DialbackVerifyResult", "PeerAuthenticated", "ComponentAuthenticated",
    "StreamManagementEnabled", "ResumeRequested", "ClientStateChanged",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamOpened:
    """The peer opened (or restarted) its stream; ``to`` is the domain it asked for."""

    to: str
    from_: str | None = None
    version: str = "1.0"
    lang: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsRequested:
    """We sent ``<proceed/>``: flush, start TLS, then call ``tls_established``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialsNeeded:
    """SASL needs the stored SCRAM credentials of ``username`` for ``hash_name``.

    Answer with ``provide_credentials(creds_or_None)`` or ``credentials_unavailable()``.
    The runtime may delay the answer to slow down password guessing.
    """

    username: str
    hash_name: str
    mechanism: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSucceeded:
    """SASL succeeded for ``username`` (a localpart of the stream's domain)."""

    username: str
    mechanism: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthFailed:
    """A SASL attempt failed; ``username`` is None when the client never named one."""

    username: str | None
    condition: SaslCondition
    mechanism: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BindRequested:
    """The client asks for a resource (None: let the server choose). RFC 6120 §7.

    Answer with ``bind_succeeded(full_jid)`` or ``bind_failed(condition)``.
    """

    resource: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationRequested:
    """XEP-0077 §3.1.1: an unauthenticated client asks about, or for, a new account.

    ``stanza`` is its ``<iq type='get|set'><query xmlns='jabber:iq:register'/></iq>`` (without
    'from': the client has no address yet).  Answer with ``send_registration_reply(reply)``.
    """

    stanza: Element


@dataclass(frozen=True, slots=True, kw_only=True)
class StanzaReceived:
    """A message, presence or iq from a bound session (``from`` not yet stamped)."""

    stanza: Element


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamClosed:
    """The stream is over: flush what is left to send, then close the transport.

    ``condition`` is the stream error sent or received, if any; ``by_peer`` tells who ended it.
    """

    condition: StreamCondition | None = None
    by_peer: bool = False
    text: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamManagementEnabled:
    """XEP-0198 §3: the client enabled stream management and we answered ``<enabled/>``.

    ``sm_id`` is set when the session may be resumed (§5) for up to ``resume_timeout`` seconds
    after its connection is lost; the core's ``stream_management`` holds the session's state.
    """

    sm_id: str | None
    resume_timeout: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeRequested:
    """XEP-0198 §5: instead of binding, the authenticated client asks to resume ``previd``;
    ``h`` counts the stanzas it handled from us on the old stream.

    Answer with ``resume_succeeded(jid, session)`` or ``resume_failed(condition, h=...)``.
    """

    previd: str
    h: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientStateChanged:
    """XEP-0352 §4.2: the bound client says it is ``active`` again, or inactive.

    A nonza, not a stanza: XEP-0198 does not count it and nothing answers it.  The runtime acts
    on it after the stanzas the client sent before it, and before those it sends after (§5.1).
    """

    active: bool


# -- client-side events (the client core in protocol/client.py) ---------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class FeaturesReceived:
    """The server advertised stream features."""

    features: Element


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsProceed:
    """The server said ``<proceed/>``: start TLS, then call ``tls_established``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticated:
    """The client authenticated with ``mechanism``."""

    mechanism: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Bound:
    """The client is bound to ``jid`` (a full JID string) and may send stanzas."""

    jid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BindFailed:
    """The server refused our bind request (RFC 6120 §7.6.2); ``bind()`` again or ``close()``."""

    condition: Condition
    text: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NegotiationFailed:
    """The client gave up on the stream for a reason of its own (no TLS, no usable mechanism...).

    A ``StreamClosed`` follows.
    """

    reason: str


# -- server-to-server events (protocol/s2s_in.py, protocol/s2s_out.py) ---------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class DialbackKeyReceived:
    """s2s-in: the peer claims ``originating`` with a dialback key (XEP-0220 §2.1.1).

    Ask the authoritative server of ``originating`` (``<db:verify/>`` over an outgoing stream),
    then answer with ``dialback_verified(originating, receiving, valid)`` or
    ``dialback_failed(originating, receiving, condition)``.
    """

    originating: str
    receiving: str
    key: str
    stream_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DialbackVerifyResult:
    """s2s-out: the answer to a ``<db:verify/>`` we sent (XEP-0220 §2.1.3).

    ``valid`` is None when the peer answered ``type='error'`` or the stream ended first.
    """

    originating: str
    receiving: str
    stream_id: str
    valid: bool | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerAuthenticated:
    """A server-to-server stream is authenticated for traffic ``remote`` → ``local`` (s2s-in)
    or ``local`` → ``remote`` (s2s-out); ``method`` is ``"EXTERNAL"`` or ``"dialback"``.

    ``bidi`` is True when XEP-0288 lets the stream carry the other direction too.
    """

    local: str
    remote: str
    method: str
    bidi: bool = False


# -- external components (protocol/component.py) -------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentAuthenticated:
    """XEP-0114 §3: the component proved it knows ``domain``'s secret; stanzas flow now."""

    domain: str


Event = (
    StreamOpened | TlsRequested | CredentialsNeeded | AuthSucceeded | AuthFailed | BindRequested
    | RegistrationRequested | StanzaReceived | StreamClosed | FeaturesReceived | TlsProceed | Authenticated
    | Bound | BindFailed | NegotiationFailed | DialbackKeyReceived | DialbackVerifyResult | PeerAuthenticated
    | ComponentAuthenticated | StreamManagementEnabled | ResumeRequested | ClientStateChanged
)

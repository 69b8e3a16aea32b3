"""RFC 6120 §4.7–§4.9 for server-to-server streams: the header, what answers it, whom it names.

Pure functions the s2s cores call on every (re)opened stream: which hosted domain the peer
asked for, whether its header is acceptable (namespaces, prefix, addressing, version), which
stream features the receiving server announces after it (RFC 6120 §4.3.2), and whether a SASL
EXTERNAL authorization identity names the domain the header claimed (XEP-0178 §3); plus the
small address helpers that dialback elements and stanzas between servers need.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from collections.abc import Set as AbstractSet

from ..jid import JID, InvalidJID
from ..stanza.errors import SaslCondition, SaslFailure, StreamCondition, StreamError
from ..xml.element import Element
from ..xml.namespaces import (
    NS_BIDI_FEATURE,
    NS_DIALBACK_FEATURE,
    NS_SASL,
    NS_SERVER,
    NS_STREAMS,
    NS_TLS,
)
from ..xml.parser import StreamHeader

__all__ = ["as_domain", "check_server_header", "check_stanza_addresses", "domain_of", "external_authzid",
           "receiving_features", "requested_local_domain", "response_header_attrs"]


def domain_of(address: str | None) -> str | None:
    """The normalised domainpart of a JID, or None when ``address`` is missing or no JID."""
    if not address:
        return None
    try:
        return JID.parse(address).domain
    except InvalidJID:
        return None


def as_domain(text: str | None) -> str | None:
    """``text`` normalised when it is a bare domain (no localpart, no resourcepart), else None."""
    if not text:
        return None
    try:
        jid = JID.parse(text)
    except InvalidJID:
        return None
    return jid.domain if jid.is_domain else None


def requested_local_domain(header: StreamHeader, *, current: str, is_hosted: Callable[[str], bool]) -> str:
    """The hosted domain the header's 'to' names ("" when none); a restart must keep it (§4.3.3)."""
    to = header.attrs.get("to", "")
    if current:
        if to and as_domain(to) != current:
            raise StreamError(StreamCondition.HOST_UNKNOWN, "a restarted stream must keep its 'to'")
        return current
    domain = as_domain(to)
    return domain if domain is not None and is_hosted(domain) else ""


def check_server_header(header: StreamHeader, *, local: str, peer: str) -> str:
    """Refuse a header RFC 6120 does not allow between servers; returns the peer's 'from'.

    ``local`` is what :func:`requested_local_domain` found; ``peer`` the 'from' of an earlier
    header of this connection ("" if none), which a restart must not change.  The checks run
    in the order that reports the most basic problem first (§4.9.3).
    """
    if header.name != "stream" or header.ns != NS_STREAMS:
        raise StreamError(StreamCondition.INVALID_NAMESPACE, "the root must be <stream> in the streams namespace")
    if header.namespaces.get("") == NS_STREAMS or "stream" not in header.namespaces:
        raise StreamError(StreamCondition.BAD_NAMESPACE_PREFIX)
    if header.namespaces.get("") != NS_SERVER:
        # §4.9.3.10: the content namespace of a server-to-server stream is jabber:server.
        raise StreamError(StreamCondition.INVALID_NAMESPACE, "the content namespace must be jabber:server")
    if not header.attrs.get("to"):
        raise StreamError(StreamCondition.IMPROPER_ADDRESSING, "missing 'to' attribute")
    if not local:
        raise StreamError(StreamCondition.HOST_UNKNOWN)  # §4.9.3.6
    sender = header.attrs.get("from")
    peer_from = peer
    if sender:
        # §4.7.1: a server's 'from' is its domain; a restart must not change it (§4.3.3).
        peer_from = as_domain(sender) or ""
        if not peer_from or (peer and peer_from != peer):
            raise StreamError(StreamCondition.INVALID_FROM)
    # §4.7.5: we speak 1.x; a missing version means a pre-RFC 3920 stream we do not support.
    major, dot, minor = header.attrs.get("version", "").partition(".")
    if not (dot and major.isdigit() and minor.isdigit()) or int(major) != 1:
        raise StreamError(StreamCondition.UNSUPPORTED_VERSION, "this server speaks XMPP 1.0")
    return peer_from


def response_header_attrs(*, stream_id: str, local: str, peer: str) -> dict[str, str]:
    """The attributes of the receiving server's response header (§4.7): its 'from' and 'to'
    only once known, so that an early error header does not make them up."""
    attrs = {"id": stream_id, "version": "1.0"}
    if local:
        attrs["from"] = local
    if peer:
        attrs["to"] = peer
    return attrs


def receiving_features(*, after_sasl: bool, tls_available: bool, tls_required: bool, tls_active: bool,
                       external: bool, dialback: bool, bidi: bool) -> Element:
    """The ``<stream:features/>`` a receiving server sends after its header.

    ``external``: the peer's certificate is good for its header's 'from' (XEP-0178 §3 offers
    EXTERNAL only then); ``dialback``/``bidi``: we accept XEP-0220 keys / XEP-0288 requests.
    """
    features = Element("features", NS_STREAMS)
    if after_sasl:
        # RFC 6120 §6.4.6: authenticated; only more dialback pairs remain (XEP-0220 §2.6).
        if dialback:
            features.add("dialback", NS_DIALBACK_FEATURE).add("errors")
        return features
    if tls_available and not tls_active:
        starttls = features.add("starttls", NS_TLS)
        if tls_required:
            starttls.add("required")
    if tls_required and not tls_active:
        return features  # RFC 6120 §5.3.1: nothing but STARTTLS while it is mandatory
    if external:
        features.add("mechanisms", NS_SASL).add("mechanism", text="EXTERNAL")
    if dialback:
        features.add("dialback", NS_DIALBACK_FEATURE).add("errors")  # XEP-0220 §2.4.2
    if bidi:
        features.add("bidi", NS_BIDI_FEATURE)  # XEP-0288 §2.1
    return features


def external_authzid(payload: str, *, peer_domain: str) -> str:
    """The identity a SASL EXTERNAL message asks for, which must be the header's 'from'.

    XEP-0178 §3: the authorization identity is the base64 of a domain, or '=' (none) to mean
    the header's 'from'; anything else is ``invalid-authzid`` (RFC 6120 §6.5.6).
    """
    text = "".join(payload.split())
    try:
        authzid = base64.b64decode(text, validate=True).decode("utf-8") if text != "=" else ""
    except ValueError as exc:  # binascii.Error and UnicodeDecodeError both are
        raise SaslFailure(SaslCondition.INCORRECT_ENCODING) from exc
    identity = as_domain(authzid) if authzid else peer_domain
    if not identity or identity != peer_domain:
        raise SaslFailure(SaslCondition.INVALID_AUTHZID)
    return identity


def check_stanza_addresses(stanza: Element, *, is_hosted: Callable[[str], bool],
                           authenticated: AbstractSet[tuple[str, str]]) -> None:
    """Refuse a stanza from a peer server whose addresses the stream does not allow.

    §4.9.3.7 missing or broken addresses; §4.9.3.6 a recipient we do not serve; §4.9.3.9 a
    sender not authenticated for that recipient (``authenticated`` holds ``(remote, local)``).
    """
    sender, recipient = domain_of(stanza.get("from")), domain_of(stanza.get("to"))
    if sender is None or recipient is None:
        raise StreamError(StreamCondition.IMPROPER_ADDRESSING)
    if not is_hosted(recipient):
        raise StreamError(StreamCondition.HOST_UNKNOWN, f"{recipient} is not served here")
    if (sender, recipient) not in authenticated:
        raise StreamError(StreamCondition.INVALID_FROM, f"{sender} is not authenticated for {recipient}")

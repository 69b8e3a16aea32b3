"""RFC 6120 §4.7–§4.9: checking a client's stream header and choosing what ours says.

Pure functions the c2s core calls on every (re)opened stream: which hosted domain the
client asked for, whether the header is acceptable (namespaces, prefix, addressing,
version), and which version our response header carries.
"""

from __future__ import annotations

from collections.abc import Callable

from ..jid import JID, InvalidJID
from ..stanza.errors import StreamCondition, StreamError
from ..xml.namespaces import NS_CLIENT, NS_STREAMS
from ..xml.parser import StreamHeader

__all__ = ["requested_domain", "check_client_header", "response_version"]


def _version_key(version: str) -> tuple[int, int] | None:
    """``major.minor`` as numbers (§4.7.5 compares them separately), or None."""
    major, dot, minor = version.partition(".")
    if not (dot and major.isdigit() and minor.isdigit()):
        return None
    return int(major), int(minor)


def response_version(client_version: str) -> str | None:
    """§4.7.5: the lower of the client's version and ours; none when the client sent none."""
    if not client_version:
        return None
    key = _version_key(client_version)
    if key is None or key >= (1, 0):
        return "1.0"  # an unparsable version is refused anyway; we answer as ourselves
    return client_version


def requested_domain(header: StreamHeader, *, current: str, is_hosted: Callable[[str], bool]) -> str:
    """The hosted domain the header names ("" when none); a restart must keep the domain."""
    to = header.attrs.get("to", "")
    if current:
        if to and to != current:
            raise StreamError(StreamCondition.HOST_UNKNOWN)  # §4.3.3: same 'to' after a restart
        return current
    try:
        domain = JID.parse(to).domain if to else ""
    except InvalidJID:
        return ""
    return domain if domain and is_hosted(domain) else ""


def check_client_header(header: StreamHeader, *, domain: str) -> str | None:
    """Refuse a header RFC 6120 does not allow; returns the client's 'from', if any.

    ``domain`` is what :func:`requested_domain` found; the checks run in the order that
    reports the most basic problem first (§4.9.3).
    """
    if header.name != "stream" or header.ns != NS_STREAMS:
        raise StreamError(StreamCondition.INVALID_NAMESPACE, "the root must be <stream> in the streams namespace")
    if header.namespaces.get("") == NS_STREAMS or "stream" not in header.namespaces:
        raise StreamError(StreamCondition.BAD_NAMESPACE_PREFIX)
    if header.namespaces.get("") != NS_CLIENT:
        raise StreamError(StreamCondition.INVALID_NAMESPACE, "the content namespace must be jabber:client")
    if not header.attrs.get("to"):
        # §4.9.3.7: the header lacks its 'to' address (ejabberd says the same).
        raise StreamError(StreamCondition.IMPROPER_ADDRESSING, "missing 'to' attribute")
    if not domain:
        raise StreamError(StreamCondition.HOST_UNKNOWN)
    peer_from = None
    sender = header.attrs.get("from")
    if sender:
        try:
            peer_from = str(JID.parse(sender))
        except InvalidJID:
            raise StreamError(StreamCondition.INVALID_FROM) from None
    # §4.7.5: we speak 1.x; a missing version means a pre-RFC stream we do not support.
    key = _version_key(header.attrs.get("version", ""))
    if key is None or key[0] != 1:
        raise StreamError(StreamCondition.UNSUPPORTED_VERSION, "this server speaks XMPP 1.0")
    return peer_from

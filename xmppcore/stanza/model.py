"""RFC 6120 §8: the stanza envelope — types, and the reply rules every handler shares.

The router reads only the envelope (``to``, ``from``, ``type``, ``id``); payloads stay
``Element`` trees until the handler that understands them looks inside.
"""

from __future__ import annotations

import enum

from ..xml.element import Element
from ..xml.namespaces import NS_CLIENT
from .errors import StanzaError

__all__ = [
    "IqType", "MessageType", "PresenceType", "error_reply", "result_reply", "iq_payload",
    "readdressed", "make_presence",
]


class IqType(enum.Enum):
    """RFC 6120 §8.2.3."""

    GET = "get"
    SET = "set"
    RESULT = "result"
    ERROR = "error"


class MessageType(enum.Enum):
    """RFC 6121 §5.2.2; a missing or unknown type reads as ``normal``."""

    NORMAL = "normal"
    CHAT = "chat"
    GROUPCHAT = "groupchat"
    HEADLINE = "headline"
    ERROR = "error"

    @classmethod
    def of(cls, stanza: Element) -> MessageType:
        # A dict lookup: Enum's own lookup by value costs a few microseconds per message.
        return _MESSAGE_TYPES.get(stanza.attrs.get("type", "normal"), cls.NORMAL)


class PresenceType(enum.Enum):
    """RFC 6121 §4.7.1; a missing type means ``available``."""

    AVAILABLE = "available"
    UNAVAILABLE = "unavailable"
    SUBSCRIBE = "subscribe"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBE = "unsubscribe"
    UNSUBSCRIBED = "unsubscribed"
    PROBE = "probe"
    ERROR = "error"

    @classmethod
    def of(cls, stanza: Element) -> PresenceType | None:
        """The type, or None when the attribute holds something RFC 6121 does not define."""
        value = stanza.get("type")
        if value is None:
            return cls.AVAILABLE
        if value == "available":  # not a legal value on the wire
            return None
        return _PRESENCE_TYPES.get(value)


_MESSAGE_TYPES: dict[str, MessageType] = {kind.value: kind for kind in MessageType}
_PRESENCE_TYPES: dict[str, PresenceType] = {kind.value: kind for kind in PresenceType}


def _swap_addresses(stanza: Element, reply: Element) -> None:
    if "from" in stanza.attrs:
        reply.attrs["to"] = stanza.attrs["from"]
    if "to" in stanza.attrs:
        reply.attrs["from"] = stanza.attrs["to"]
    if "id" in stanza.attrs:
        reply.attrs["id"] = stanza.attrs["id"]


def error_reply(stanza: Element, error: StanzaError, *, include_payload: bool = True) -> Element:
    """The error stanza answering ``stanza`` (RFC 6120 §8.3.1): addresses swapped, same id.

    The original payload is echoed, as §8.3.1 allows, so the sender can tell which stanza failed.
    """
    reply = Element(stanza.name, stanza.ns, {"type": "error"})
    _swap_addresses(stanza, reply)
    if include_payload:
        for child in stanza.elements():
            if child.name != "error":
                reply.append(child)
    reply.append(error.to_element(stanza.ns))
    return reply


def result_reply(iq: Element, payload: Element | None = None) -> Element:
    """The ``type='result'`` answer to an IQ request (RFC 6120 §8.2.3)."""
    reply = Element("iq", iq.ns, {"type": "result"})
    _swap_addresses(iq, reply)
    if payload is not None:
        reply.append(payload)
    return reply


def iq_payload(iq: Element) -> Element | None:
    """The single child of an IQ request, or None when there is not exactly one (§8.2.3)."""
    children = [c for c in iq.elements()]
    return children[0] if len(children) == 1 else None


def readdressed(stanza: Element, sender: object, to: object) -> Element:
    """A copy of ``stanza`` (id and children kept, not copied) from ``sender`` to ``to``.

    Routing never changes an inbound stanza in place (DESIGN: Stanzas); JIDs are written
    with ``str()``.
    """
    return Element(stanza.name, stanza.ns, {**stanza.attrs, "from": str(sender), "to": str(to)}, stanza.children)


def make_presence(
    kind: str | None, sender: object, to: object, *,
    stanza_id: str | None = None, children: list[Element | str] | None = None,
) -> Element:
    """A ``jabber:client`` presence of ``kind`` (None: available) from ``sender`` to ``to``."""
    attrs = {"from": str(sender), "to": str(to)}
    if kind is not None:
        attrs["type"] = kind
    if stanza_id is not None:
        attrs["id"] = stanza_id
    return Element("presence", NS_CLIENT, attrs, list(children or []))

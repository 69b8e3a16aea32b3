"""XEP-0220 Server Dialback with the keys of XEP-0185 — the pure parts both s2s roles share.

The originating server proves it owns its domain by handing the receiving server a key that
only the domain's authoritative server can confirm.  XEP-0185 §2 derives it as

    key = hex(HMAC-SHA256(hex(SHA256(secret)), receiving + " " + originating + " " + stream_id))

so an authoritative server answers ``<db:verify/>`` from its secret alone, without state, and
every node of a cluster sharing the secret answers alike.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from ..stanza.errors import DEFAULT_ERROR_TYPE, Condition
from ..xml.element import Element
from ..xml.namespaces import NS_DIALBACK, NS_SERVER, NS_STANZA_ERRORS

__all__ = ["dialback_error_condition", "dialback_key", "keys_match", "result_element", "verify_answer",
           "verify_element"]


def dialback_key(secret: bytes, *, receiving: str, originating: str, stream_id: str) -> str:
    """The XEP-0185 §2 key for ``originating`` → ``receiving`` on the stream ``stream_id``."""
    hashed = hashlib.sha256(secret).hexdigest().encode("ascii")
    message = f"{receiving} {originating} {stream_id}".encode()
    return hmac.new(hashed, message, hashlib.sha256).hexdigest()


def keys_match(secret: bytes, key: str, *, receiving: str, originating: str, stream_id: str) -> bool:
    """Whether ``key`` is the one we would have made (constant-time comparison)."""
    expected = dialback_key(secret, receiving=receiving, originating=originating, stream_id=stream_id)
    return hmac.compare_digest(expected.encode(), key.strip().encode("utf-8", "replace"))


def result_element(*, from_: str, to: str, key: str | None = None, type_: str | None = None,
                   error: Condition | None = None) -> Element:
    """``<db:result/>``: a key (XEP-0220 §2.1.1), or the answer ``valid``/``invalid``/``error``."""
    return _element("result", from_, to, key, type_, error, None)


def verify_element(*, from_: str, to: str, stream_id: str, key: str | None = None, type_: str | None = None,
                   error: Condition | None = None) -> Element:
    """``<db:verify/>``: a key to check (XEP-0220 §2.1.2), or the answer."""
    return _element("verify", from_, to, key, type_, error, stream_id)


def verify_answer(*, originating: str, receiving: str, stream_id: str, key: str, secret: bytes,
                  is_hosted: Callable[[str], bool]) -> Element:
    """The authoritative server's answer to ``<db:verify from=receiving to=originating id=stream_id>``.

    XEP-0220 §2.2.2: ``valid`` or ``invalid`` from the secret alone (no state), or an
    ``item-not-found`` dialback error when ``originating`` is not one of our domains (§2.5).
    """
    if not is_hosted(originating):
        return verify_element(from_=originating, to=receiving, stream_id=stream_id, error=Condition.ITEM_NOT_FOUND)
    valid = keys_match(secret, key, receiving=receiving, originating=originating, stream_id=stream_id)
    return verify_element(from_=originating, to=receiving, stream_id=stream_id, type_="valid" if valid else "invalid")


def _element(name: str, from_: str, to: str, key: str | None, type_: str | None,
             error: Condition | None, stream_id: str | None) -> Element:
    attrs = {"from": from_, "to": to}
    if stream_id is not None:
        attrs["id"] = stream_id
    if error is not None:
        type_ = "error"
    if type_ is not None:
        attrs["type"] = type_
    element = Element(name, NS_DIALBACK, attrs)
    if key is not None:
        element.text = key
    if error is not None:
        # XEP-0220 §2.5: a stanza-style error inside the dialback element, with the type
        # RFC 6120 §8.3.3 gives the condition (cancel for item-not-found, wait for a timeout...).
        kind = DEFAULT_ERROR_TYPE[error].value
        element.add("error", NS_SERVER, {"type": kind}).add(error.value, NS_STANZA_ERRORS)
    return element


def dialback_error_condition(element: Element) -> Condition:
    """The stanza error condition inside a ``type='error'`` dialback answer."""
    for error in element.elements():
        if error.name != "error":
            continue
        for child in error.elements():
            if child.ns == NS_STANZA_ERRORS and child.name != "text":
                try:
                    return Condition(child.name)
                except ValueError:
                    return Condition.UNDEFINED_CONDITION
    return Condition.UNDEFINED_CONDITION

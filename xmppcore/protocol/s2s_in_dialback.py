"""XEP-0220 §2.2 Server Dialback on the receiving side: the keys awaiting a verdict, and the answers.

A peer on an incoming stream hands us ``<db:result/>`` keys, one per domain pair it claims
(§2.1.1).  We cannot check a key ourselves: the runtime asks the authoritative server of the
claimed domain and reports the verdict back, which becomes the ``<db:result type=.../>``
answer (§2.2.1).  Until then the key is pending; a stream restart forgets it, and a verdict
arriving for a forgotten key is dropped.  The same stream may also ask us, as an authoritative
server, about keys our outgoing streams sent (``<db:verify/>``, §2.2.2): XEP-0185 keys come
from the shared secret, so that answer needs no state.

Sans I/O like the stream it serves: :class:`S2SIncoming` feeds elements and verdicts in and
sends or emits what comes out; the stream keeps the authenticated pairs and its states.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet

from ..stanza.errors import Condition, ProtocolUsageError, StreamCondition, StreamError
from ..xml.element import Element
from . import events as ev
from .dialback import result_element, verify_answer
from .s2s_header import as_domain

__all__ = ["DialbackReceiver"]

_MAX_PENDING = 16  # dialback keys awaiting the runtime's verdict at once (STYLE rule 8)


class DialbackReceiver:
    """The dialback keys one incoming stream received, and what to answer them.

    ``allowed`` is False when our policy accepts only SASL EXTERNAL; ``tls_required`` when
    dialback must wait for TLS.  Pairs are ``(originating, receiving)``: the peer's claimed
    domain first, ours second, as in the stream's authenticated pairs.
    """

    def __init__(self, *, secret: bytes, is_hosted: Callable[[str], bool], allowed: bool,
                 tls_required: bool) -> None:
        self._secret = secret
        self._is_hosted = is_hosted
        self._allowed = allowed
        self._tls_required = tls_required
        self._pending: set[tuple[str, str]] = set()    # keys out for checking
        self._discarded: set[tuple[str, str]] = set()  # keys forgotten by a restart

    def on_result(self, element: Element, *, stream_id: str, tls_active: bool,
                  verified: AbstractSet[tuple[str, str]]) -> Element | ev.DialbackKeyReceived | None:
        """A ``<db:result/>`` from the peer: an answer to send now, a key for the runtime to
        check (§2.2.1), or nothing.  ``verified`` are the pairs already authenticated."""
        if element.get("type") is not None:
            # §2.2: requests to us carry no 'type'; an answer we never asked for is dropped
            # (§3.1 "unsolicited dialback", XEP-0288 §4): it must never authorize anything.
            return None
        originating, receiving = as_domain(element.get("from")), as_domain(element.get("to"))
        if originating is None or receiving is None:
            raise StreamError(StreamCondition.IMPROPER_ADDRESSING, "<db:result/> needs domains in 'from' and 'to'")
        refusal = self._refusal(receiving, tls_active=tls_active)
        if refusal is not None:
            return result_element(from_=receiving, to=originating, error=refusal)
        pair = (originating, receiving)
        if pair in verified:
            return result_element(from_=receiving, to=originating, type_="valid")  # already verified
        if pair in self._pending:
            return None  # one verification per pair at a time
        self._pending.add(pair)
        return ev.DialbackKeyReceived(
            originating=originating, receiving=receiving, key=element.text.strip(), stream_id=stream_id)

    def on_verify(self, element: Element) -> Element | None:
        """§2.2.2: we are the authoritative server asked about a key one of our streams sent."""
        if element.get("type") is not None:
            return None  # an unsolicited answer (§3.1)
        originating, receiving = as_domain(element.get("to")), as_domain(element.get("from"))
        if originating is None or receiving is None:
            raise StreamError(StreamCondition.IMPROPER_ADDRESSING, "<db:verify/> needs domains in 'from' and 'to'")
        stream_id = element.get("id") or ""
        if not stream_id:
            raise StreamError(StreamCondition.INVALID_XML, "<db:verify/> needs an 'id'")
        return verify_answer(originating=originating, receiving=receiving, stream_id=stream_id,
                             key=element.text, secret=self._secret, is_hosted=self._is_hosted)

    def verdict(self, originating: str, receiving: str, *, valid: bool, others_verified: bool) -> Element | None:
        """The answer to a pending key once the authoritative server judged it (§2.2.1), or
        None when the key was forgotten.  ``others_verified``: the stream has pairs already."""
        if not self._take(originating, receiving):
            return None
        if valid:
            return result_element(from_=receiving, to=originating, type_="valid")
        if others_verified:
            # §2.1.2: <forbidden/> instead of 'invalid' refuses this pair without losing the
            # pairs already verified on the stream.
            return result_element(from_=receiving, to=originating, error=Condition.FORBIDDEN)
        # §2.2.1: the peer tried to spoof the domain; the stream closes after this answer.
        return result_element(from_=receiving, to=originating, type_="invalid")

    def failure(self, originating: str, receiving: str, condition: Condition) -> Element | None:
        """The dialback error for a pending key that could not be checked (§2.5), or None
        when the key was forgotten."""
        if not self._take(originating, receiving):
            return None
        return result_element(from_=receiving, to=originating, error=condition)

    def forget_pending(self) -> None:
        """A stream restart (STARTTLS, SASL success) forgets the keys given before it."""
        self._discarded |= self._pending
        self._pending.clear()

    def _take(self, originating: str, receiving: str) -> bool:
        """Whether an answer for this pair is still awaited (False: drop the stale answer)."""
        pair = (originating, receiving)
        if pair in self._pending:
            self._pending.remove(pair)
            return True
        if pair in self._discarded:
            return False
        raise ProtocolUsageError(f"no dialback key from {originating} to {receiving} is awaiting an answer")

    def _refusal(self, receiving: str, *, tls_active: bool) -> Condition | None:
        """§2.5: why a key cannot even be checked, as a dialback error condition."""
        if not self._is_hosted(receiving):
            return Condition.ITEM_NOT_FOUND
        if self._tls_required and not tls_active:
            return Condition.POLICY_VIOLATION  # our policy mandates TLS before dialback
        if not self._allowed:
            return Condition.NOT_AUTHORIZED    # our policy wants a valid certificate
        if len(self._pending) >= _MAX_PENDING:
            return Condition.RESOURCE_CONSTRAINT
        return None

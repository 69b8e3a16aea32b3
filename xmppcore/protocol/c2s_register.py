"""XEP-0077: In-Band Registration — the part the c2s server core plays before authentication, sans I/O.

A host that offers registration (the runtime says which domains do) advertises
``<register xmlns='http://jabber.org/features/iq-register'/>`` among the features offered before
SASL (§8), and only over TLS: the password travels in the clear (§10, like PLAIN).  The core
recognises the client's ``jabber:iq:register`` IQ get or set addressed to the server (§3.1) and
hands it to the runtime as ``RegistrationRequested``; a host that offers no registration answers
it with ``service-unavailable`` at once (§3.1: it "MUST return" that error).

While the runtime works on the request the core waits, and whatever the client pipelines behind
the request — its SASL ``<auth/>`` once the account exists (§3.1.1) — is held, a bounded amount,
and handled in order after the answer went out (:class:`HeldInput`; an XEP-0198 resumption,
which the core also waits on, holds input the same way).
"""

from __future__ import annotations

from collections.abc import Callable

from ..stanza.errors import (
    Condition,
    ProtocolUsageError,
    StanzaError,
    StreamCondition,
    StreamError,
)
from ..stanza.model import iq_payload
from ..xml.element import Element
from ..xml.namespaces import NS_CLIENT
from . import events as ev

__all__ = ["MAX_HELD", "NS_REGISTER", "NS_REGISTER_FEATURE", "HeldInput", "PreAuthRegistration"]

NS_REGISTER = "jabber:iq:register"                              # XEP-0077
NS_REGISTER_FEATURE = "http://jabber.org/features/iq-register"  # XEP-0077 §8
MAX_HELD = 16  # elements a client may pipeline behind a request the core waits on


class PreAuthRegistration:
    """Registration requests on one unauthenticated stream: offer, recognise, check the answer."""

    __slots__ = ("_offered_for", "_iq_id")

    def __init__(self, offered_for: Callable[[str], bool] | None) -> None:
        """``offered_for(domain)`` tells whether a host offers registration (None: none does)."""
        self._offered_for = offered_for
        self._iq_id = ""  # the request the runtime is answering

    def offered(self, domain: str, *, tls_active: bool) -> bool:
        # §10: the password travels in the clear, so only over TLS.
        return tls_active and self._offered_for is not None and self._offered_for(domain)

    @staticmethod
    def feature() -> Element:
        return Element("register", NS_REGISTER_FEATURE)

    @staticmethod
    def is_request(element: Element, domain: str) -> bool:
        """An IQ get/set of ``jabber:iq:register`` to the server (or to no one): §3.1."""
        if element.ns != NS_CLIENT or element.name != "iq" or element.get("type") not in ("get", "set"):
            return False
        payload = iq_payload(element)
        return (payload is not None and payload.ns == NS_REGISTER and payload.name == "query"
                and element.get("to") in (None, "", domain))

    def request(self, element: Element, *, domain: str, tls_active: bool) -> ev.RegistrationRequested | StanzaError:
        """The event for the runtime (the core then waits for the answer), or the error to answer
        ``element`` with when this host offers no registration."""
        if not self.offered(domain, tls_active=tls_active):
            return StanzaError(Condition.SERVICE_UNAVAILABLE)  # §3.1
        self._iq_id = element.get("id") or ""
        # Before authentication the client has no address (RFC 6120 §8.1.2.1): drop any 'from'.
        attrs = {k: v for k, v in element.attrs.items() if k != "from"}
        return ev.RegistrationRequested(stanza=Element("iq", NS_CLIENT, attrs, element.children))

    def check_reply(self, reply: Element) -> None:
        """The runtime's answer must be the IQ reply to the pending request (our misuse otherwise)."""
        if reply.name != "iq" or reply.get("id", "") != self._iq_id:
            raise ProtocolUsageError("a registration reply is the IQ answering the request")


class HeldInput:
    """Elements the client sent while the core waits on the runtime, replayed in order after."""

    __slots__ = ("_limit", "_items")

    def __init__(self, limit: int = MAX_HELD) -> None:
        self._limit = limit
        self._items: list[Element] = []

    def hold(self, element: Element, waiting_for: str) -> None:
        """Keep ``element`` for later; a client that keeps talking is cut off (STYLE rule 8)."""
        if len(self._items) >= self._limit:
            raise StreamError(StreamCondition.POLICY_VIOLATION, f"too much input in {waiting_for}")
        self._items.append(element)

    def replay(self, handle: Callable[[Element], None], *, waiting: Callable[[], bool]) -> None:
        """Pass the held elements to ``handle`` in order; stop, keeping the rest, as soon as
        ``waiting()`` says the core waits (or has stopped) again."""
        held, self._items = self._items, []
        for index, element in enumerate(held):
            if waiting():
                self._items = held[index:] + self._items
                return
            handle(element)

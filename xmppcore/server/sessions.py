"""RFC 6120 §7 and RFC 6121 §8.5: who is online, under which full JID, at what priority.

The registry belongs to the server (never a global).  Binding a resource that is already
taken replaces the old session, which is closed with a ``conflict`` stream error — the
"override" policy of RFC 6120 §7.7.2.2, the one ejabberd and Prosody use by default.

A session may carry a :class:`DeliveryFilter`, which holds back some of the stanzas on their
way to the client for a while (XEP-0352 client state indication installs one while the client
says it is inactive).  It belongs to the session's current stream: when that stream ends, or the
session moves to another stream (XEP-0198 §5), the runtime removes it, and what it held is
delivered as if it had been sent at that moment — kept for a resumption, or dropped with the
session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from ..jid import JID
from ..stanza.errors import Condition, StanzaError, StreamCondition
from ..xml.element import Element

__all__ = ["DeliveryFilter", "Session", "SessionRegistry"]

log = logging.getLogger(__name__)


class DeliveryFilter(Protocol):
    """Decides, stanza by stanza, what goes to a session's client now and what waits."""

    def admit(self, stanza: Element) -> Sequence[Element]:
        """What to send now, in order, as ``stanza`` is about to be sent: nothing to hold it,
        or stanzas held earlier before it."""

    def release(self) -> Sequence[Element]:
        """Everything held, oldest first; called once, when the filter is removed."""


class Session:
    """A bound client session as the router sees it; ``server/stream_management.py`` has the
    clients' (:class:`ClientSession`, which may outlive its connection, XEP-0198 §5)."""

    # One per online client: slots, not a dict each (modules keep their per-session state in
    # their own tables); weak references for the modules that track sessions without owning them.
    __slots__ = ("session_id", "jid", "priority", "available", "presence", "_delivery_filter", "__weakref__")

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.jid: JID | None = None
        self.priority = 0
        self.available = False            # has sent initial presence (RFC 6121 §4.2)
        self.presence: Element | None = None  # the last available presence it broadcast
        self._delivery_filter: DeliveryFilter | None = None

    @property
    def delivery_filter(self) -> DeliveryFilter | None:
        return self._delivery_filter

    def set_delivery_filter(self, new: DeliveryFilter | None) -> None:
        """Install ``new`` (None: no filter); what the previous filter held is delivered first, in order."""
        old, self._delivery_filter = self._delivery_filter, None
        if old is not None:
            for stanza in old.release():
                self.deliver(stanza)
        self._delivery_filter = new

    def filtered(self, stanza: Element) -> Sequence[Element]:
        """What to send to the client now for ``stanza``: a session that sends calls this first."""
        delivery_filter = self._delivery_filter
        return (stanza,) if delivery_filter is None else delivery_filter.admit(stanza)

    @property
    def full_jid(self) -> JID:
        assert self.jid is not None, "session is not bound"
        return self.jid

    def deliver(self, stanza: Element) -> None:
        """Send ``stanza`` to the client (``to``/``from`` already set)."""
        raise NotImplementedError

    def close(self, condition: StreamCondition | None = None, text: str | None = None) -> None:
        """End the session's stream, with a stream error when ``condition`` is given."""
        raise NotImplementedError


class SessionRegistry:
    """Bound sessions by bare JID, then resource."""

    def __init__(self, *, resource_factory: Callable[[], str], max_resources: int = 100) -> None:
        self._by_bare: dict[JID, dict[str, Session]] = {}
        self._new_resource = resource_factory
        self._max_resources = max_resources

    def bind(self, session: Session, username: str, domain: str, resource: str | None) -> JID:
        """Give ``session`` a full JID; replaces a session holding the same one."""
        bare = JID(username, domain, "")
        resources = self._by_bare.setdefault(bare, {})
        if resource is None:
            resource = self._new_resource()
            while resource in resources:
                resource = self._new_resource()
        old = resources.get(resource)
        if old is None and len(resources) >= self._max_resources:
            raise StanzaError(Condition.RESOURCE_CONSTRAINT, "too many resources for this account")
        jid = bare.with_resource(resource)
        session.jid = jid
        resources[resource] = session
        if old is not None and old is not session:
            log.info("[%s] resource conflict on %s: replacing session %s",
                     session.session_id, jid, old.session_id)
            # The old session keeps its JID for its own goodbye (its unavailable presence goes
            # out before the new session's first presence); unbind() leaves the new one alone.
            old.close(StreamCondition.CONFLICT, "replaced by a new connection")
        return jid

    def unbind(self, session: Session) -> bool:
        """Forget ``session``; False when it was not (or no longer) bound."""
        jid = session.jid
        if jid is None:
            return False
        bare = jid.bare
        resources = self._by_bare.get(bare)
        if not resources or resources.get(jid.resource) is not session:
            return False
        del resources[jid.resource]
        if not resources:
            del self._by_bare[bare]
        return True

    def get(self, full: JID) -> Session | None:
        resources = self._by_bare.get(full.bare)
        return resources.get(full.resource) if resources else None

    def sessions_of(self, bare: JID) -> list[Session]:
        resources = self._by_bare.get(bare)
        return list(resources.values()) if resources else []

    def is_online(self, bare: JID) -> bool:
        return bare in self._by_bare

    def __len__(self) -> int:
        return sum(len(r) for r in self._by_bare.values())

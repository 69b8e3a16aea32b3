"""Typed hooks with priorities: the event bus modules plug into (DESIGN: modules).

A hook is a typed object (``MESSAGE_BARE: Hook[StanzaEvent]``), never a string.  Handlers run
from the highest priority down; one that returns ``Handled.STOP`` ends the chain.  Adding a
handler returns the function that removes it, which is how modules undo their registrations.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from ..jid import JID
from ..xml.element import Element

if TYPE_CHECKING:
    from .sessions import Session

__all__ = [
    "Handled", "Hook", "HookFailed", "Replace", "EventBus", "StanzaEvent", "SessionEvent", "AccountEvent", "RegistrationEvent",
    "ClientStateEvent", "MESSAGE_BARE", "MESSAGE_FULL", "MESSAGE_HOST", "PRESENCE_BARE", "PRESENCE_FULL",
    "PRESENCE_HOST", "PRESENCE_BROADCAST", "SESSION_BOUND", "SESSION_AVAILABLE", "SESSION_CLOSED",
    "CLIENT_STATE", "FILTER_FROM_CLIENT", "FILTER_TO_ACCOUNT", "ACCOUNT_DELETED", "REGISTRATION_REQUESTED",
]

log = logging.getLogger(__name__)


class Handled(enum.Enum):
    """Returned by a handler that has dealt with the event for good."""

    STOP = "stop"


E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Hook(Generic[E]):
    """A named, typed extension point.

    A ``fail_closed`` hook guards something (a filter): when one of its handlers crashes,
    :meth:`EventBus.fire` raises :class:`HookFailed` instead of carrying on, so a broken or
    unreachable check never lets a stanza through by accident.
    """

    name: str
    fail_closed: bool = False


@dataclass(frozen=True, slots=True)
class Replace:
    """Returned by a handler of a hook that carries a :class:`StanzaEvent`: the handlers after it,
    and whatever the router does by default, get ``stanza`` instead of the event's (the archive
    module stamps the XEP-0359 id of the recipient's copy this way).  The chain goes on."""

    stanza: Element


class HookFailed(Exception):
    """A handler of a fail-closed hook crashed; the caller must not proceed as if it passed."""


@dataclass(frozen=True, slots=True)
class StanzaEvent:
    """A stanza on its way to ``to`` from ``sender`` (already stamped and validated)."""

    stanza: Element
    sender: JID
    to: JID
    origin: Session | None = None   # the local session it came from, if any


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """A client session was bound or has ended."""

    session: Session


@dataclass(frozen=True, slots=True)
class ClientStateEvent:
    """XEP-0352: the client of ``session`` said it is ``active`` again, or inactive."""

    session: Session
    active: bool


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """Something happened to the account ``jid`` (a bare JID of the host)."""

    jid: JID


@dataclass(frozen=True, slots=True)
class RegistrationEvent:
    """XEP-0077 §3.1.1: an unauthenticated client on a stream to ``domain`` asks about, or for, an
    account.  ``stanza`` is its IQ get/set (no 'from'); ``address`` its IP address (to throttle).
    The handler that deals with it calls ``answer`` once with the IQ reply and stops the chain.
    """

    stanza: Element
    domain: str
    address: str
    answer: Callable[[Element], None]


Handler = Callable[[E], Awaitable["Handled | Replace | None"]]

# Inbound routing, most specific first (RFC 6121 §8.5): the router fires exactly one of these.
MESSAGE_FULL: Hook[StanzaEvent] = Hook("message/full")
MESSAGE_BARE: Hook[StanzaEvent] = Hook("message/bare")
MESSAGE_HOST: Hook[StanzaEvent] = Hook("message/host")
PRESENCE_FULL: Hook[StanzaEvent] = Hook("presence/full")
PRESENCE_BARE: Hook[StanzaEvent] = Hook("presence/bare")
PRESENCE_HOST: Hook[StanzaEvent] = Hook("presence/host")
# Presence a client sends without 'to' (RFC 6121 §4.2, §4.5): broadcast by the presence module.
PRESENCE_BROADCAST: Hook[StanzaEvent] = Hook("presence/broadcast")
# Every stanza a local client sends, after 'from' is stamped and before routing.
FILTER_FROM_CLIENT: Hook[StanzaEvent] = Hook("filter/from-client", fail_closed=True)
# Every stanza routed to a local account (bare or full JID), whoever sent it, before the router
# classifies it: blocking (XEP-0191) refuses stanzas here in both directions.
FILTER_TO_ACCOUNT: Hook[StanzaEvent] = Hook("filter/to-account", fail_closed=True)
SESSION_BOUND: Hook[SessionEvent] = Hook("session/bound")
# A session sent its initial presence (RFC 6121 §4.2): fired by the presence module after the
# broadcast; offline delivery (XEP-0160) and pending subscription requests hang off it.
SESSION_AVAILABLE: Hook[SessionEvent] = Hook("session/available")
SESSION_CLOSED: Hook[SessionEvent] = Hook("session/closed")
# XEP-0352: a client said it is active or inactive (only a change, and only while its stream is
# open), in order with its stanzas (§5.1).  Its stream begins active, a resumed one too.
CLIENT_STATE: Hook[ClientStateEvent] = Hook("session/client-state")
# An account was deleted (in-band, XEP-0077 §3.2, or by the operator): every module that stores
# data per account deletes the account's.  Fired by AccountManager.delete after the credentials
# are gone, so nobody can log in while it runs.
ACCOUNT_DELETED: Hook[AccountEvent] = Hook("account/deleted")
# Before authentication (XEP-0077 §3.1.1); a host with a handler here offers in-band registration.
REGISTRATION_REQUESTED: Hook[RegistrationEvent] = Hook("account/registration-requested")


@dataclass(order=True)
class _Entry:
    sort_key: tuple[int, int]
    handler: Callable[[object], Awaitable[Handled | Replace | None]] = field(compare=False)
    stanzas: frozenset[str] | None = field(compare=False, default=None)


_Handlers = tuple[Callable[[object], Awaitable["Handled | Replace | None"]], ...]


class EventBus:
    """Handlers per hook, ordered by priority (higher first), then registration order."""

    def __init__(self) -> None:
        self._entries: dict[str, list[_Entry]] = {}
        # What fire() walks, rebuilt on every change so that firing copies nothing (hot path): the
        # handlers for any event, and for hooks some of whose handlers take only some stanzas,
        # the handlers per stanza name.
        self._handlers: dict[str, _Handlers] = {}
        self._by_stanza: dict[str, dict[str, _Handlers]] = {}
        self._order = itertools.count()

    def add(self, hook: Hook[E], handler: Handler[E], priority: int = 0, *,
            stanzas: Iterable[str] | None = None) -> Callable[[], None]:
        """Register ``handler`` on ``hook``; returns the function that removes it.

        ``stanzas``: for a hook carrying a :class:`StanzaEvent`, the stanza names (``message``,
        ``presence``, ``iq``) the handler is for; it is not even called for others.
        """
        entry = _Entry((-priority, next(self._order)), handler,  # type: ignore[arg-type]
                       None if stanzas is None else frozenset(stanzas))
        entries = self._entries.setdefault(hook.name, [])
        bisect.insort(entries, entry)
        self._rebuild(hook.name)

        def remove() -> None:
            if entry in entries:
                entries.remove(entry)
                self._rebuild(hook.name)

        return remove

    def _rebuild(self, name: str) -> None:
        entries = self._entries.get(name, [])
        self._handlers[name] = tuple(entry.handler for entry in entries if entry.stanzas is None)
        names = {stanza for entry in entries if entry.stanzas is not None for stanza in entry.stanzas}
        self._by_stanza[name] = {
            stanza: tuple(e.handler for e in entries if e.stanzas is None or stanza in e.stanzas) for stanza in names
        }
        if not self._handlers[name]:
            del self._handlers[name]
        if not names:
            del self._by_stanza[name]

    def has_handlers(self, hook: Hook[E]) -> bool:
        return hook.name in self._handlers or hook.name in self._by_stanza

    async def fire(self, hook: Hook[E], event: E) -> bool:
        """Run the handlers; True when one of them returned ``Handled.STOP``."""
        return await self._run(hook, event) is None

    async def fire_stanza(self, hook: Hook[StanzaEvent], event: StanzaEvent) -> StanzaEvent | None:
        """Run the handlers; None when one of them returned ``Handled.STOP``, else the event as the
        handlers left it (its stanza replaced by the last :class:`Replace`, if any)."""
        return await self._run(hook, event)

    async def _run(self, hook: Hook[E], event: E) -> E | None:
        # A handler added or removed while this runs takes effect from the next event.
        handlers = self._handlers.get(hook.name, ())
        by_stanza = self._by_stanza.get(hook.name)
        if by_stanza is not None:
            handlers = by_stanza.get(cast(StanzaEvent, event).stanza.name, handlers)
        for handler in handlers:
            try:
                outcome = await handler(event)
            except Exception as exc:
                # One broken module must not take the stanza path down with it.
                log.exception("handler for %s failed", hook.name)
                if hook.fail_closed:
                    raise HookFailed(hook.name) from exc
                continue
            if outcome is None:
                continue
            if outcome is Handled.STOP:
                return None
            if isinstance(outcome, Replace):
                event = dataclasses.replace(cast(StanzaEvent, event), stanza=outcome.stanza)  # type: ignore[assignment]
        return event

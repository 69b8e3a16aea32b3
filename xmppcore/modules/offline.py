"""XEP-0160: Best Practices for Handling Offline Messages — stored, then delivered with a XEP-0203 delay.

A message of type ``normal`` or ``chat`` to an existing account with no available resource of
non-negative priority (RFC 6121 §8.5.2.2.1; the message module leaves such a message unhandled,
and the router turns a chat to a vanished full JID into one, §8.5.3.2.1) is appended to the
account's ``offline`` archive, one row per message, so storing is one small append and a
damaged entry costs that message alone.  When a session of the account sends initial presence
with a non-negative priority (XEP-0160 §2), the stored messages are delivered to it, oldest
first, each with ``<delay xmlns='urn:xmpp:delay' from='<domain>' stamp='<when it was stored>'/>``
(XEP-0203, XEP-0082 UTC), and only then deleted.

What is stored (XEP-0160 §3, XEP-0334 §4, XEP-0085 §5.6, XEP-0184):

- ``normal`` and ``chat`` only; ``groupchat``, ``headline`` and ``error`` never are.
- A ``<no-store/>`` hint keeps a message out; a ``<store/>`` hint puts it in.
- Otherwise a message is stored when it carries something to read later.  What only says how
  to treat a message or where it comes from is not that: ``<thread/>``, XEP-0085 chat states
  (§5.6: standalone notifications SHOULD NOT be stored offline), XEP-0334 hints, XEP-0359
  ``<origin-id/>``/``<stanza-id/>``, an XEP-0203 ``<delay/>`` and an XEP-0184 receipt
  ``<request/>`` (a request about the content, not content).  A message holding only those is
  not kept.  An XEP-0184 ack (``<received/>``) is stored: it is sent when the content message
  is first received (§5.5), often while its sender is away, and is lost otherwise.

A message that is not stored — by that rule, or because the account already holds
``max_messages`` (§2: "the recipient's offline message queue is full") — is refused with
``service-unavailable``, as RFC 6121 §8.5.2.2.1 asks of a server that does not store it.

Resent messages are stored once.  A client that lost its stream before our XEP-0198 ack sends
its unacknowledged messages again, and some of them may already be stored (the server stores,
then acknowledges; a crash in between loses only the ack).  A message with an XEP-0359
``<origin-id/>`` is therefore stored under the key ``<sender's bare JID>/<origin-id>`` (the
archive's ``with`` field, which is indexed); a message whose key is already in the queue is
taken as stored without a second copy.  Key and message are one row, written in one
transaction, so no crash can leave one without the other (docs/decisions/0003-durability.md).

"Delivered" means handed to a session that is still bound: without XEP-0198 acknowledgements
nothing better is known.  Storing and delivering are serialised per account, and while an
account's queue is being delivered, new messages to it wait, so they arrive after the old ones.
Not yet: delivery when an available session raises a negative priority to a non-negative one
(only initial presence triggers it).
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import cast

from xmppcore.jid import JID
from xmppcore.modules.message import deliverable
from xmppcore.server import hooks
from xmppcore.server.module_api import KeyedLock, ModuleContext, Rfc, Xep
from xmppcore.server.sessions import Session
from xmppcore.stanza.datetime_profile import utc_datetime
from xmppcore.stanza.errors import Condition, StreamError
from xmppcore.stanza.model import MessageType
from xmppcore.storage.api import (
    ArchiveItem,
    ArchiveStore,
    JSONValue,
    StorageError,
    StoreKind,
)
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT, NS_STREAMS
from xmppcore.xml.parser import StreamParser
from xmppcore.xml.serializer import serialize

__all__ = [
    "DEPENDS",
    "FEATURE",
    "NS_CHATSTATES",
    "NS_DELAY",
    "NS_HINTS",
    "NS_RECEIPTS",
    "NS_SID",
    "PROTOCOL",
    "Options",
    "decode_stanza",
    "delay_stamp",
    "encode_stanza",
    "resend_key",
    "setup",
    "should_store",
    "with_delay",
]

PROTOCOL = (
    Xep(160, "1.0.1"), Xep(203, "2.0"), Xep(334, "0.3.0", status="partial"),
    Xep(85, "2.1", status="partial"),  # §5.6, what a server does with chat states
    Rfc(6121, "8.5.2.2.1"),
)
DEPENDS = ("message",)  # its MESSAGE_BARE handler decides first; we store what it leaves

FEATURE = "msgoffline"  # XEP-0160 §4
NS_DELAY = "urn:xmpp:delay"
NS_HINTS = "urn:xmpp:hints"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_RECEIPTS = "urn:xmpp:receipts"
NS_SID = "urn:xmpp:sid:0"

# Children that say how to treat a message or where it comes from, not what it says.
_NOT_CONTENT = frozenset({NS_CHATSTATES, NS_HINTS, NS_SID, NS_DELAY})

_STORED_TYPES = frozenset({MessageType.NORMAL, MessageType.CHAT})
_BATCH = 100  # stored messages read per query while delivering
_MAX_STORED_SIZE = 1 << 25  # our own serialisation of a stanza the c2s limit already bounded
_STREAM_OPEN = f"<stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}'>".encode()
_MAX_ORIGIN_ID = 256  # longer origin-ids are not used as keys (they would bloat the index)


@dataclass(frozen=True, slots=True)
class Options:
    """``[modules.offline]``."""

    max_messages: int = 100  # per account; beyond it senders get service-unavailable

    def __post_init__(self) -> None:
        if not 1 <= self.max_messages <= 100_000:
            raise ValueError(f"max_messages must be from 1 to 100000, got {self.max_messages}")


# -- what is stored --------------------------------------------------------------------------------
def should_store(stanza: Element) -> bool:
    """Whether a message nobody could take now belongs in offline storage (see the docstring)."""
    if MessageType.of(stanza) not in _STORED_TYPES:
        return False
    if stanza.find("no-store", NS_HINTS) is not None:
        return False  # XEP-0334 §4.2: not even temporarily, "for later delivery to an offline client"
    if stanza.find("store", NS_HINTS) is not None:
        return True   # XEP-0334 §4.4
    return any(_is_content(child) for child in stanza.elements())


def _is_content(child: Element) -> bool:
    # XEP-0085 §5.6: standalone chat states SHOULD NOT be stored offline; hints, ids and delays
    # only describe the message.
    if child.ns in _NOT_CONTENT:
        return False
    if child.ns == NS_RECEIPTS:
        # XEP-0184 §5: <request/> asks about the content it travels with; an ack (<received/>)
        # is what its addressee waits for, so it is kept for them.
        return child.name == "received"
    return not (child.name == "thread" and child.ns in (NS_CLIENT, ""))


def resend_key(stanza: Element, sender: JID) -> str | None:
    """The key a resent copy of ``stanza`` shares with the original: the sender's bare JID and
    the XEP-0359 ``<origin-id/>`` (unique per sender, §3); None without a usable origin-id.

    A bare JID holds no '/', so keys of different senders never meet and no key equals a bare JID.
    """
    origin = stanza.find("origin-id", NS_SID)
    origin_id = origin.get("id") if origin is not None else None
    if not origin_id or len(origin_id) > _MAX_ORIGIN_ID:
        return None
    return f"{sender.bare}/{origin_id}"


# -- XEP-0203 --------------------------------------------------------------------------------------
def delay_stamp(when: float) -> str:
    """XEP-0082 DateTime in UTC with milliseconds: ``2002-09-10T23:08:25.000Z``."""
    return utc_datetime(when)


def with_delay(stanza: Element, domain: str, when: float) -> Element:
    """A copy of ``stanza`` noting that ``domain`` held it since ``when`` (XEP-0160 §2)."""
    delayed = stanza.copy()
    delayed.add("delay", NS_DELAY, {"from": domain, "stamp": delay_stamp(when)}, text="Offline Storage")
    return delayed


# -- the stored form -------------------------------------------------------------------------------
def encode_stanza(stanza: Element) -> JSONValue:
    """The archive value for ``stanza``: its XML text (ValueError if XML cannot carry it)."""
    return {"xml": serialize(stanza, NS_CLIENT)}


def decode_stanza(value: JSONValue) -> Element | None:
    """The stanza back from :func:`encode_stanza`'s value; None when the value is damaged."""
    text = value.get("xml") if isinstance(value, dict) else None
    if not isinstance(text, str):
        return None
    try:
        events = StreamParser(max_stanza_size=_MAX_STORED_SIZE).feed(_STREAM_OPEN + text.encode("utf-8"))
    except (StreamError, UnicodeEncodeError):
        return None
    elements = [event for event in events if isinstance(event, Element)]
    return elements[0] if len(elements) == 1 else None


# -- per-account serialisation -----------------------------------------------------------------------
class _AccountQueues(KeyedLock):
    """Per account: a lock held while storing or delivering, and the delivery in progress."""

    def __init__(self) -> None:
        super().__init__()
        self.flushing: dict[str, asyncio.Event] = {}  # set when that account's delivery ends
        # Accounts whose queue is known to be empty: a login then costs no query.  Kept true
        # under the account's lock: a delivery that emptied the queue adds the account, storing
        # a message removes it.  (One process stores offline messages, as for the other caches.)
        self.empty: set[str] = set()

    async def wait_for_delivery(self, user: str) -> None:
        """Return once no delivery of ``user``'s stored messages is under way."""
        while (pending := self.flushing.get(user)) is not None:
            await pending.wait()


# -- the module ------------------------------------------------------------------------------------
def setup(mod: ModuleContext) -> None:
    options: Options = mod.options
    archive = cast(ArchiveStore, mod.open_store("offline", StoreKind.ARCHIVE))
    queues = _AccountQueues()

    async def hold_while_delivering(event: hooks.StanzaEvent) -> hooks.Handled | None:
        # New messages wait for the stored ones to be delivered first (XEP-0160 §2: in order).
        if event.to.local:
            await queues.wait_for_delivery(event.to.local)
        return None

    async def store_offline(event: hooks.StanzaEvent) -> hooks.Handled | None:
        if not should_store(event.stanza):
            return None  # the router's default answers normal and chat with service-unavailable
        try:
            value = encode_stanza(event.stanza)
        except ValueError:
            return None
        async with queues.locked(event.to.local):
            outcome = await _store(mod, archive, options, queues, event, value)
        # Refused outside the lock: the error's route may wait for the sender's own queue.
        if outcome is _Outcome.FULL:
            # XEP-0160 §2: the queue is full, so the message is refused and nothing is stored.
            await mod.bounce(event.stanza, event.sender, event.to, Condition.SERVICE_UNAVAILABLE,
                             "the recipient's offline message queue is full")
        return None if outcome is _Outcome.FAILED else hooks.Handled.STOP

    async def deliver_stored(event: hooks.SessionEvent) -> None:
        session = event.session
        if session.jid is None or not session.available or session.priority < 0:
            return  # XEP-0160 §2: only non-negative available presence takes the messages
        user = session.jid.local
        if user in queues.empty:
            return  # nothing stored since the queue was last emptied
        await queues.wait_for_delivery(user)
        done = asyncio.Event()
        queues.flushing[user] = done
        try:
            async with queues.locked(user):
                if await _deliver_all(mod, archive, session):
                    queues.empty.add(user)
        finally:
            del queues.flushing[user]
            done.set()

    async def forget_account(event: hooks.AccountEvent) -> None:
        async with queues.locked(event.jid.local):
            queues.empty.discard(event.jid.local)
            await archive.delete(event.jid.local)  # nobody will log in to read them

    mod.add_feature(FEATURE)
    mod.hook(hooks.ACCOUNT_DELETED, forget_account)
    mod.hook(hooks.MESSAGE_BARE, hold_while_delivering, priority=10)
    mod.hook(hooks.MESSAGE_FULL, hold_while_delivering, priority=10)
    mod.hook(hooks.MESSAGE_BARE, store_offline, priority=-10)
    mod.hook(hooks.SESSION_AVAILABLE, deliver_stored)


class _Outcome(enum.Enum):
    DELIVERED = "delivered"
    STORED = "stored"
    FULL = "full"
    FAILED = "failed"


async def _store(
    mod: ModuleContext, archive: ArchiveStore, options: Options, queues: _AccountQueues,
    event: hooks.StanzaEvent, value: JSONValue,
) -> _Outcome:
    """Store the message, holding the account's lock; deliver it if that became possible meanwhile."""
    user = event.to.local
    if user not in queues.flushing:
        # While we waited for the lock a resource may have become reachable (a priority raised
        # to non-negative): then the message is delivered, not stored (RFC 6121 §8.5.2.1.1).
        targets = deliverable(mod.sessions_of(event.to.bare), MessageType.of(event.stanza))
        for session in targets:
            session.deliver(event.stanza)
        if targets:
            return _Outcome.DELIVERED
    key = resend_key(event.stanza, event.sender)
    try:
        if key is not None and await archive.query(user, with_jid=key, limit=1):
            # A resend of a message stored before its sender learnt it was (see the docstring).
            mod.log.debug("offline message for %s already stored", event.to.bare)
            return _Outcome.STORED
        if await archive.count(user) >= options.max_messages:
            mod.log.info("offline queue of %s is full (%d messages)", event.to.bare, options.max_messages)
            return _Outcome.FULL
        queues.empty.discard(user)  # before the append: a failed one may still have stored it
        await archive.append(user, value, when=mod.now(), with_jid=key or str(event.sender.bare))
    except StorageError:
        mod.log.exception("cannot store an offline message for %s", event.to.bare)
        return _Outcome.FAILED  # not stored: the router's default refuses it
    return _Outcome.STORED


def _still_bound(mod: ModuleContext, session: Session) -> bool:
    return session.available and any(s is session for s in mod.sessions_of(session.full_jid.bare))


async def _deliver_all(mod: ModuleContext, archive: ArchiveStore, session: Session) -> bool:
    """Deliver the account's stored messages to ``session`` oldest first, deleting each batch
    after; whether the queue is now known to be empty."""
    user = session.full_jid.local
    after: str | None = None
    while _still_bound(mod, session):
        try:
            items = await archive.query(user, after_id=after, limit=_BATCH)
        except StorageError:
            mod.log.exception("cannot read the offline messages of %s", session.full_jid.bare)
            return False
        if not items:
            return True  # every earlier batch was delivered (or dropped as damaged) and deleted
        handed = _hand_over(mod, session, items)
        if handed:
            try:
                await archive.delete(user, handed)
            except StorageError:
                mod.log.exception("cannot delete delivered offline messages of %s", session.full_jid.bare)
                return False
        if len(handed) < len(items):
            return False  # the session went away: the rest stays for its next login
        after = items[-1].id
    return False


def _hand_over(mod: ModuleContext, session: Session, items: list[ArchiveItem]) -> list[str]:
    """Deliver ``items`` while the session stays bound; the ids that are done with."""
    handed: list[str] = []
    for item in items:
        if not _still_bound(mod, session):
            break
        stanza = decode_stanza(item.value)
        if stanza is None:
            mod.log.warning("dropping damaged offline message %s of %s", item.id, session.full_jid.bare)
        else:
            session.deliver(with_delay(stanza, mod.host, item.when))
        handed.append(item.id)
    return handed

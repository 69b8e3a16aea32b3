"""XEP-0313: Message Archive Management — each account's one-to-one conversations kept on the
server and paged through with XEP-0059; XEP-0359 stanza-ids on what the archive holds.

What is archived (§6.1.1: "all of the messages a user sends or receives of type 'normal' or
'chat' that contain a <body> element"): messages of type ``chat`` or ``normal`` with a
``<body/>`` or an XEP-0334 ``<store/>`` hint, unless they carry ``<no-store/>`` or
``<no-permanent-store/>`` (XEP-0334 §4.1, §4.2).  Never ``groupchat``, ``headline`` or ``error``.
The account's preferences (XEP-0441, :mod:`.mam_prefs`) then decide per conversation partner.
Each archive entry keeps the whole stanza, the partner's bare JID and when it was archived.

- Sent: every message a local client sends, after the filters (a blocked one is not sent, so
  not archived), goes into the sender's archive with its 'to' as partner, whether it is for a
  local or a remote JID.
- Received: a message to an account is archived once the router has found the account (so no
  archive is created for a nonexistent one) and before it is delivered or stored offline
  (hooks ``MESSAGE_BARE``/``MESSAGE_FULL`` at priority :data:`STAMP_PRIORITY`), with its 'from'
  as partner, whoever sent it.  A message from an account to itself is archived once, here
  (§6.1.1: a stanza is stored "within a given archive only once").

XEP-0359 on received messages: every ``<stanza-id/>`` whose 'by' is the recipient's bare JID is
removed, archived or not (XEP-0359 §3; a sender cannot plant ids in our name), and an archived
message gets ``<stanza-id xmlns='urn:xmpp:sid:0' by='<account>' id='<archive id>'/>`` before it
is delivered or stored offline (XEP-0313 §3.5).  Sent messages carry no stanza-id of the
sender's archive: §3.5 forbids showing it to contacts; the archived copy of a sent message has
the sender's own 'by' ids removed too.

Resent messages are archived once (:mod:`.mam_resends`): a message with an XEP-0359
``<origin-id/>`` whose (sender's bare JID, origin-id) an entry of the same conversation already
carries is not archived again, in the sender's archive nor in the recipient's, and a received one
is stamped with the id of that entry.

The recipient's copy goes down the hook chain stamped (``hooks.Replace``); handlers that need the
stanza-id (carbons) belong below :data:`STAMP_PRIORITY`.

Both copies are written with ``ArchiveStore.start_append``: the id is known at once, and within a
client's routing the commit is promised to it (``server/durability.py``) instead of awaited, so
the client's next message is routed meanwhile.  Nobody sees the id before the commit: the
recipient's sessions hold the stamped message until then, and the sender's message counts as
handled (XEP-0198) only once both copies are committed.  Elsewhere (a message from another
server) the commit is awaited here, before delivery.

Queries, the form, metadata (:mod:`.mam_query`), preferences and the per-account retention
(:mod:`.mam_prefs`) are IQs to the account's bare JID; only the account itself is answered,
anyone else gets ``forbidden`` (§8.1).  Ids are opaque (:mod:`.mam_ids`).  Deleting an account
deletes its archive, preferences and retention setting.
"""

from __future__ import annotations

import asyncio

from dataclasses import dataclass
from typing import cast

from xmppcore.jid import JID, InvalidJID
from xmppcore.modules.mam_form import NS_MAM
from xmppcore.modules.mam_ids import ArchiveIds
from xmppcore.modules.mam_prefs import (
    MAX_RETENTION_DAYS,
    NS_RETENTION,
    ArchivePolicy,
    Policy,
    Retention,
)
from xmppcore.modules.mam_query import ArchiveQueries
from xmppcore.modules.mam_resends import ORIGIN_FIELD, ResendIndex
from xmppcore.modules.offline import NS_HINTS, encode_stanza, resend_key
from xmppcore.server import durability, hooks
from xmppcore.server.iq import IqHandler, IqRequest
from xmppcore.server.module_api import IqScope, IqType, KeyedLock, ModuleContext, Xep
from xmppcore.stanza.errors import Condition, StanzaError
from xmppcore.stanza.model import MessageType
from xmppcore.storage.api import (
    ArchiveStore,
    JSONValue,
    KeyValueStore,
    StorageError,
    StoreKind,
)
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT

__all__ = [
    "DEPENDS",
    "NS_MAM",
    "NS_MAM_EXTENDED",
    "NS_SID",
    "PROTOCOL",
    "STAMP_PRIORITY",
    "Options",
    "archivable",
    "setup",
    "without_claimed_ids",
]

PROTOCOL = (
    Xep(313, "1.1.3"), Xep(359, "0.7.0"), Xep(59, "1.1"), Xep(441, "0.2.0"), Xep(297, "1.0"),
)
DEPENDS = ("message",)  # its delivery and offline storage come after our stamping

NS_MAM_EXTENDED = "urn:xmpp:mam:2#extended"  # §7: before-id/after-id/ids, flip-page, metadata
NS_SID = "urn:xmpp:sid:0"
STAMP_PRIORITY = 20  # above offline's hold (10) and message delivery (0)
_SENT_PRIORITY = -100  # after every filter that may refuse the message (blocking: 100)
_ARCHIVED_TYPES = frozenset({MessageType.CHAT, MessageType.NORMAL})


@dataclass(frozen=True)
class Options:
    """``[modules.mam]``."""

    default_policy: str = "always"  # XEP-0441 default for accounts that set no preferences
    max_page: int = 250              # most results per query page (also the page without <max/>)
    retention_days: int = 0          # archived messages are deleted after this many days; 0: kept

    def __post_init__(self) -> None:
        if self.default_policy not in {policy.value for policy in Policy}:
            raise ValueError(f"default_policy must be always, never or roster, got {self.default_policy!r}")
        if not 1 <= self.max_page <= 10_000:
            raise ValueError(f"max_page must be from 1 to 10000, got {self.max_page}")
        if not 0 <= self.retention_days <= MAX_RETENTION_DAYS:
            raise ValueError(f"retention_days must be from 0 to {MAX_RETENTION_DAYS}, got {self.retention_days}")


def archivable(stanza: Element) -> bool:
    """Whether a message belongs in an archive at all (see the docstring)."""
    if stanza.name != "message" or MessageType.of(stanza) not in _ARCHIVED_TYPES:
        return False
    if stanza.find("no-store", NS_HINTS) is not None or stanza.find("no-permanent-store", NS_HINTS) is not None:
        return False
    return stanza.find("body", NS_CLIENT) is not None or stanza.find("store", NS_HINTS) is not None


def without_claimed_ids(stanza: Element, owner: JID) -> Element | None:
    """A copy of ``stanza`` without the stanza-ids claiming ``owner``'s 'by'; None if it has none."""
    def claims_owner(child: Element | str) -> bool:
        if not isinstance(child, Element) or (child.ns, child.name) != (NS_SID, "stanza-id"):
            return False
        try:
            return JID.parse(child.get("by") or "") == owner
        except InvalidJID:
            return False  # not an address, so not ours either

    if not any(claims_owner(child) for child in stanza.children):
        return None
    return Element(stanza.name, stanza.ns, stanza.attrs,
                   [child.copy() if isinstance(child, Element) else child
                    for child in stanza.children if not claims_owner(child)])


class _Archiver:
    """Archives the messages of one host's accounts as they pass (both directions)."""

    def __init__(self, mod: ModuleContext, archive: ArchiveStore, ids: ArchiveIds,
                 policy: ArchivePolicy, retention: Retention, resends: ResendIndex) -> None:
        self._mod = mod
        self._archive = archive
        self._ids = ids
        self._policy = policy
        self._retention = retention
        self._resends = resends
        self._resending = KeyedLock()  # per account and resend key: look up, then append

    async def on_sent(self, event: hooks.StanzaEvent) -> hooks.Handled | None:
        stanza, owner = event.stanza, event.sender.bare
        if not archivable(stanza) or event.to.bare == owner:
            return None  # a message to oneself is archived once, when it arrives
        # Its commit is promised to the routing (server/durability.py): the message goes on at
        # once, and counts as handled (XEP-0198) only once its copy is committed.
        await self._archive_sent(owner, event.to, stanza, resend_key(stanza, event.sender))
        return None

    async def _archive_sent(self, owner: JID, to: JID, stanza: Element, key: str | None) -> None:
        try:
            if await self._policy.should_archive(owner, to):
                await self._archive_once(owner, to, without_claimed_ids(stanza, owner) or stanza, "out", key)
        except (StorageError, ValueError):
            # The message still goes: losing its archive copy beats refusing to send it.
            self._mod.log.exception("cannot archive a message sent by %s", owner)

    async def on_received(self, event: hooks.StanzaEvent) -> hooks.Replace | None:
        stanza = event.stanza
        owner = event.to.bare
        changed = without_claimed_ids(stanza, owner)
        archive_id = None
        try:
            if archivable(stanza) and await self._policy.should_archive(owner, event.sender):
                archive_id = await self._archive_once(owner, event.sender, changed or stanza, "in",
                                                      resend_key(stanza, event.sender))
        except (StorageError, ValueError):
            self._mod.log.exception("cannot archive a message to %s", owner)
        if changed is None and archive_id is None:
            return None
        # A new top element over the same children (the stamp is added, nothing else changes).
        copy = changed or Element(stanza.name, stanza.ns, stanza.attrs, list(stanza.children))
        if archive_id is not None:
            copy.append(Element("stanza-id", NS_SID, {"by": str(owner), "id": archive_id}))
        copy.attrs.setdefault("to", str(event.to))  # RFC 6120 §8.1.1.1: no 'to' is the account
        return hooks.Replace(copy)  # delivered, copied or stored offline as stamped

    async def _archive_once(self, owner: JID, partner: JID, stanza: Element, direction: str,
                            key: str | None) -> str:
        """Archive ``stanza`` for ``owner`` unless it is a resend (``key``: its resend key);
        the client-facing id of its entry, new or the original's."""
        if key is None:
            storage_id = await self._append(owner, partner, stanza, direction, None)
        else:
            # Held from look-up to append: two copies of one message at once (an old stream that
            # is not gone yet, and the resend on the new one) must not both miss the other.
            async with self._resending.locked(f"{owner}\n{key}"):
                original = await self._resends.original(owner.local, str(partner.bare), key)
                cutoff = None if original is None else await self._retention.cutoff(owner.local)
                if original is None or (cutoff is not None and original.when < cutoff):
                    # New, or its original is past retention: no query shows that one any more.
                    storage_id = await self._append(owner, partner, stanza, direction, key)
                    self._resends.appended(owner.local, str(partner.bare), key, storage_id)
                else:
                    self._mod.log.debug("a resent message with %s is archived for %s already", partner.bare, owner)
                    storage_id = original.id
        return (await self._ids.codec()).encode(storage_id)

    async def _append(self, owner: JID, partner: JID, stanza: Element, direction: str, key: str | None) -> str:
        """Archive ``stanza`` for ``owner``; its storage id.

        The entry is committed before anyone sees the id: here, or — when the routing under way
        collects commitments (server/durability.py) — before the stanzas it stamps are delivered
        and before the message counts as handled, while the routing goes on.
        """
        user = owner.local
        await self._retention.purge(user)
        value = encode_stanza(stanza)
        assert isinstance(value, dict)
        entry: dict[str, JSONValue] = {**value, "with": str(partner), "dir": direction}
        if key is not None:
            entry[ORIGIN_FIELD] = key  # in the same row as the message: no crash parts them
        storage_id, committed = await self._archive.start_append(
            user, entry, when=self._mod.now(), with_jid=str(partner.bare))
        if durability.promise(committed):
            committed.add_done_callback(lambda done: self._check_commit(done, owner))
        else:
            await committed
        return storage_id

    def _check_commit(self, committed: asyncio.Future[None], owner: JID) -> None:
        """A promised entry that was not committed: say so, and forget the resend look-back that
        may name it (it is read again from storage when next needed)."""
        if committed.cancelled() or committed.exception() is None:
            return
        self._resends.forget(owner.local)
        self._mod.log.error("an archive entry of %s was not committed: %s", owner, committed.exception())


def _own_archive_only(handler: IqHandler) -> IqHandler:
    async def checked(request: IqRequest) -> Element | None:
        if request.sender.bare != request.to.bare:
            # XEP-0313 §8.1: "the error condition SHOULD be 'forbidden'".
            raise StanzaError(Condition.FORBIDDEN, "an archive is its account's alone")
        return await handler(request)
    return checked


def setup(mod: ModuleContext) -> None:
    options: Options = mod.options
    archive = cast(ArchiveStore, mod.open_store("mam", StoreKind.ARCHIVE))
    ids = ArchiveIds(cast(KeyValueStore, mod.open_store("mam_id_key", StoreKind.KEYVAL)))
    policy = ArchivePolicy(
        mod, cast(KeyValueStore, mod.open_store("mam_prefs", StoreKind.KEYVAL)),
        cast(KeyValueStore, mod.open_store("mam_retention", StoreKind.KEYVAL)),
        default=Policy(options.default_policy), server_retention_days=options.retention_days)
    retention = Retention(mod, archive, policy)
    resends = ResendIndex(archive)
    archiver = _Archiver(mod, archive, ids, policy, retention, resends)
    queries = ArchiveQueries(mod, archive, ids, retention, max_page=options.max_page)

    async def forget_account(event: hooks.AccountEvent) -> None:
        user = event.jid.local
        await archive.delete(user)
        await policy.forget(user)
        retention.forget(user)
        resends.forget(user)

    for feature in (NS_MAM, NS_MAM_EXTENDED, NS_SID, NS_RETENTION):
        mod.add_feature(feature, IqScope.ACCOUNT)
    both = (IqType.GET, IqType.SET)
    mod.iq_handler(NS_MAM, "query", _own_archive_only(queries.on_query), types=both, scope=IqScope.ACCOUNT)
    mod.iq_handler(NS_MAM, "metadata", _own_archive_only(queries.on_metadata), scope=IqScope.ACCOUNT)
    mod.iq_handler(NS_MAM, "prefs", _own_archive_only(policy.on_prefs), types=both, scope=IqScope.ACCOUNT)
    mod.iq_handler(NS_RETENTION, "retention", _own_archive_only(policy.on_retention), types=both,
                   scope=IqScope.ACCOUNT)
    mod.hook(hooks.FILTER_FROM_CLIENT, archiver.on_sent, priority=_SENT_PRIORITY, stanzas=("message",))
    mod.hook(hooks.MESSAGE_BARE, archiver.on_received, priority=STAMP_PRIORITY)
    mod.hook(hooks.MESSAGE_FULL, archiver.on_received, priority=STAMP_PRIORITY)
    mod.hook(hooks.ACCOUNT_DELETED, forget_account)

"""XEP-0359 origin-ids in the XEP-0313 archive: a message its client sent again is archived once.

A client that lost its stream before our XEP-0198 acknowledgement (a crash of the server, a
dropped connection it could not resume) sends again every message after the last 'h' it was
told (XEP-0198 §4), and the server may have archived some of them already: it archives, then
acknowledges, and only the acknowledgement was lost.  XEP-0313 §6.1.1 wants a message stored
"within a given archive only once", so a message with an ``<origin-id/>`` — unique and stable
per sender (XEP-0359 §2.2) — is archived with its resend key (the sender's bare JID and the
origin-id, :func:`xmppcore.modules.offline.resend_key`) in its entry, and a message whose key an
entry of the same conversation already carries is not archived again; a received one is stamped
with that entry's id, so its recipient sees one stanza-id for one message.

The archive store can only look entries up by conversation partner, not by key, so a message is
compared with the newest :data:`LOOKBACK` entries of the account's conversation with its partner
(their ``with``; older keyed entries may still be remembered, but only these are sure to be).
Why that suffices: the original of a resend was archived after the last acknowledgement its
client received, and a client resends at the start of its new stream, so what lies between the
two in that conversation is what its two sides had sent without acknowledgement when the stream
broke, plus what they sent while it reconnected.  That is a few messages for an interactive
client; in the crash test (four clients of one account sending to one contact, each asking for
an acknowledgement every 50 messages, four to six SIGKILLs) an original was never more than 200
entries behind its resend.  A resend further back than the bound is archived a second time, as
before this check (a duplicate, never a loss).

The newest entries of a conversation are read once, when a message of it is first looked up, and
from then on every entry this module appends is noted as it is appended, so a look-up costs no
query: the keys are kept in memory, newest last, at most :data:`MAX_HELD` for all conversations
together (the least recently used conversation is forgotten first and read again when needed).
Only a match is read back and checked in full, so an entry deleted since (retention, a deleted
account) or a hash collision is never taken for the original.  Entries archived before keys were
recorded carry none and are not matched.

Noting our own appends assumes this module is the only writer of the host's archive, as it is
in one server process.  Several processes sharing one database (the cluster of DESIGN.md) would
each miss the entries the others appended after reading a conversation, which costs a
duplicate, never a message; they would have to read what was appended since their last look
(``after_id``) on every look-up instead, one more small query per archived message.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import islice

from xmppcore.server.module_api import KeyedLock
from xmppcore.storage.api import ArchiveItem, ArchiveStore, JSONValue

__all__ = ["LOOKBACK", "MAX_HELD", "ORIGIN_FIELD", "ResendIndex", "resend_key_of"]

LOOKBACK = 1000        # newest entries of a conversation a new message is compared with
MAX_HELD = 100_000     # keys (and conversations) kept in memory for all conversations together
ORIGIN_FIELD = "origin"  # the archive entry's field holding the resend key


def resend_key_of(value: JSONValue) -> str | None:
    """The resend key an archive entry's value carries, if any."""
    key = value.get(ORIGIN_FIELD) if isinstance(value, dict) else None
    return key if isinstance(key, str) else None


@dataclass(slots=True)
class _Window:
    """The keys of one account's newest entries with one partner."""

    # hash of a resend key -> storage id, oldest first.  Hashes keep a stranger's long keys out of
    # memory; a match is checked against the stored entry, so a collision costs nothing.
    keys: dict[int, str] = field(default_factory=dict)
    read: bool = False  # the stored entries were read (appends are noted before that too)
    readers: int = 0    # reads in progress; such a window is not forgotten


class ResendIndex:
    """Finds the archive entry a resent message duplicates (see the module docstring)."""

    def __init__(self, archive: ArchiveStore, *, lookback: int = LOOKBACK, max_held: int = MAX_HELD) -> None:
        self._archive = archive
        self._lookback = lookback
        self._max_held = max(max_held, lookback + 1)
        self._trim_at = lookback + lookback // 4  # keys a window may hold before it is trimmed
        self._windows: OrderedDict[tuple[str, str], _Window] = OrderedDict()  # least recent first
        self._held = 0  # keys plus windows, what memory is bounded by
        self._reading = KeyedLock()  # a conversation is read once, however many look it up at once

    async def original(self, user: str, partner: str, key: str) -> ArchiveItem | None:
        """``user``'s entry with ``partner`` (a bare JID) that carries ``key``, if it is among the
        newest ``lookback`` entries with ``partner``; None when there is none."""
        window = await self._window(user, partner)
        storage_id = window.keys.get(hash(key))
        if storage_id is None:
            return None
        found = await self._archive.query(user, ids=[storage_id])
        if found and found[0].with_jid == partner and resend_key_of(found[0].value) == key:
            return found[0]
        return None  # deleted since, or another key with the same hash

    def appended(self, user: str, partner: str, key: str, storage_id: str) -> None:
        """Note the entry carrying ``key`` just appended to ``user``'s archive with ``partner``."""
        pair = (user, partner)
        window = self._windows.get(pair)
        if window is None:
            return  # read with the rest when the conversation is first looked up
        before = len(window.keys)
        window.keys.pop(hash(key), None)  # the key of an expired original moves to the end
        window.keys[hash(key)] = storage_id
        self._held += len(window.keys) - before
        if len(window.keys) > self._trim_at:
            self._replace(pair, window, window.keys)
        self._shrink()

    def forget(self, user: str) -> None:
        """Drop what is known of ``user``'s archive (it was deleted)."""
        for pair in [pair for pair in self._windows if pair[0] == user]:
            self._drop(pair)

    async def _window(self, user: str, partner: str) -> _Window:
        pair = (user, partner)
        window = self._windows.get(pair)
        if window is None:
            window = self._windows[pair] = _Window()
            self._held += 1
        self._windows.move_to_end(pair)
        if window.read:
            return window
        window.readers += 1
        try:
            async with self._reading.locked(f"{user}\n{partner}"):  # neither part holds a newline
                if not window.read:
                    items = await self._archive.query(user, with_jid=partner, limit=self._lookback, reverse=True)
                    stored = {hash(key): item.id for item in reversed(items)
                              if (key := resend_key_of(item.value)) is not None}
                    # Appends noted while the read was under way are newer than what it found.
                    self._replace(pair, window, {**stored, **window.keys})
                    window.read = True
        finally:
            window.readers -= 1
        self._shrink()
        return window

    def _replace(self, pair: tuple[str, str], window: _Window, keys: dict[int, str]) -> None:
        if len(keys) > self._trim_at:
            # Trimmed in bulk: dropping the oldest one at a time from a dict is not O(1).
            keys = dict(islice(keys.items(), len(keys) - self._lookback, None))
        if self._windows.get(pair) is window:  # not forgotten meanwhile
            self._held += len(keys) - len(window.keys)
        window.keys = keys

    def _shrink(self) -> None:
        """Forget the least recently used conversations while more than :data:`MAX_HELD` is held."""
        for _ in range(len(self._windows) - 1):  # the newest window, just used, stays
            if self._held <= self._max_held:
                return
            pair, window = next(iter(self._windows.items()))
            if window.readers:
                self._windows.move_to_end(pair)  # in use: its turn comes later
            else:
                self._drop(pair)

    def _drop(self, pair: tuple[str, str]) -> None:
        window = self._windows.pop(pair)
        self._held -= len(window.keys) + 1

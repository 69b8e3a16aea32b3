"""RFC 6121 §2.1: roster items, their wire form and their storage.

A roster is a map store (user × contact JID → item JSON) plus one version document per user
for roster versioning (§2.6).  The version is ``<epoch>-<counter>``: the counter grows with
every change, and the random epoch, chosen when a user's first version is written, keeps a
client's cached version of a deleted account from matching a new account of the same name.

Some records are not roster items at all: a contact's subscription request to a user who has
no item for them is remembered (§3.1.3: "SHOULD NOT add an item") with ``listed=False``; such
records are neither returned in the roster nor counted against its size.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from typing import Any

from xmppcore.jid import JID, InvalidJID
from xmppcore.server.module_api import KeyedLock
from xmppcore.storage.api import JSONValue, KeyValueStore, MapStore, StorageError
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_ROSTER

from .subscription import SubState

__all__ = ["RosterItem", "RosterStore"]


@dataclass(frozen=True, slots=True)
class RosterItem:
    """One contact in a user's roster (§2.1.2)."""

    jid: JID
    name: str | None = None
    groups: tuple[str, ...] = ()
    state: SubState = SubState.NONE
    approved: bool = False      # §3.4 pre-approval
    listed: bool = True         # False: only a pending inbound request is remembered
    request: str | None = None  # the <status/> of a pending inbound request, re-delivered later

    def element(self) -> Element:
        """``<item/>`` as in roster results and pushes: subscription, ask and approved are ours."""
        attrs = {"jid": str(self.jid), "subscription": self.state.subscription}
        if self.name:
            attrs["name"] = self.name
        if self.state.pending_out:
            attrs["ask"] = "subscribe"
        if self.approved:
            attrs["approved"] = "true"
        item = Element("item", NS_ROSTER, attrs)
        for group in self.groups:
            item.add("group", NS_ROSTER, text=group)
        return item

    def to_json(self) -> dict[str, JSONValue]:
        doc: dict[str, JSONValue] = {"state": self.state.name}
        if self.name:
            doc["name"] = self.name
        if self.groups:
            doc["groups"] = list(self.groups)
        if self.approved:
            doc["approved"] = True
        if not self.listed:
            doc["listed"] = False
        if self.request is not None:
            doc["request"] = self.request
        return doc

    @classmethod
    def from_json(cls, key: str, doc: JSONValue) -> RosterItem:
        if not isinstance(doc, dict):
            raise StorageError(f"roster item {key!r} is not a JSON object")
        try:
            return cls(
                jid=JID.parse(key),
                name=_optional_str(doc.get("name")),
                groups=tuple(str(g) for g in doc.get("groups", ())),
                state=SubState[str(doc.get("state", "NONE"))],
                approved=bool(doc.get("approved", False)),
                listed=bool(doc.get("listed", True)),
                request=_optional_str(doc.get("request")),
            )
        except (InvalidJID, KeyError, TypeError) as exc:
            raise StorageError(f"roster item {key!r} is damaged") from exc

    def with_state(self, state: SubState, approved: bool) -> RosterItem:
        request = self.request if state.pending_in else None
        return replace(self, state=state, approved=approved, request=request)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


_CACHED_ROSTERS = 10_000  # accounts whose roster stays in memory, least recently used out first


@dataclass
class RosterStore:
    """Every account's roster on one host.

    A login reads its roster several times (initial presence to subscribers, probes to contacts,
    pending requests, the unavailable presence at the end), so the latest rosters are kept in
    memory.  Every change goes through this class, which forgets the account's copy before and
    after writing; a read that overlapped a write is not kept (the generation counter says so).
    This assumes one process writes the rosters (true until clustering).
    """

    items: MapStore
    versions: KeyValueStore
    _locks: KeyedLock = field(default_factory=KeyedLock)
    _cache: OrderedDict[str, tuple[RosterItem, ...]] = field(default_factory=OrderedDict)
    _generation: int = 0

    def locked(self, user: str) -> AbstractAsyncContextManager[None]:
        """Serialise read-modify-write of ``user``'s roster (two resources may race)."""
        return self._locks.locked(user)

    async def get(self, user: str, contact: JID) -> RosterItem | None:
        cached = self._cache.get(user)
        if cached is not None:
            return next((item for item in cached if item.jid == contact), None)
        doc = await self.items.get(user, str(contact))
        return None if doc is None else RosterItem.from_json(str(contact), doc)

    async def all(self, user: str) -> list[RosterItem]:
        """Every record, listed or not, in a stable order."""
        cached = self._cache.get(user)
        if cached is not None:
            self._cache.move_to_end(user)
            return list(cached)
        generation = self._generation
        docs = await self.items.get_all(user)
        items = tuple(RosterItem.from_json(key, doc) for key, doc in sorted(docs.items()))
        if generation == self._generation:
            self._cache[user] = items
            if len(self._cache) > _CACHED_ROSTERS:
                self._cache.popitem(last=False)
        return list(items)

    def _forget(self, user: str) -> None:
        self._generation += 1
        self._cache.pop(user, None)

    async def listed(self, user: str) -> list[RosterItem]:
        return [item for item in await self.all(user) if item.listed]

    async def version(self, user: str) -> str:
        epoch, counter = await self._version(user)
        return f"{epoch}-{counter}"

    async def put(self, user: str, item: RosterItem) -> str:
        """Store ``item``; returns the roster's new version."""
        self._forget(user)
        try:
            await self.items.set(user, str(item.jid), item.to_json())
        finally:
            self._forget(user)
        return await self._bump(user)

    async def delete(self, user: str, contact: JID) -> str:
        self._forget(user)
        try:
            await self.items.set(user, str(contact), None)
        finally:
            self._forget(user)
        return await self._bump(user)

    async def delete_user(self, user: str) -> None:
        self._forget(user)
        try:
            await self.items.delete_user(user)
        finally:
            self._forget(user)
        await self.versions.set(user, None)

    async def _version(self, user: str) -> tuple[str, int]:
        doc = await self.versions.get(user)
        if isinstance(doc, dict) and isinstance(doc.get("epoch"), str) and isinstance(doc.get("n"), int):
            return doc["epoch"], doc["n"]
        return "", 0

    async def _bump(self, user: str) -> str:
        epoch, counter = await self._version(user)
        epoch = epoch or secrets.token_hex(4)
        await self.versions.set(user, {"epoch": epoch, "n": counter + 1})
        return f"{epoch}-{counter + 1}"

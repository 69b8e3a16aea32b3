"""Accounts and their credentials, stored only as SCRAM salted keys (RFC 5802 §3, RFC 7677).

One keyval document per account in the ``accounts`` store of its host:
``{"scram": {"sha-1": {...}, "sha-256": {...}}, "created": <unix time>}``.  The plaintext
password is used once, to derive the keys, and never stored or logged.

Deleting an account tells the deletion listeners (the server fires ``hooks.ACCOUNT_DELETED``
on the host), whoever deleted it: a client in-band (XEP-0077 §3.2) or the operator's CLI.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..jid import JID, InvalidJID
from ..protocol.sasl import SCRAM_HASHES, ScramCredentials, derive_scram_credentials, prepare_password
from ..storage.api import KeyValueStore, StorageDriver

__all__ = ["AccountError", "AccountManager", "DeletionListener", "normalize_username"]

ACCOUNTS_STORE = "accounts"
_REMEMBERED_DELETIONS = 10_000  # accounts deleted by this process that deleted_here() knows
_CACHED_ACCOUNTS = 10_000  # account documents kept for logins (auth.cache_seconds), at most

# Called with (host, normalised username) once an account is gone.
DeletionListener = Callable[[str, str], Awaitable[None]]


class AccountError(Exception):
    """A request about an account cannot be carried out (message says why)."""


def normalize_username(username: str) -> str:
    """The localpart in its canonical form (RFC 7622 §3.3); AccountError if invalid."""
    try:
        jid = JID.make(username, "localhost")
    except InvalidJID as exc:
        raise AccountError(f"invalid username {username!r}: {exc}") from None
    if not jid.local:  # JID.make accepts an empty localpart (a domain JID); an account needs one
        raise AccountError(f"invalid username {username!r}: empty")
    return jid.local


class AccountManager:
    """Create, check, change and delete accounts on every host of the server."""

    def __init__(self, storage: StorageDriver, *, iterations: int = 10000, cache_seconds: float = 0.0) -> None:
        self._storage = storage
        self._iterations = iterations
        # Account documents a login read, with when they were read (``auth.cache_seconds``):
        # changes made here drop them; changes made elsewhere apply within cache_seconds.
        self._cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._stores: dict[str, KeyValueStore] = {}
        self._deletion_listeners: list[DeletionListener] = []
        # Accounts this process deleted, newest last (bounded): their sessions close after the
        # deletion, and what modules record at a logout must not bring them back.
        self._deleted: dict[tuple[str, str], None] = {}

    def on_deleted(self, listener: DeletionListener) -> Callable[[], None]:
        """Call ``listener`` after each deletion; returns the function that removes it."""
        self._deletion_listeners.append(listener)

        def remove() -> None:
            if listener in self._deletion_listeners:
                self._deletion_listeners.remove(listener)

        return remove

    def _store(self, host: str) -> KeyValueStore:
        store = self._stores.get(host)
        if store is None:
            store = self._stores[host] = self._storage.keyval(host, ACCOUNTS_STORE)
        return store

    def _derive(self, password: str) -> dict[str, object]:
        try:
            prepare_password(password)
        except ValueError as exc:
            raise AccountError(f"unacceptable password: {exc}") from None
        if not password:
            raise AccountError("the password must not be empty")
        return {
            name: derive_scram_credentials(
                password, name, salt=secrets.token_bytes(16), iterations=self._iterations,
            ).to_json()
            for name in SCRAM_HASHES
        }

    async def create(self, host: str, username: str, password: str) -> str:
        """Create an account; AccountError if it exists. Returns the normalised username."""
        user = normalize_username(username)
        store = self._store(host)
        if await store.get(user) is not None:
            raise AccountError(f"{user}@{host} already exists")
        await store.set(user, {"scram": self._derive(password), "created": time.time()})
        self._deleted.pop((host, user), None)
        self._cache.pop((host, user), None)
        return user

    async def set_password(self, host: str, username: str, password: str) -> None:
        user = normalize_username(username)
        store = self._store(host)
        doc = await store.get(user)
        if not isinstance(doc, dict):
            raise AccountError(f"{user}@{host} does not exist")
        await store.set(user, {**doc, "scram": self._derive(password)})
        self._cache.pop((host, user), None)

    async def delete(self, host: str, username: str) -> None:
        """Delete the credentials (nobody can log in any more), then tell the listeners."""
        user = normalize_username(username)
        store = self._store(host)
        if await store.get(user) is None:
            raise AccountError(f"{user}@{host} does not exist")
        await store.set(user, None)
        self._cache.pop((host, user), None)
        self._deleted[(host, user)] = None
        if len(self._deleted) > _REMEMBERED_DELETIONS:
            del self._deleted[next(iter(self._deleted))]
        for listener in tuple(self._deletion_listeners):
            await listener(host, user)

    def deleted_here(self, host: str, username: str) -> bool:
        """Whether this process deleted the account (and it was not made again since)."""
        try:
            return (host, normalize_username(username)) in self._deleted
        except AccountError:
            return False

    async def exists(self, host: str, username: str) -> bool:
        try:
            user = normalize_username(username)
        except AccountError:
            return False
        return await self._store(host).get(user) is not None

    async def _account(self, host: str, user: str) -> dict[str, Any] | None:
        """The account's document, from the cache while it is fresh (unknown accounts are not
        cached: one made by another process can log in at once)."""
        key = (host, user)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        doc = await self._store(host).get(user)
        if not isinstance(doc, dict):
            self._cache.pop(key, None)
            return None
        if self._cache_seconds > 0:
            cache = self._cache
            cache.pop(key, None)
            cache[key] = (now, doc)  # newest last, so the stale ones are the first
            while len(cache) > _CACHED_ACCOUNTS or now - next(iter(cache.values()))[0] >= self._cache_seconds:
                del cache[next(iter(cache))]
        return doc

    async def users(self, host: str) -> list[str]:
        return await self._store(host).users()

    async def credentials(self, host: str, username: str, hash_name: str) -> ScramCredentials | None:
        """The stored keys for ``hash_name``, or None for an unknown account."""
        try:
            user = normalize_username(username)
        except AccountError:
            return None
        doc = await self._account(host, user)
        if doc is None:
            return None
        scram = doc.get("scram")
        if not isinstance(scram, Mapping) or not isinstance(scram.get(hash_name), Mapping):
            return None
        return ScramCredentials.from_json(scram[hash_name])

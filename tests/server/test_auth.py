"""RFC 5802 §3, RFC 7677, RFC 7622 §3.3: accounts stored as SCRAM keys, never as passwords."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest

from xmppcore.protocol.sasl import derive_scram_credentials
from xmppcore.server.auth import AccountError, AccountManager, normalize_username
from xmppcore.storage import StorageDriver, create_driver

PASSWORD = "pencil-ε-sharpener"
HOST = "localhost"


@pytest.fixture
async def storage() -> AsyncIterator[StorageDriver]:
    driver = create_driver("memory")
    await driver.open()
    yield driver
    await driver.close()


@pytest.fixture
def accounts(storage: StorageDriver) -> AccountManager:
    return AccountManager(storage, iterations=4096)


async def verifies(accounts: AccountManager, user: str, password: str) -> bool:
    """Whether ``password`` matches the stored keys of both hashes (what SCRAM checks)."""
    results = []
    for hash_name in ("sha-1", "sha-256"):
        stored = await accounts.credentials(HOST, user, hash_name)
        assert stored is not None and stored.iterations == 4096
        candidate = derive_scram_credentials(password, hash_name, salt=stored.salt, iterations=stored.iterations)
        results.append(candidate == stored)
    assert results[0] == results[1]
    return results[0]


async def test_create_stores_keys_that_verify_the_password(accounts: AccountManager) -> None:
    assert await accounts.create(HOST, "alice", PASSWORD) == "alice"
    assert await accounts.exists(HOST, "alice")
    assert await accounts.users(HOST) == ["alice"]
    assert await verifies(accounts, "alice", PASSWORD)
    assert not await verifies(accounts, "alice", PASSWORD + "!")


async def test_the_stored_document_holds_no_plaintext(accounts: AccountManager, storage: StorageDriver) -> None:
    await accounts.create(HOST, "alice", PASSWORD)
    document = await storage.keyval(HOST, "accounts").get("alice")
    text = json.dumps(document, ensure_ascii=False)
    assert PASSWORD not in text
    for encoded in (PASSWORD.encode(), base64.b64encode(PASSWORD.encode())):
        assert encoded.decode() not in text
    assert isinstance(document, dict) and set(document["scram"]) == {"sha-1", "sha-256"}


async def test_usernames_are_normalised(accounts: AccountManager) -> None:
    # RFC 7622 §3.3 / RFC 8265 UsernameCaseMapped: case-folded, width-mapped.
    assert await accounts.create(HOST, "Ｂob", PASSWORD) == "bob"
    assert await accounts.exists(HOST, "bob")
    with pytest.raises(AccountError, match="already exists"):
        await accounts.create(HOST, "BOB", "another password")
    assert await verifies(accounts, "bob", PASSWORD)


async def test_a_duplicate_account_is_refused(accounts: AccountManager) -> None:
    await accounts.create(HOST, "alice", PASSWORD)
    with pytest.raises(AccountError, match="already exists"):
        await accounts.create(HOST, "alice", "other")
    assert await verifies(accounts, "alice", PASSWORD)  # the first password still works


async def test_hosts_are_separate(accounts: AccountManager) -> None:
    await accounts.create(HOST, "alice", PASSWORD)
    assert not await accounts.exists("example.org", "alice")
    assert await accounts.credentials("example.org", "alice", "sha-256") is None
    await accounts.create("example.org", "alice", "different")
    assert await accounts.users("example.org") == ["alice"]


async def test_set_password_replaces_the_keys(accounts: AccountManager) -> None:
    await accounts.create(HOST, "alice", PASSWORD)
    before = await accounts.credentials(HOST, "alice", "sha-256")
    await accounts.set_password(HOST, "Alice", "new secret")
    assert await verifies(accounts, "alice", "new secret")
    assert not await verifies(accounts, "alice", PASSWORD)
    after = await accounts.credentials(HOST, "alice", "sha-256")
    assert before is not None and after is not None and after.salt != before.salt  # a fresh salt


async def test_set_password_of_a_missing_account_fails(accounts: AccountManager) -> None:
    with pytest.raises(AccountError, match="does not exist"):
        await accounts.set_password(HOST, "nobody", PASSWORD)
    assert not await accounts.exists(HOST, "nobody")


async def test_delete(accounts: AccountManager) -> None:
    await accounts.create(HOST, "alice", PASSWORD)
    await accounts.create(HOST, "bob", PASSWORD)
    await accounts.delete(HOST, "ALICE")
    assert not await accounts.exists(HOST, "alice")
    assert await accounts.credentials(HOST, "alice", "sha-1") is None
    assert await accounts.users(HOST) == ["bob"]
    with pytest.raises(AccountError, match="does not exist"):
        await accounts.delete(HOST, "alice")


async def test_credentials_of_an_unknown_account_or_hash(accounts: AccountManager) -> None:
    assert await accounts.credentials(HOST, "nobody", "sha-256") is None
    await accounts.create(HOST, "alice", PASSWORD)
    assert await accounts.credentials(HOST, "alice", "sha-512") is None


@pytest.mark.parametrize("username", ["", "a@b", "with space", "al/ice", "<alice>", "x" * 1024, "a'b"])
async def test_invalid_usernames_are_refused(accounts: AccountManager, username: str) -> None:
    with pytest.raises(AccountError, match="invalid username"):
        normalize_username(username)
    with pytest.raises(AccountError):
        await accounts.create(HOST, username, PASSWORD)
    assert await accounts.users(HOST) == []


@pytest.mark.parametrize("password", ["", "tab\there", "bell\x07"])
async def test_unacceptable_passwords_are_refused(accounts: AccountManager, password: str) -> None:
    # RFC 8265 §4.2: OpaqueString refuses empty strings and control characters.
    with pytest.raises(AccountError):
        await accounts.create(HOST, "alice", password)
    assert not await accounts.exists(HOST, "alice")


# -- auth.cache_seconds ------------------------------------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr("xmppcore.server.auth.time.monotonic", clock)
    return clock


def count_reads(monkeypatch: pytest.MonkeyPatch, storage: StorageDriver) -> list[str]:
    reads: list[str] = []
    store_type = type(storage.keyval(HOST, "accounts"))
    get = store_type.get

    async def counted(self: object, user: str) -> object:
        reads.append(user)
        return await get(self, user)  # type: ignore[arg-type]

    monkeypatch.setattr(store_type, "get", counted)
    return reads


async def test_a_login_within_cache_seconds_reads_no_storage(
        storage: StorageDriver, clock: _Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    accounts = AccountManager(storage, iterations=4096, cache_seconds=5.0)
    await accounts.create(HOST, "alice", PASSWORD)
    reads = count_reads(monkeypatch, storage)
    first = await accounts.credentials(HOST, "alice", "sha-1")
    clock.now += 4.9
    assert await accounts.credentials(HOST, "alice", "sha-1") == first
    assert reads == ["alice"]
    clock.now += 0.2  # 5.1 s after the read: read again
    assert await accounts.credentials(HOST, "alice", "sha-1") == first
    assert reads == ["alice", "alice"]


async def test_changes_made_here_apply_at_once(storage: StorageDriver, clock: _Clock) -> None:
    accounts = AccountManager(storage, iterations=4096, cache_seconds=3600.0)
    await accounts.create(HOST, "alice", PASSWORD)
    assert await verifies(accounts, "alice", PASSWORD)
    await accounts.set_password(HOST, "alice", "new secret")
    assert await verifies(accounts, "alice", "new secret")  # not the cached keys
    await accounts.delete(HOST, "alice")
    assert await accounts.credentials(HOST, "alice", "sha-1") is None
    await accounts.create(HOST, "alice", "third")
    assert await verifies(accounts, "alice", "third")


async def test_changes_made_by_another_process_apply_within_cache_seconds(storage: StorageDriver, clock: _Clock) -> None:
    accounts = AccountManager(storage, iterations=4096, cache_seconds=5.0)
    other_process = AccountManager(storage, iterations=4096)  # `xmppcore passwd` on the same data
    await accounts.create(HOST, "alice", PASSWORD)
    assert await verifies(accounts, "alice", PASSWORD)
    await other_process.set_password(HOST, "alice", "changed elsewhere")
    assert await verifies(accounts, "alice", PASSWORD)  # still cached
    clock.now += 5.0
    assert await verifies(accounts, "alice", "changed elsewhere")
    await other_process.delete(HOST, "alice")
    clock.now += 5.0
    assert await accounts.credentials(HOST, "alice", "sha-1") is None


async def test_unknown_accounts_are_not_cached(storage: StorageDriver, clock: _Clock) -> None:
    accounts = AccountManager(storage, iterations=4096, cache_seconds=3600.0)
    other_process = AccountManager(storage, iterations=4096)
    assert await accounts.credentials(HOST, "alice", "sha-1") is None
    await other_process.create(HOST, "alice", PASSWORD)
    assert await verifies(accounts, "alice", PASSWORD)  # made elsewhere, usable at once


async def test_the_cache_lets_go_of_what_expired(storage: StorageDriver, clock: _Clock) -> None:
    accounts = AccountManager(storage, iterations=4096, cache_seconds=5.0)
    for name in ("alice", "bob", "carol"):
        await accounts.create(HOST, name, PASSWORD)
        await accounts.credentials(HOST, name, "sha-1")
    assert len(accounts._cache) == 3
    clock.now += 6.0
    await accounts.credentials(HOST, "alice", "sha-1")  # a login later: the stale ones go
    assert list(accounts._cache) == [(HOST, "alice")]

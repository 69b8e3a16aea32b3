"""Group commit in the SQLite driver (docs/decisions/0003-durability.md).

Concurrent writes share one transaction, hence one fsync of the WAL; each caller returns only
once its write is committed, a write that fails on its own fails only its caller, and a batch
whose transaction fails fails its own callers and no others.  The database is checked behind
the driver's back with a second connection; failures are made by SQLite itself, with triggers
that refuse a given user (``RAISE(ABORT)`` undoes one statement, ``RAISE(ROLLBACK)`` the whole
transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from xmppcore.storage import StorageDriver, StorageError, create_driver
from xmppcore.storage.sqlite_thread import SqliteThread

WRITERS = 200


def sql(path: Path, statement: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        return [tuple(row) for row in conn.execute(statement)]


def refuse(path: Path, user: str, how: str) -> None:
    """Make SQLite refuse every archive row of ``user``: ``ABORT`` or ``ROLLBACK``."""
    sql(path, f"CREATE TRIGGER refuse_{how} BEFORE INSERT ON archive WHEN NEW.\"user\" = '{user}' "
              f"BEGIN SELECT RAISE({how}, 'refused by the test'); END")


def archived_users(path: Path) -> list[str]:
    return [row[0] for row in sql(path, 'SELECT "user" FROM archive ORDER BY id')]


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[tuple[StorageDriver, Path]]:
    path = tmp_path / "db.sqlite3"
    driver = create_driver("sqlite", path=str(path))
    await driver.open()
    try:
        yield driver, path
    finally:
        await driver.close()


async def append(driver: StorageDriver, user: str) -> str:
    return await driver.archive("h", "offline").append(user, {"xml": f"<message>{user}</message>"}, when=1.0)


async def test_every_awaited_write_is_committed(opened: tuple[StorageDriver, Path]) -> None:
    driver, path = opened
    users = [f"u{n}" for n in range(WRITERS)]

    async def write(user: str) -> None:
        await append(driver, user)
        await driver.keyval("h", "kv").set(user, {"n": user})
        await driver.map("h", "map").set(user, "k", user)
        # Returned means committed: a second connection sees it at once.
        assert sql(path, f"SELECT COUNT(*) FROM keyval WHERE \"user\" = '{user}'") == [(1,)]

    await asyncio.gather(*(write(user) for user in users))
    assert sorted(archived_users(path)) == sorted(users)
    assert sql(path, "SELECT COUNT(*) FROM map") == [(WRITERS,)]
    assert [await driver.keyval("h", "kv").get(user) for user in users] == [{"n": user} for user in users]


async def test_concurrent_writes_share_a_commit(opened: tuple[StorageDriver, Path]) -> None:
    driver, path = opened
    wal = Path(f"{path}-wal")
    before = wal.stat().st_size
    await asyncio.gather(*(append(driver, f"u{n}") for n in range(WRITERS)))
    # Each commit appends the pages it changed to the WAL (a row and three index entries: four
    # pages at least).  One commit per write would add WRITERS * 4 frames of 4 KiB; one commit
    # for all adds a handful.
    frames = (wal.stat().st_size - before) // 4096
    assert frames < WRITERS // 4, f"{frames} WAL frames for {WRITERS} concurrent appends"
    assert len(archived_users(path)) == WRITERS


async def test_a_statement_that_fails_alone_fails_only_its_caller(opened: tuple[StorageDriver, Path]) -> None:
    driver, path = opened
    refuse(path, "doomed", "ABORT")
    users = [f"u{n}" for n in range(50)]
    users.insert(25, "doomed")
    outcomes = await asyncio.gather(*(append(driver, user) for user in users), return_exceptions=True)
    failed = [user for user, outcome in zip(users, outcomes, strict=True) if isinstance(outcome, BaseException)]
    assert failed == ["doomed"]
    assert isinstance(outcomes[25], StorageError) and isinstance(outcomes[25].__cause__, sqlite3.Error)
    assert sorted(archived_users(path)) == sorted(u for u in users if u != "doomed")


async def test_a_failed_transaction_fails_its_batch_and_no_other(opened: tuple[StorageDriver, Path]) -> None:
    driver, path = opened
    refuse(path, "doomed", "ROLLBACK")
    first = [f"first{n}" for n in range(20)]
    await asyncio.gather(*(append(driver, user) for user in first))

    doomed_batch = [f"second{n}" for n in range(20)] + ["doomed"]
    outcomes = await asyncio.gather(*(append(driver, user) for user in doomed_batch), return_exceptions=True)
    assert all(isinstance(outcome, StorageError) for outcome in outcomes), outcomes

    last = [f"third{n}" for n in range(20)]
    await asyncio.gather(*(append(driver, user) for user in last))
    assert archived_users(path) == first + last  # nothing of the failed batch, everything else
    assert await driver.archive("h", "offline").count("third0") == 1


async def test_close_commits_what_was_queued_and_refuses_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    driver = create_driver("sqlite", path=str(path))
    await driver.open()
    writes = [asyncio.ensure_future(append(driver, f"u{n}")) for n in range(50)]
    await asyncio.sleep(0)  # a yield: every write is queued
    await driver.close()
    assert all(write.done() and write.exception() is None for write in writes)
    assert len(archived_users(path)) == 50
    with pytest.raises(StorageError):
        await append(driver, "late")


async def test_a_cancelled_caller_does_not_stop_its_write_or_the_others(opened: tuple[StorageDriver, Path]) -> None:
    driver, path = opened
    impatient = asyncio.ensure_future(append(driver, "impatient"))
    others = [asyncio.ensure_future(append(driver, f"u{n}")) for n in range(10)]
    await asyncio.sleep(0)  # a yield: all of them are queued
    impatient.cancel()
    await asyncio.gather(*others)
    with pytest.raises(asyncio.CancelledError):
        await impatient
    await append(driver, "after")  # the driver carries on
    assert sorted(archived_users(path)) == sorted(["impatient", "after", *(f"u{n}" for n in range(10))])


async def test_reads_run_between_batches(opened: tuple[StorageDriver, Path]) -> None:
    driver, _ = opened
    store = driver.archive("h", "offline")
    await append(driver, "reader")

    async def read() -> int:
        return await store.count("reader")

    results = await asyncio.gather(*(append(driver, "reader") if n % 2 else read() for n in range(40)))
    counts = [result for n, result in enumerate(results) if n % 2 == 0]
    assert all(isinstance(count, int) and 1 <= count <= 21 for count in counts)
    assert await store.count("reader") == 21


async def test_callers_are_answered_in_order_while_the_next_round_runs(
    opened: tuple[StorageDriver, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A big round is answered in two halves, and the first half's next writes go to the thread
    before the second half is answered (sqlite_commit.Statements._split): the loop and the
    thread work side by side, and every write still lands in the order its caller made it."""
    driver, path = opened
    users = [f"u{n:03d}" for n in range(100)]
    events: list[str] = []
    submit = SqliteThread.submit

    def spied(self: SqliteThread, fn: Any) -> Any:
        events.append("round")
        return submit(self, fn)

    monkeypatch.setattr(SqliteThread, "submit", spied)

    async def write_twice(user: str) -> None:
        await append(driver, user)
        events.append(user)
        assert sql(path, f"SELECT COUNT(*) FROM archive WHERE \"user\" = '{user}'") == [(1,)]  # committed
        await append(driver, user)

    await asyncio.gather(*(write_twice(user) for user in users))
    # One round for the first appends; its callers answered in order, with the round of the
    # first half's second appends started between u049 and u050.
    answered = events[events.index("round") + 1:]
    assert answered[:51] == [*users[:50], "round"], answered[:52]
    assert [event for event in answered if event != "round"] == users
    # Every write lands in the order its caller made it.
    assert archived_users(path) == users + users


async def test_a_write_that_is_not_urgent_goes_before_the_next_urgent_one(opened: tuple[StorageDriver, Path]) -> None:
    driver, path = opened
    last = driver.keyval("h", "last")
    lazy = asyncio.ensure_future(last.set("u", {"n": 1}, urgent=False))
    await asyncio.sleep(0)  # a yield: it is queued
    assert await last.get("u") is None  # a read does not wait for it (KeyValueStore.set)
    assert not lazy.done()
    await last.set("u", {"n": 2})  # urgent: the waiting write is committed first, in order
    await lazy
    assert await last.get("u") == {"n": 2}
    assert sql(path, "SELECT value FROM keyval WHERE \"user\" = 'u'") == [('{"n":2}',)]


async def test_a_write_that_is_not_urgent_is_committed_alone_after_a_while(opened: tuple[StorageDriver, Path]) -> None:
    driver, path = opened
    await driver.keyval("h", "last").set("u", {"n": 1}, urgent=False)  # returns once committed
    assert sql(path, "SELECT COUNT(*) FROM keyval WHERE \"user\" = 'u'") == [(1,)]


async def test_closing_commits_the_writes_that_are_not_urgent(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    driver = create_driver("sqlite", path=str(path))
    await driver.open()
    lazy = asyncio.ensure_future(driver.keyval("h", "last").set("u", {"n": 1}, urgent=False))
    await asyncio.sleep(0)  # a yield: it is queued
    await driver.close()
    await lazy
    assert sql(path, "SELECT COUNT(*) FROM keyval WHERE \"user\" = 'u'") == [(1,)]

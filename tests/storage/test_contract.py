"""The storage contract (xmppcore.storage.api), run against every driver.

Each test takes `driver`/`backend` (memory, sqlite, postgres) or `persistent_backend` (the two
SQL drivers) from conftest.py; the postgres cases skip when no server is reachable.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.storage.conftest import Backend
from xmppcore.storage import ArchiveItem, ArchiveStore, StorageDriver, StorageError, create_driver

UNICODE_NAMES = ("Zoë", "alice", "Émile", "日本語", "ﾊﾝｶｸ", "עברית", "e\u0301", "🦊")


# -- keyval -------------------------------------------------------------------------------------

async def test_keyval_set_get_overwrite_delete(driver: StorageDriver) -> None:
    store = driver.keyval("example.org", "account")
    assert await store.get("juliet") is None
    await store.set("juliet", {"password": "x", "n": 1})
    assert await store.get("juliet") == {"password": "x", "n": 1}
    await store.set("juliet", ["replaced"])
    assert await store.get("juliet") == ["replaced"]
    await store.set("juliet", None)
    assert await store.get("juliet") is None
    await store.set("nobody", None)  # deleting what is not there is fine
    assert await store.users() == []


@pytest.mark.parametrize("value", [
    {"a": {"b": [1, 2.5, None, True]}}, [], {}, "", 0, 0.0, False, "null", -(2**62), 1e300,
])
async def test_values_round_trip_as_json(driver: StorageDriver, value: Any) -> None:
    await driver.keyval("h", "s").set("u", value)
    await driver.map("h", "s").set("u", "k", value)
    await driver.archive("h", "s").append("u", value, when=1.0)
    assert await driver.keyval("h", "s").get("u") == value
    assert await driver.map("h", "s").get("u", "k") == value
    assert [item.value for item in await driver.archive("h", "s").query("u")] == [value]


async def test_values_come_back_with_json_semantics(driver: StorageDriver) -> None:
    store = driver.keyval("h", "s")
    original: dict[str, Any] = {"t": ("a", 1), "n": {1: "int key"}}
    await store.set("u", original)
    assert await store.get("u") == {"t": ["a", 1], "n": {"1": "int key"}}
    original["t"] = "mutated after set"
    assert await store.get("u") == {"t": ["a", 1], "n": {"1": "int key"}}


@pytest.mark.parametrize("bad", [object(), float("nan"), {"x": {1, 2}}, "\ud800"])
async def test_unencodable_values_are_refused_and_not_stored(
    driver: StorageDriver, bad: Any
) -> None:
    with pytest.raises((TypeError, ValueError)):
        await driver.keyval("h", "s").set("u", bad)
    with pytest.raises((TypeError, ValueError)):
        await driver.archive("h", "s").append("u", bad, when=0.0)
    assert await driver.keyval("h", "s").get("u") is None
    assert await driver.archive("h", "s").count("u") == 0


async def test_keyval_users_are_sorted_by_code_point(driver: StorageDriver) -> None:
    store = driver.keyval("example.org", "roster")
    for name in UNICODE_NAMES:
        await store.set(name, {"name": name})
    assert await store.users() == sorted(UNICODE_NAMES)
    await store.set("alice", None)
    assert await store.users() == sorted(set(UNICODE_NAMES) - {"alice"})
    for name in UNICODE_NAMES:
        assert await store.get(name) == ({"name": name} if name != "alice" else None)


async def test_keyval_isolated_by_host_store_and_user(driver: StorageDriver) -> None:
    places = [("a.example", "vcard"), ("b.example", "vcard"), ("a.example", "private")]
    for host, name in places:
        await driver.keyval(host, name).set("romeo", f"{host}/{name}")
    await driver.keyval("a.example", "vcard").set("juliet", "j")
    for host, name in places:
        assert await driver.keyval(host, name).get("romeo") == f"{host}/{name}"
    assert await driver.keyval("a.example", "vcard").users() == ["juliet", "romeo"]
    assert await driver.keyval("b.example", "vcard").users() == ["romeo"]
    await driver.keyval("a.example", "vcard").set("romeo", None)
    assert await driver.keyval("b.example", "vcard").get("romeo") == "b.example/vcard"
    assert await driver.keyval("a.example", "private").get("romeo") == "a.example/private"


# -- map ----------------------------------------------------------------------------------------

async def test_map_set_get_all_delete(driver: StorageDriver) -> None:
    store = driver.map("example.org", "roster")
    assert await store.get("juliet", "romeo@example.org") is None
    assert await store.get_all("juliet") == {}
    await store.set("juliet", "romeo@example.org", {"sub": "both"})
    await store.set("juliet", "nurse@example.org", {"sub": "none"})
    await store.set("juliet", "romeo@example.org", {"sub": "to"})
    assert await store.get("juliet", "romeo@example.org") == {"sub": "to"}
    assert await store.get_all("juliet") == {
        "romeo@example.org": {"sub": "to"}, "nurse@example.org": {"sub": "none"},
    }
    await store.set("juliet", "nurse@example.org", None)
    assert await store.get_all("juliet") == {"romeo@example.org": {"sub": "to"}}
    await store.set("juliet", "ghost", None)
    await store.delete_user("juliet")
    assert await store.get_all("juliet") == {}
    assert await store.get("juliet", "romeo@example.org") is None


async def test_map_isolated_by_host_store_and_user(driver: StorageDriver) -> None:
    for host, name, user in itertools.product(("a", "b"), ("roster", "blocklist"), ("u", "v")):
        await driver.map(host, name).set(user, "k", [host, name, user])
    await driver.map("a", "roster").delete_user("u")
    assert await driver.map("a", "roster").get_all("u") == {}
    for host, name, user in itertools.product(("a", "b"), ("roster", "blocklist"), ("u", "v")):
        if (host, name, user) != ("a", "roster", "u"):
            assert await driver.map(host, name).get_all(user) == {"k": [host, name, user]}


async def test_unicode_everywhere(driver: StorageDriver) -> None:
    host, name = "bücher.example", "日記"
    for user in UNICODE_NAMES:
        await driver.map(host, name).set(user, f"{user}@ñ.example", {"text": user * 3})
        await driver.archive(host, name).append(user, {"body": f"→ {user}"}, when=1.5,
                                                with_jid=f"{user}@ñ.example")
    for user in UNICODE_NAMES:
        assert await driver.map(host, name).get_all(user) == {
            f"{user}@ñ.example": {"text": user * 3},
        }
        [item] = await driver.archive(host, name).query(user, with_jid=f"{user}@ñ.example")
        assert (item.value, item.with_jid) == ({"body": f"→ {user}"}, f"{user}@ñ.example")


# -- archive ------------------------------------------------------------------------------------

# (when, with_jid): times deliberately out of insertion order, ties included.
ARCHIVE_ROWS = [(5.0, "a@x"), (1.0, "b@x"), (3.0, ""), (3.0, "a@x"),
                (7.0, "b@x"), (2.0, "a@x"), (9.0, ""), (4.0, "a@x")]


async def fill_archive(store: ArchiveStore, user: str = "juliet") -> list[str]:
    return [await store.append(user, {"n": n}, when=when, with_jid=with_jid)
            for n, (when, with_jid) in enumerate(ARCHIVE_ROWS)]


def model_query(items: Sequence[ArchiveItem], *, start: float | None = None,
                end: float | None = None, with_jid: str | None = None,
                after_id: str | None = None, before_id: str | None = None,
                limit: int | None = None, reverse: bool = False,
                ids: Sequence[str] | None = None) -> list[str]:
    """What query() must return (ids), written out from the contract for comparison."""
    order = {item.id: position for position, item in enumerate(items)}
    found = [item.id for item in items
             if (start is None or item.when >= start) and (end is None or item.when <= end)
             and (with_jid is None or item.with_jid == with_jid)
             and (after_id is None or order[item.id] > order[after_id])
             and (before_id is None or order[item.id] < order[before_id])
             and (ids is None or item.id in ids)]
    found = found[::-1] if reverse else found
    return found if limit is None else found[:limit]


async def test_keyval_writes_that_are_not_urgent_are_stored_all_the_same(driver: StorageDriver) -> None:
    store = driver.keyval("example.org", "last")
    await store.set("juliet", {"when": 1.0}, urgent=False)  # returns once stored
    assert await store.get("juliet") == {"when": 1.0}
    await store.set("juliet", None, urgent=False)
    assert await store.get("juliet") is None


async def test_archive_keeps_insertion_order_and_fields(driver: StorageDriver) -> None:
    store = driver.archive("example.org", "mam")
    ids = await fill_archive(store)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)  # ids sort as strings in insertion order
    items = await store.query("juliet")
    assert [item.id for item in items] == ids
    assert [(item.when, item.with_jid) for item in items] == ARCHIVE_ROWS
    assert [item.value for item in items] == [{"n": n} for n in range(len(ARCHIVE_ROWS))]
    assert [item.id for item in await store.query("juliet", reverse=True)] == ids[::-1]
    assert await store.count("juliet") == len(ARCHIVE_ROWS)
    assert await store.query("romeo") == [] and await store.count("romeo") == 0


async def test_archive_each_filter(driver: StorageDriver) -> None:
    store = driver.archive("example.org", "mam")
    ids = await fill_archive(store)

    async def picked(**filters: Any) -> list[int]:
        return [ids.index(item.id) for item in await store.query("juliet", **filters)]

    assert await picked(start=3.0) == [0, 2, 3, 4, 6, 7]  # XEP-0313 §4.1.2: inclusive
    assert await picked(end=3.0) == [1, 2, 3, 5]
    assert await picked(start=3.0, end=3.0) == [2, 3]
    assert await picked(with_jid="a@x") == [0, 3, 5, 7]
    assert await picked(with_jid="") == [2, 6]
    assert await picked(with_jid="nobody@x") == []
    assert await picked(after_id=ids[5]) == [6, 7]
    assert await picked(before_id=ids[2]) == [0, 1]
    assert await picked(after_id=ids[1], before_id=ids[4]) == [2, 3]
    assert await picked(ids=[ids[6], ids[1], ids[6]]) == [1, 6]
    assert await picked(limit=3) == [0, 1, 2]
    assert await picked(limit=3, reverse=True) == [7, 6, 5]
    assert await picked(limit=0) == []
    assert await picked(limit=100) == list(range(8))


async def test_archive_every_filter_combination(driver: StorageDriver) -> None:
    store = driver.archive("example.org", "mam")
    ids = await fill_archive(store)
    await fill_archive(store, user="romeo")  # must never leak into juliet's results
    items = await store.query("juliet")
    options: dict[str, Sequence[Any]] = {
        "start": (None, 3.0), "end": (None, 7.0), "with_jid": (None, "a@x", ""),
        "after_id": (None, ids[1]), "before_id": (None, ids[6]),
        "ids": (None, [ids[0], ids[2], ids[5], ids[7]]), "limit": (None, 0, 2),
        "reverse": (False, True),
    }
    for combination in itertools.product(*options.values()):
        filters = dict(zip(options, combination))
        found = [item.id for item in await store.query("juliet", **filters)]
        assert found == model_query(items, **filters), filters


async def test_archive_paging_forward_and_backward(driver: StorageDriver) -> None:
    store = driver.archive("example.org", "offline")
    ids = [await store.append("juliet", n, when=100.0 + n) for n in range(10)]
    pages: list[list[str]] = []
    after: str | None = None
    while page := [item.id for item in await store.query("juliet", after_id=after, limit=3)]:
        pages.append(page)
        after = page[-1]
    assert pages == [ids[0:3], ids[3:6], ids[6:9], ids[9:]]
    # RSM "last page" then "before": newest first with the limit, callers flip each page.
    backward: list[list[str]] = []
    before: str | None = None
    while page := [item.id for item in
                   await store.query("juliet", before_id=before, limit=4, reverse=True)]:
        backward.append(page[::-1])
        before = page[-1]
    assert backward == [ids[6:10], ids[2:6], ids[0:2]]


async def test_archive_ids_that_are_not_ours(driver: StorageDriver) -> None:
    store = driver.archive("example.org", "mam")
    ids = await fill_archive(store)
    for bogus in ("", "nope", "12", "-" + ids[0][1:], ids[0] + "0", "٣" * len(ids[0])):
        assert await store.query("juliet", after_id=bogus) == []
        assert await store.query("juliet", before_id=bogus) == []
        assert await store.query("juliet", ids=[bogus]) == []
        assert await store.delete("juliet", [bogus]) == 0
    # A well-formed id that was never issued still orders: it lies beyond every item.
    beyond = str(10**18).rjust(len(ids[0]), "0")
    assert [item.id for item in await store.query("juliet", before_id=beyond)] == ids
    assert await store.query("juliet", after_id=beyond) == []
    assert await store.query("juliet", ids=[beyond]) == []
    with pytest.raises(ValueError):
        await store.query("juliet", limit=-1)
    assert await store.count("juliet") == len(ids)


async def test_archive_delete_by_ids_and_all(driver: StorageDriver) -> None:
    store = driver.archive("example.org", "offline")
    ids = await fill_archive(store)
    romeo_ids = await fill_archive(store, user="romeo")
    other_store = driver.archive("example.org", "mam")
    await fill_archive(other_store)
    assert await store.delete("juliet", []) == 0
    assert await store.delete("juliet", [ids[1], ids[4], ids[4], romeo_ids[0]]) == 2
    assert [item.id for item in await store.query("juliet")] == [
        i for i in ids if i not in (ids[1], ids[4])]
    assert await store.delete("juliet", [ids[1]]) == 0
    assert await store.count("juliet") == 6
    assert await store.delete("juliet") == 6
    assert await store.count("juliet") == 0 and await store.query("juliet") == []
    assert await store.count("romeo") == len(ARCHIVE_ROWS)
    assert await other_store.count("juliet") == len(ARCHIVE_ROWS)
    assert await store.delete("juliet") == 0


async def test_archive_ids_are_never_reused(driver: StorageDriver) -> None:
    store = driver.archive("example.org", "offline")
    first = [await store.append("juliet", n, when=1.0) for n in range(3)]
    assert await store.delete("juliet", [first[-1]]) == 1
    assert await store.delete("juliet") == 2
    later = await store.append("juliet", 3, when=1.0)
    assert later not in first and later > max(first)


async def test_archive_start_append_names_the_entry_at_once_and_says_when_it_is_committed(
        driver: StorageDriver) -> None:
    store = driver.archive("example.org", "mam")
    before = await store.append("juliet", 0, when=1.0)
    started = [await store.start_append("juliet", n, when=2.0, with_jid="romeo@x") for n in (1, 2)]
    after = await store.append("juliet", 3, when=3.0)
    for _, committed in started:
        assert await committed is None
    ids = [before, *(archive_id for archive_id, _ in started), after]
    assert len(set(ids)) == 4
    items = await store.query("juliet")
    assert [(item.id, item.value) for item in items] == list(zip(ids, range(4), strict=True))
    assert [item.id for item in await store.query("juliet", with_jid="romeo@x")] == ids[1:3]


async def test_archive_isolated_by_host_and_store(driver: StorageDriver) -> None:
    stores = [driver.archive(h, s) for h, s in (("a", "mam"), ("b", "mam"), ("a", "offline"))]
    for n, store in enumerate(stores):
        await store.append("juliet", n, when=1.0, with_jid="romeo@x")
    for n, store in enumerate(stores):
        assert [item.value for item in await store.query("juliet", with_jid="romeo@x")] == [n]


async def test_concurrent_appends_all_land_with_unique_ids(driver: StorageDriver) -> None:
    store = driver.archive("example.org", "mam")
    ids = await asyncio.gather(*(store.append("juliet", n, when=float(n)) for n in range(50)))
    assert len(set(ids)) == 50
    items = await store.query("juliet")
    assert sorted(item.value for item in items if isinstance(item.value, int)) == list(range(50))
    assert [item.id for item in items] == sorted(ids)


# -- lifecycle, durability, schema ----------------------------------------------------------------

async def test_stores_need_an_open_driver(backend: Backend) -> None:
    driver = backend.make()
    keyval, archive = driver.keyval("h", "s"), driver.archive("h", "s")  # made before open
    with pytest.raises(StorageError):
        await keyval.get("u")
    await driver.open()
    await driver.open()  # a second open is harmless
    await keyval.set("u", 1)
    await archive.append("u", 2, when=0.0)
    await driver.close()
    await driver.close()
    with pytest.raises(StorageError):
        await keyval.set("u", 3)
    with pytest.raises(StorageError):
        await archive.count("u")
    await driver.open()
    assert await keyval.get("u") == 1 and await archive.count("u") == 1


async def write_one_of_each(driver: StorageDriver) -> str:
    await driver.keyval("h", "account").set("juliet", {"v": 1})
    await driver.map("h", "roster").set("juliet", "romeo@h", {"sub": "both"})
    return await driver.archive("h", "offline").append("juliet", {"body": "hi"}, when=42.0)


async def test_data_survives_close_and_reopen(persistent_backend: Backend) -> None:
    first = persistent_backend.make()
    await first.open()
    item_id = await write_one_of_each(first)
    await first.close()
    second = persistent_backend.make()
    await second.open()
    assert await second.keyval("h", "account").get("juliet") == {"v": 1}
    assert await second.map("h", "roster").get_all("juliet") == {"romeo@h": {"sub": "both"}}
    [item] = await second.archive("h", "offline").query("juliet")
    assert (item.id, item.when, item.value) == (item_id, 42.0, {"body": "hi"})
    assert await second.archive("h", "offline").append("juliet", 2, when=43.0) > item_id


async def test_archive_ids_never_come_back_after_reopening(persistent_backend: Backend) -> None:
    first = persistent_backend.make()
    await first.open()
    store = first.archive("h", "mam")
    used = [await store.append("juliet", n, when=1.0) for n in range(3)]
    newest, committed = await store.start_append("juliet", 3, when=1.0)
    await committed
    used.append(newest)
    assert await store.delete("juliet", [newest]) == 1  # the newest row is gone, its id is not free
    await first.close()
    second = persistent_backend.make()
    await second.open()
    again = await second.archive("h", "mam").append("juliet", 4, when=2.0)
    later, _ = await second.archive("h", "mam").start_append("juliet", 5, when=2.0)
    assert again not in used and later not in used
    numbers = [int(archive_id) for archive_id in [*used, again, later]]
    assert numbers == sorted(numbers)  # still in the order they were made


async def test_each_write_is_committed_when_it_returns(persistent_backend: Backend) -> None:
    writer, reader = persistent_backend.make(), persistent_backend.make()
    await writer.open()
    await reader.open()
    item_id = await write_one_of_each(writer)
    assert await reader.keyval("h", "account").get("juliet") == {"v": 1}
    assert await reader.map("h", "roster").get("juliet", "romeo@h") == {"sub": "both"}
    assert [item.id for item in await reader.archive("h", "offline").query("juliet")] == [item_id]


async def test_migrations_are_idempotent(persistent_backend: Backend) -> None:
    assert persistent_backend.run_sql is not None
    drivers = [persistent_backend.make() for _ in range(3)]
    await asyncio.gather(*(driver.open() for driver in drivers))  # racing nodes
    await write_one_of_each(drivers[0])
    for driver in drivers:
        await driver.close()
    again = persistent_backend.make()
    await again.open()
    assert await again.keyval("h", "account").get("juliet") == {"v": 1}
    assert await persistent_backend.run_sql("SELECT version FROM schema_version") == [(1,)]


async def test_newer_schema_is_refused(persistent_backend: Backend) -> None:
    assert persistent_backend.run_sql is not None
    driver = persistent_backend.make()
    await driver.open()
    await driver.close()
    await persistent_backend.run_sql(
        "INSERT INTO schema_version (version, applied_at) VALUES (999, 0)")
    with pytest.raises(StorageError, match="newer"):
        await persistent_backend.make().open()


async def test_corrupt_stored_value_is_a_storage_error(persistent_backend: Backend) -> None:
    assert persistent_backend.run_sql is not None
    driver = persistent_backend.make()
    await driver.open()
    await write_one_of_each(driver)
    await persistent_backend.run_sql("UPDATE keyval SET value = '{not json'")
    with pytest.raises(StorageError) as caught:
        await driver.keyval("h", "account").get("juliet")
    assert isinstance(caught.value.__cause__, ValueError)


# -- driver-specific setup and failures ---------------------------------------------------------

async def test_sqlite_creates_parent_dirs_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "xmpp.db"
    driver = create_driver("sqlite", path=str(path))
    await driver.open()
    await write_one_of_each(driver)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    await driver.close()


async def test_sqlite_path_that_is_a_directory_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as caught:
        await create_driver("sqlite", path=str(tmp_path)).open()
    assert isinstance(caught.value.__cause__, sqlite3.Error)


@pytest.mark.parametrize("dsn", [
    "postgresql://postgres@127.0.0.1:1/test",  # nothing listens on port 1
    "postgresql://postgres@127.0.0.1:1/test?sslmode=bogus",
    "not a dsn",
])
async def test_postgres_bad_dsn_is_a_storage_error(dsn: str) -> None:
    pytest.importorskip("asyncpg", reason="asyncpg is not installed")
    driver = create_driver("postgres", dsn=dsn)
    with pytest.raises(StorageError) as caught:
        await driver.open()
    assert caught.value.__cause__ is not None
    with pytest.raises(StorageError):
        await driver.keyval("h", "s").get("u")


@pytest.mark.parametrize(("kind", "options"), [
    ("mongodb", {}), ("sqlite", {}), ("postgres", {}), ("sqlite", {"path": ""}),
])
def test_create_driver_refuses_unknown_kinds_and_missing_options(
    kind: str, options: dict[str, str]
) -> None:
    with pytest.raises(ValueError):
        create_driver(kind, **options)

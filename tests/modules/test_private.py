"""XEP-0049: Private XML Storage — an account's own XML fragments, keyed by namespace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.harness import DEFAULT_MODULES, FakeSession, ScenarioHarness, error_of, expect, xml
from xmppcore.modules.private import element_from_json, element_to_json, is_reserved_namespace
from xmppcore.storage.api import StorageError

PRIVATE = "jabber:iq:private"
MODULES = (*DEFAULT_MODULES, "private")
PREFS = "<prefs xmlns='x:prefs'><nick>Hamlet</nick><lang xml:lang='en'>mixed <b>text</b> tail</lang></prefs>"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[ScenarioHarness]:
    async with ScenarioHarness.running(tmp_path, modules=MODULES) as harness:
        await harness.add_user("alice")
        await harness.add_user("bob")
        yield harness


async def ask(h: ScenarioHarness, session: FakeSession, kind: str, inner: str, to: str = "") -> list[str]:
    to_attr = f" to='{to}'" if to else ""
    await h.send(session, f"<iq type='{kind}' id='p'{to_attr}><query xmlns='{PRIVATE}'>{inner}</query></iq>")
    return session.take_xml()


async def stored(h: ScenarioHarness, user: str) -> dict[str, object]:
    return dict(await h.server.storage.map("localhost", "private").get_all(user))


def result(inner: str | None = None) -> list[str]:
    if inner is None:
        return expect("<iq type='result' id='p' to='alice@localhost/phone'/>")
    return expect(f"<iq type='result' id='p' to='alice@localhost/phone'><query xmlns='{PRIVATE}'>{inner}</query></iq>")


async def test_store_and_retrieve_a_fragment(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    assert await ask(h, alice, "set", PREFS) == result()
    assert await ask(h, alice, "get", "<prefs xmlns='x:prefs'/>") == result(PREFS)


async def test_nothing_stored_answers_with_the_requested_element_empty(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    assert await ask(h, alice, "get", "<storage xmlns='storage:bookmarks'><ignored/></storage>") == \
        result("<storage xmlns='storage:bookmarks'/>")


async def test_a_set_replaces_what_its_namespace_held(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await ask(h, alice, "set", PREFS)
    # §2.3: a set MAY hold several elements of one namespace; they are kept together.
    two = "<prefs xmlns='x:prefs'><nick>Ophelia</nick></prefs><more xmlns='x:prefs'/>"
    assert await ask(h, alice, "set", two) == result()
    assert await ask(h, alice, "get", "<prefs xmlns='x:prefs'/>") == result(two)


async def test_one_set_stores_each_namespace_on_its_own(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    assert await ask(h, alice, "set", "<a xmlns='x:one'>1</a><b xmlns='x:two'>2</b>") == result()
    assert await ask(h, alice, "get", "<a xmlns='x:one'/>") == result("<a xmlns='x:one'>1</a>")
    assert await ask(h, alice, "get", "<b xmlns='x:two'/>") == result("<b xmlns='x:two'>2</b>")
    await ask(h, alice, "set", "<a xmlns='x:one'>one</a>")
    assert await ask(h, alice, "get", "<b xmlns='x:two'/>") == result("<b xmlns='x:two'>2</b>")


async def test_the_data_is_kept_per_account(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await ask(h, alice, "set", PREFS)
    assert await ask(h, bob, "get", "<prefs xmlns='x:prefs'/>") == expect(
        f"<iq type='result' id='p' to='bob@localhost/pc'><query xmlns='{PRIVATE}'><prefs xmlns='x:prefs'/></query></iq>")


@pytest.mark.parametrize("kind", ["get", "set"])
async def test_another_accounts_data_is_forbidden(h: ScenarioHarness, kind: str) -> None:
    alice = await h.online("alice", "phone")
    await ask(h, alice, "set", PREFS)
    bob = await h.online("bob", "pc")
    await h.send(bob, f"<iq type='{kind}' id='p' to='alice@localhost'><query xmlns='{PRIVATE}'>"
                      "<prefs xmlns='x:prefs'><nick>Macbeth</nick></prefs></query></iq>")
    reply = bob.take_one()
    assert (reply.get("from"), error_of(reply)) == ("alice@localhost", ("auth", "forbidden"))
    assert await ask(h, alice, "get", "<prefs xmlns='x:prefs'/>") == result(PREFS)
    assert await stored(h, "bob") == {}


@pytest.mark.parametrize("fragment", [
    "<query xmlns='jabber:iq:roster'/>",
    "<x xmlns='jabber:x:data'/>",
    "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    "<vCard xmlns='vcard-temp'><FN>Hamlet</FN></vCard>",
    "<unqualified/>",                     # in jabber:iq:private itself: no namespace of its own
    "<prefs xmlns='x:prefs'/><q xmlns='jabber:iq:last'/>",
])
@pytest.mark.parametrize("kind", ["get", "set"])
async def test_reserved_namespaces_are_not_acceptable(h: ScenarioHarness, kind: str, fragment: str) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, f"<iq type='{kind}' id='p'><query xmlns='{PRIVATE}'>{fragment}</query></iq>")
    assert error_of(alice.take_one()) == ("modify", "not-acceptable")
    assert await stored(h, "alice") == {}


@pytest.mark.parametrize("kind", ["get", "set"])
async def test_a_query_without_a_fragment_is_a_bad_request(h: ScenarioHarness, kind: str) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, f"<iq type='{kind}' id='p'><query xmlns='{PRIVATE}'>just text</query></iq>")
    assert error_of(alice.take_one()) == ("modify", "bad-request")


async def test_an_empty_element_clears_the_namespace(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await ask(h, alice, "set", PREFS + "<b xmlns='x:two'>2</b>")
    assert await ask(h, alice, "set", "<prefs xmlns='x:prefs'/>") == result()
    assert list(await stored(h, "alice")) == ["x:two"]
    assert await ask(h, alice, "get", "<prefs xmlns='x:prefs'/>") == result("<prefs xmlns='x:prefs'/>")


async def test_private_storage_is_not_a_server_service(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, f"<iq type='get' id='p' to='localhost'><query xmlns='{PRIVATE}'><a xmlns='x:a'/></query></iq>")
    assert error_of(alice.take_one()) == ("cancel", "service-unavailable")


async def test_oversized_data_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    async with ScenarioHarness.running(tmp_path, modules=MODULES, options={"private": {"max_size": 100}}) as h:
        await h.add_user("alice")
        alice = await h.online("alice", "phone")
        await ask(h, alice, "set", "<a xmlns='x:a'>small</a>")
        big = f"<a xmlns='x:a'>{'x' * 100}</a>"
        await h.send(alice, f"<iq type='set' id='p'><query xmlns='{PRIVATE}'><b xmlns='x:b'>ok</b>{big}</query></iq>")
        assert error_of(alice.take_one()) == ("modify", "not-acceptable")
        # Nothing of the refused set was written, not even the namespace that fitted.
        assert await stored(h, "alice") == {"x:a": [["a", "x:a", {}, ["small"]]]}


async def test_the_number_of_namespaces_is_limited(tmp_path: Path) -> None:
    async with ScenarioHarness.running(tmp_path, modules=MODULES, options={"private": {"max_namespaces": 2}}) as h:
        await h.add_user("alice")
        alice = await h.online("alice", "phone")
        assert await ask(h, alice, "set", "<a xmlns='x:a'>1</a><b xmlns='x:b'>1</b>") == result()
        await h.send(alice, f"<iq type='set' id='p'><query xmlns='{PRIVATE}'><c xmlns='x:c'>1</c></query></iq>")
        assert error_of(alice.take_one()) == ("modify", "not-acceptable")
        assert await ask(h, alice, "set", "<a xmlns='x:a'>2</a>") == result()   # updating is fine
        assert await ask(h, alice, "set", "<b xmlns='x:b'/>") == result()       # clearing frees one
        assert await ask(h, alice, "set", "<c xmlns='x:c'>1</c>") == result()
        assert sorted(await stored(h, "alice")) == ["x:a", "x:c"]


async def test_private_storage_is_advertised_for_accounts(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    info = "http://jabber.org/protocol/disco#info"
    await h.send(alice, f"<iq type='get' id='d' to='alice@localhost'><query xmlns='{info}'/></iq>")
    query = alice.take_one().find("query", info)
    assert query is not None and PRIVATE in [f.get("var") for f in query.findall("feature")]


@pytest.mark.parametrize(("ns", "reserved"), [
    ("jabber:iq:roster", True), ("jabber:x:oob", True), ("http://jabber.org/protocol/muc", True),
    ("vcard-temp", True), ("", True), ("storage:bookmarks", False), ("urn:xmpp:bookmarks:1", False),
    ("http://jabber.org", False), ("jabberx:prefs", False), ("vcard-temp:x:update", False),
])
def test_reserved_namespaces(ns: str, reserved: bool) -> None:
    assert is_reserved_namespace(ns) is reserved


def test_elements_survive_the_json_round_trip() -> None:
    el = xml(f"<query xmlns='{PRIVATE}'>{PREFS}<x xmlns='x:y' a='1'> <y/> </x></query>")
    assert element_from_json(element_to_json(el)) == el


@pytest.mark.parametrize("value", [None, "text", ["a", "b", {}], ["a", "b", {"k": 1}, []], ["a", "b", {}, [3]]])
def test_a_malformed_stored_element_is_a_storage_error(value: object) -> None:
    with pytest.raises(StorageError):
        element_from_json(value)  # type: ignore[arg-type]

"""RFC 6121 §2: roster get, set and remove, pushes to interested resources, versioning (§2.6)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.harness import DEFAULT_MODULES, FakeSession, ScenarioHarness, canonical, error_of, expect, xml
from xmppcore.modules.roster import NS_ROSTER_VER, Options, parse_roster_set
from xmppcore.stanza.errors import Condition, StanzaError
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_ROSTER

MODULES = (*DEFAULT_MODULES, "roster")
GET = "<iq type='get' id='g1'><query xmlns='jabber:iq:roster'/></iq>"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[ScenarioHarness]:
    async with ScenarioHarness.running(tmp_path, modules=MODULES, options={"roster": {"max_items": 3}}) as harness:
        await harness.add_user("alice")
        await harness.add_user("bob")
        yield harness


async def interested(h: ScenarioHarness, resource: str) -> FakeSession:
    """An available alice resource that has fetched its roster (§2.2)."""
    session = await h.online("alice", resource)
    await h.send(session, GET)
    session.take()
    return session


def roster_set(item: str, iq_id: str = "s1") -> str:
    return f"<iq type='set' id='{iq_id}'><query xmlns='jabber:iq:roster'>{item}</query></iq>"


def split(stanzas: list[Element]) -> tuple[list[Element], list[Element]]:
    """(pushes, everything else)."""
    pushes = [s for s in stanzas if s.get("type") == "set"]
    return pushes, [s for s in stanzas if s.get("type") != "set"]


def push_item(push: Element) -> str:
    """The pushed item, canonical, after checking the push envelope (§2.1.6)."""
    assert push.name == "iq" and push.get("type") == "set" and push.get("from") == "alice@localhost"
    query = push.find("query", NS_ROSTER)
    assert query is not None and query.get("ver")
    items = query.findall("item", NS_ROSTER)
    assert len(items) == 1
    return canonical(items[0])


def item(text: str) -> str:
    return canonical(xml(f"<query xmlns='jabber:iq:roster'>{text}</query>").elements().__next__())


# -- parsing a roster set (pure) -----------------------------------------------------------------
def query(text: str) -> Element:
    return xml(f"<query xmlns='jabber:iq:roster'>{text}</query>")


@pytest.mark.parametrize(("text", "condition"), [
    ("", Condition.BAD_REQUEST),                                                     # §2.3.3: one item
    ("<item jid='a@x'/><item jid='b@x'/>", Condition.BAD_REQUEST),
    ("<item/>", Condition.BAD_REQUEST),                                              # §2.1.2.3: jid required
    ("<item jid='a@@x'/>", Condition.BAD_REQUEST),
    ("<item jid=''/>", Condition.BAD_REQUEST),
    ("<item jid='a@x' subscription='bogus'/>", Condition.BAD_REQUEST),
    ("<item jid='a@x'><group>g</group><group>g</group></item>", Condition.BAD_REQUEST),  # duplicate group
    ("<item jid='a@x'><group/></item>", Condition.NOT_ACCEPTABLE),                   # empty group
    ("<item jid='a@x'><group>123456</group></item>", Condition.NOT_ACCEPTABLE),      # group too long
    ("<item jid='a@x' name='123456'/>", Condition.NOT_ACCEPTABLE),                   # name too long
])
def test_invalid_roster_sets_are_refused(text: str, condition: Condition) -> None:
    with pytest.raises(StanzaError) as refused:
        parse_roster_set(query(text), Options(max_name_length=5, max_group_length=5))
    assert refused.value.condition is condition


def test_server_controlled_attributes_are_ignored() -> None:
    # §2.1.2.5: in a roster set the server ignores every 'subscription' value but "remove";
    # 'ask' and 'approved' are the server's too (§2.1.2.1, §2.1.2.2).
    update = parse_roster_set(query("<item jid='A@X' subscription='both' ask='subscribe' approved='true' name='A'>"
                                    "<group>g1</group><group>g2</group></item>"), Options())
    assert (str(update.jid), update.remove, update.name, update.groups) == ("a@x", False, "A", ("g1", "g2"))
    assert parse_roster_set(query("<item jid='a@x' subscription='remove'/>"), Options()).remove


# -- get, set, remove ---------------------------------------------------------------------------
async def test_a_new_roster_is_empty(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, GET)
    assert alice.take_xml() == expect(
        "<iq to='alice@localhost/phone' type='result' id='g1'>"
        "<query xmlns='jabber:iq:roster'/></iq>")


async def test_adding_an_item_pushes_it_to_every_interested_resource(h: ScenarioHarness) -> None:
    phone = await interested(h, "phone")
    laptop = await interested(h, "laptop")
    bystander = await h.online("alice", "tablet")  # never asked for the roster: no pushes (§2.2)
    await h.send(phone, roster_set("<item jid='bob@localhost' name='Bob'><group>Friends</group></item>"))
    pushes, others = split(phone.take())
    assert [canonical(s) for s in others] == expect("<iq to='alice@localhost/phone' type='result' id='s1'/>")
    expected = item("<item jid='bob@localhost' name='Bob' subscription='none'><group>Friends</group></item>")
    assert [push_item(p) for p in pushes] == [expected]
    assert [push_item(p) for p in laptop.take()] == [expected]
    assert bystander.take() == []
    await h.send(phone, GET)
    result = phone.take_one()
    assert [canonical(i) for i in result.elements().__next__().elements()] == [expected]


async def test_updating_an_item_replaces_name_and_groups_and_keeps_the_subscription(h: ScenarioHarness) -> None:
    phone = await interested(h, "phone")
    await h.send(phone, roster_set("<item jid='bob@localhost' name='Bob'><group>A</group></item>"))
    phone.take()
    await h.send(phone, roster_set("<item jid='bob@localhost' subscription='both'><group>B</group><group>C</group></item>", "s2"))
    pushes, _ = split(phone.take())
    assert [push_item(p) for p in pushes] == [
        item("<item jid='bob@localhost' subscription='none'><group>B</group><group>C</group></item>")]


async def test_removing_an_item_pushes_subscription_remove(h: ScenarioHarness) -> None:
    phone = await interested(h, "phone")
    await h.send(phone, roster_set("<item jid='bob@localhost'/>"))
    phone.take()
    await h.send(phone, roster_set("<item jid='bob@localhost' subscription='remove'/>", "s2"))
    pushes, others = split(phone.take())
    assert [push_item(p) for p in pushes] == [item("<item jid='bob@localhost' subscription='remove'/>")]
    assert [s.get("type") for s in others] == ["result"]
    await h.send(phone, GET)
    assert phone.take_xml() == expect(
        "<iq to='alice@localhost/phone' type='result' id='g1'><query xmlns='jabber:iq:roster'/></iq>")


async def test_removing_an_unknown_item_is_item_not_found(h: ScenarioHarness) -> None:
    # §2.5.3.
    phone = await interested(h, "phone")
    await h.send(phone, roster_set("<item jid='nobody@localhost' subscription='remove'/>"))
    assert error_of(phone.take_one()) == ("cancel", "item-not-found")


@pytest.mark.parametrize(("text", "condition"), [
    ("<item jid='x@@localhost'/>", "bad-request"),
    ("<item jid='a@localhost'/><item jid='b@localhost'/>", "bad-request"),
    ("<item jid='a@localhost'><group/></item>", "not-acceptable"),
    ("<item jid='a@localhost'><group>g</group><group>g</group></item>", "bad-request"),
    ("<item jid='a@localhost' name='" + "n" * 1025 + "'/>", "not-acceptable"),
])
async def test_a_refused_set_changes_nothing_and_pushes_nothing(h: ScenarioHarness, text: str, condition: str) -> None:
    phone = await interested(h, "phone")
    laptop = await interested(h, "laptop")
    await h.send(phone, roster_set(text))
    assert error_of(phone.take_one()) == ("modify", condition)
    assert laptop.take() == []
    await h.send(phone, GET)
    assert phone.take_one().elements().__next__().children == []


async def test_the_roster_has_a_size_limit(h: ScenarioHarness) -> None:
    phone = await interested(h, "phone")
    for n in range(3):
        await h.send(phone, roster_set(f"<item jid='c{n}@localhost'/>"))
    phone.take()
    await h.send(phone, roster_set("<item jid='c9@localhost'/>"))
    assert error_of(phone.take_one())[1] == "policy-violation"  # type: ignore[index]
    await h.send(phone, roster_set("<item jid='c1@localhost' name='still fine'/>"))  # updates still work
    assert [s.get("type") for s in phone.take()] == ["set", "result"]


@pytest.mark.parametrize("iq_type", ["get", "set"])
async def test_another_account_may_not_touch_a_roster(h: ScenarioHarness, iq_type: str) -> None:
    # §2.3.3: forbidden for anyone but the account itself.
    bob = await h.online("bob", "pc")
    await h.send(bob, f"<iq type='{iq_type}' id='x' to='alice@localhost'><query xmlns='jabber:iq:roster'>"
                      "<item jid='bob@localhost'/></query></iq>" if iq_type == "set" else
                 "<iq type='get' id='x' to='alice@localhost'><query xmlns='jabber:iq:roster'/></iq>")
    reply = bob.take_one()
    assert reply.get("from") == "alice@localhost" and error_of(reply) == ("auth", "forbidden")


async def test_a_closed_session_gets_no_more_pushes(h: ScenarioHarness) -> None:
    phone = await interested(h, "phone")
    laptop = await interested(h, "laptop")
    await h.disconnect(laptop)
    laptop.take()
    await h.send(phone, roster_set("<item jid='bob@localhost'/>"))
    assert laptop.take() == []


# -- versioning (§2.6) -----------------------------------------------------------------------------
async def test_versioning(h: ScenarioHarness) -> None:
    phone = await h.online("alice", "phone")
    await h.send(phone, "<iq type='get' id='v1'><query xmlns='jabber:iq:roster' ver=''/></iq>")
    first = phone.take_one().elements().__next__()
    assert first.get("ver")
    # The same version again: an empty result (§2.6.3).
    await h.send(phone, f"<iq type='get' id='v2'><query xmlns='jabber:iq:roster' ver='{first.get('ver')}'/></iq>")
    assert phone.take_xml() == expect("<iq to='alice@localhost/phone' type='result' id='v2'/>")
    await h.send(phone, roster_set("<item jid='bob@localhost'/>"))
    pushes, _ = split(phone.take())
    pushed_ver = pushes[0].elements().__next__().get("ver")
    assert pushed_ver and pushed_ver != first.get("ver")
    # An old version: the whole roster with the version of the last push.
    await h.send(phone, f"<iq type='get' id='v3'><query xmlns='jabber:iq:roster' ver='{first.get('ver')}'/></iq>")
    full = phone.take_one().elements().__next__()
    assert full.get("ver") == pushed_ver and len(list(full.elements())) == 1
    # Without 'ver' the client does not use versioning: the roster comes without one.
    await h.send(phone, GET)
    assert phone.take_one().elements().__next__().get("ver") is None


async def test_versioning_is_advertised_as_a_stream_feature(h: ScenarioHarness) -> None:
    assert Element("ver", NS_ROSTER_VER) in h.host().stream_features


async def test_roster_and_version_survive_in_storage(h: ScenarioHarness) -> None:
    phone = await interested(h, "phone")
    await h.send(phone, roster_set("<item jid='bob@localhost' name='B'/>"))
    phone.take()
    laptop = await h.online("alice", "laptop")
    await h.send(laptop, "<iq type='get' id='v'><query xmlns='jabber:iq:roster' ver='stale'/></iq>")
    result = laptop.take_one().elements().__next__()
    assert [canonical(i) for i in result.elements()] == [item("<item jid='bob@localhost' name='B' subscription='none'/>")]

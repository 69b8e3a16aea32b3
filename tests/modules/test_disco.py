"""XEP-0030: Service Discovery — what the server and its accounts say they are and support."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.harness import FakeSession, ScenarioHarness, canonical, error_of, expect
from xmppcore.xml.element import Element

INFO = "http://jabber.org/protocol/disco#info"
ITEMS = "http://jabber.org/protocol/disco#items"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[ScenarioHarness]:
    async with ScenarioHarness.running(tmp_path) as harness:
        await harness.add_user("alice")
        await harness.add_user("bob")
        yield harness


async def disco(h: ScenarioHarness, session: FakeSession, to: str, ns: str, node: str = "") -> Element:
    node_attr = f" node='{node}'" if node else ""
    await h.send(session, f"<iq to='{to}' type='get' id='d1'><query xmlns='{ns}'{node_attr}/></iq>")
    return session.take_one()


def features(reply: Element) -> list[str]:
    query = reply.find("query", INFO)
    assert query is not None, "a disco#info result carries <query/>"
    return [f.attrs.get("var", "") for f in query.findall("feature")]


async def test_host_info_lists_the_server_identity_and_the_loaded_features(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    reply = await disco(h, alice, "localhost", INFO)
    assert [canonical(reply)] == expect(f"""
        <iq from='localhost' to='alice@localhost/phone' type='result' id='d1'>
          <query xmlns='{INFO}'>
            <identity category='server' type='im' name='xmppcore'/>
            <feature var='{INFO}'/>
            <feature var='{ITEMS}'/>
            <feature var='jabber:iq:version'/>
            <feature var='urn:xmpp:ping'/>
            <feature var='urn:xmpp:time'/>
          </query>
        </iq>""")


async def test_features_follow_the_modules_that_are_loaded(tmp_path: Path) -> None:
    async with ScenarioHarness.running(tmp_path, modules=("disco", "ping")) as h:
        await h.add_user("alice")
        alice = await h.connect("alice", "phone")
        assert features(await disco(h, alice, "localhost", INFO)) == [INFO, ITEMS, "urn:xmpp:ping"]


async def test_features_are_sorted_and_listed_once(h: ScenarioHarness) -> None:
    # A second declaration of a feature (two modules may both need it) must not repeat it.
    h.host().modules["ping"].add_feature("urn:xmpp:ping")
    h.host().modules["ping"].add_feature("urn:example:aaa")
    alice = await h.online("alice", "phone")
    listed = features(await disco(h, alice, "localhost", INFO))
    assert listed == sorted(set(listed))
    assert listed.count("urn:xmpp:ping") == 1 and "urn:example:aaa" in listed


@pytest.mark.parametrize("to", ["localhost", "alice@localhost"])
@pytest.mark.parametrize("ns", [INFO, ITEMS])
async def test_a_node_is_item_not_found(h: ScenarioHarness, to: str, ns: str) -> None:
    alice = await h.online("alice", "phone")
    reply = await disco(h, alice, to, ns, node="http://example.org/some-node")
    assert error_of(reply) == ("cancel", "item-not-found")
    assert reply.get("from") == to


@pytest.mark.parametrize("to", ["localhost", "bob@localhost"])
async def test_items_are_an_empty_result(h: ScenarioHarness, to: str) -> None:
    alice = await h.online("alice", "phone")
    reply = await disco(h, alice, to, ITEMS)
    assert [canonical(reply)] == expect(
        f"<iq from='{to}' to='alice@localhost/phone' type='result' id='d1'><query xmlns='{ITEMS}'/></iq>")


async def test_account_info_is_answered_by_the_server(h: ScenarioHarness) -> None:
    # RFC 6121 §8.5.1.1: the server answers IQs addressed to an account's bare JID.
    to = "alice@localhost"
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    reply = await disco(h, alice, to, INFO)
    assert [canonical(reply)] == expect(f"""
        <iq from='{to}' to='alice@localhost/phone' type='result' id='d1'>
          <query xmlns='{INFO}'>
            <identity category='account' type='registered'/>
            <feature var='{INFO}'/>
            <feature var='{ITEMS}'/>
            <feature var='urn:xmpp:ping'/>
          </query>
        </iq>""")
    assert bob.take() == []


async def test_account_info_tells_a_stranger_nothing(h: ScenarioHarness) -> None:
    # XEP-0030 §8: without a presence subscription, not even whether the account exists.
    alice = await h.online("alice", "phone")
    await h.online("bob", "pc")
    for to in ("bob@localhost", "nobody@localhost"):
        assert error_of(await disco(h, alice, to, INFO)) == ("cancel", "service-unavailable")


async def test_info_about_an_unknown_account_is_service_unavailable(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    reply = await disco(h, alice, "nobody@localhost", INFO)
    assert error_of(reply) == ("cancel", "service-unavailable")


async def test_own_account_items_list_the_connected_resources(h: ScenarioHarness) -> None:
    # XEP-0030 §4.1: the account's own resources; a stranger gets the empty list (§8).
    alice = await h.online("alice", "phone")
    await h.online("alice", "laptop")
    reply = await disco(h, alice, "alice@localhost", ITEMS)
    query = reply.find("query", ITEMS)
    assert query is not None
    assert sorted(i.get("jid") or "" for i in query.findall("item", ITEMS)) == [
        "alice@localhost/laptop", "alice@localhost/phone"]

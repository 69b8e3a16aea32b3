"""XEP-0012 §3 and XEP-0030 §8 with rosters: who may ask the server about an account.

An account's last activity and its disco#info/#items are answered for the account itself and
for contacts the account shares its presence with (a 'from' or 'both' subscription in the
account's roster); everyone else gets what a stranger gets: ``forbidden`` for last activity,
``service-unavailable`` for disco#info, an empty disco#items.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.harness import DEFAULT_MODULES, FakeSession, ScenarioHarness, canonical, error_of, expect
from xmppcore.jid import JID
from xmppcore.modules.roster import Roster
from xmppcore.modules.roster_store import RosterItem
from xmppcore.modules.subscription import SubState
from xmppcore.server.module_api import ModuleContext
from xmppcore.xml.element import Element

MODULES = (*DEFAULT_MODULES, "roster", "last")
LAST = "jabber:iq:last"
INFO = "http://jabber.org/protocol/disco#info"
ITEMS = "http://jabber.org/protocol/disco#items"
WHEN = 1_700_000_000.0

# The states in which alice's roster lets the contact see her presence (RFC 6121 §2.1.2.5).
SHARING = {SubState.FROM, SubState.FROM_PENDING_OUT, SubState.BOTH}


@pytest.fixture
async def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ScenarioHarness]:
    monkeypatch.setattr(ModuleContext, "now", staticmethod(lambda: WHEN))
    async with ScenarioHarness.running(tmp_path, modules=MODULES) as harness:
        for user in ("alice", "bob", "carol"):
            await harness.add_user(user)
        yield harness


async def seed(h: ScenarioHarness, contact: str, state: SubState, *, listed: bool = True) -> None:
    """Write ``contact``'s item in alice's roster through the roster module's exported API."""
    roster: Roster = h.host().exports["roster"]
    item = RosterItem(JID.parse(contact), state=state, listed=listed)
    await roster.save(JID.parse("alice@localhost"), item, push=False)


async def ask(h: ScenarioHarness, session: FakeSession, ns: str, to: str = "alice@localhost") -> Element:
    await h.send(session, f"<iq type='get' id='q1' to='{to}'><query xmlns='{ns}'/></iq>")
    return session.take_one()


async def alice_logged_out(h: ScenarioHarness) -> None:
    """alice was online and left with a status: her last activity is known."""
    phone = await h.online("alice", "phone")
    await h.send(phone, "<presence type='unavailable'><status>gone fishing</status></presence>")
    await h.disconnect(phone)
    h.clear()


def item_jids(reply: Element) -> list[str]:
    query = reply.find("query", ITEMS)
    assert reply.get("type") == "result" and query is not None, reply
    return sorted(item.get("jid") or "" for item in query.findall("item", ITEMS))


# -- XEP-0012 §3 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("state", list(SubState))
async def test_last_activity_follows_the_subscription_state(h: ScenarioHarness, state: SubState) -> None:
    await alice_logged_out(h)
    await seed(h, "bob@localhost", state)
    bob = await h.online("bob", "pc")
    reply = await ask(h, bob, LAST)
    if state in SHARING:
        assert [canonical(reply)] == expect(
            f"<iq type='result' id='q1' from='alice@localhost' to='bob@localhost/pc'>"
            f"<query xmlns='{LAST}' seconds='0'>gone fishing</query></iq>")
    else:
        assert (reply.get("from"), error_of(reply)) == ("alice@localhost", ("auth", "forbidden"))


async def test_a_subscriber_over_the_wire_sees_last_activity_and_a_stranger_does_not(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    carol = await h.online("carol", "tab")
    # bob asks for alice's presence and she approves (§3.1): alice's item for bob is 'from'.
    await h.send(bob, "<presence to='alice@localhost' type='subscribe'/>")
    await h.send(alice, "<presence to='bob@localhost' type='subscribed'/>")
    # carol only asks: her request is pending, she does not see alice's presence yet.
    await h.send(carol, "<presence to='alice@localhost' type='subscribe'/>")
    h.clear()
    reply = await ask(h, bob, LAST)
    query = reply.find("query", LAST)
    assert reply.get("type") == "result" and query is not None and query.get("seconds") == "0", reply
    assert error_of(await ask(h, carol, LAST)) == ("auth", "forbidden")


async def test_alices_subscription_to_a_contact_does_not_open_her_last_activity(h: ScenarioHarness) -> None:
    await alice_logged_out(h)
    # 'to': alice receives carol's presence, carol does not receive alice's.
    await seed(h, "carol@localhost", SubState.TO)
    carol = await h.online("carol", "tab")
    assert error_of(await ask(h, carol, LAST)) == ("auth", "forbidden")


async def test_a_remembered_request_is_not_a_subscription(h: ScenarioHarness) -> None:
    await alice_logged_out(h)
    await seed(h, "bob@localhost", SubState.NONE_PENDING_IN, listed=False)
    bob = await h.online("bob", "pc")
    assert error_of(await ask(h, bob, LAST)) == ("auth", "forbidden")


# -- XEP-0030 §8 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("state", list(SubState))
async def test_account_info_follows_the_subscription_state(h: ScenarioHarness, state: SubState) -> None:
    await seed(h, "bob@localhost", state)
    bob = await h.online("bob", "pc")
    reply = await ask(h, bob, INFO)
    if state in SHARING:
        query = reply.find("query", INFO)
        assert reply.get("type") == "result" and query is not None, reply
        identities = [(i.get("category"), i.get("type")) for i in query.findall("identity", INFO)]
        assert identities == [("account", "registered")]
        assert LAST in [f.get("var") for f in query.findall("feature", INFO)]
    else:
        assert (reply.get("from"), error_of(reply)) == ("alice@localhost", ("cancel", "service-unavailable"))


@pytest.mark.parametrize("state", list(SubState))
async def test_account_items_follow_the_subscription_state(h: ScenarioHarness, state: SubState) -> None:
    await h.online("alice", "phone")
    await h.connect("alice", "quiet")   # bound, never available: its presence shows nothing
    await seed(h, "bob@localhost", state)
    bob = await h.online("bob", "pc")
    expected = ["alice@localhost/phone"] if state in SHARING else []
    assert item_jids(await ask(h, bob, ITEMS)) == expected


async def test_the_account_itself_still_sees_every_bound_resource(h: ScenarioHarness) -> None:
    phone = await h.online("alice", "phone")
    await h.connect("alice", "quiet")
    assert item_jids(await ask(h, phone, ITEMS)) == ["alice@localhost/phone", "alice@localhost/quiet"]


async def test_an_unsubscribed_contact_loses_access(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await seed(h, "bob@localhost", SubState.FROM)
    bob = await h.online("bob", "pc")
    assert ask_ok(await ask(h, bob, INFO))
    # §3.2: alice cancels bob's subscription; he is a stranger again.
    await h.send(alice, "<presence to='bob@localhost' type='unsubscribed'/>")
    h.clear()
    assert error_of(await ask(h, bob, INFO)) == ("cancel", "service-unavailable")
    assert item_jids(await ask(h, bob, ITEMS)) == []
    assert error_of(await ask(h, bob, LAST)) == ("auth", "forbidden")


async def test_without_the_roster_module_only_the_account_itself_is_answered(tmp_path: Path) -> None:
    async with ScenarioHarness.running(tmp_path, modules=(*DEFAULT_MODULES, "last")) as h:
        await h.add_user("alice")
        await h.add_user("bob")
        alice = await h.online("alice", "phone")
        bob = await h.online("bob", "pc")
        assert ask_ok(await ask(h, alice, INFO))
        assert error_of(await ask(h, bob, INFO)) == ("cancel", "service-unavailable")
        assert error_of(await ask(h, bob, LAST)) == ("auth", "forbidden")
        assert item_jids(await ask(h, bob, ITEMS)) == []


def ask_ok(reply: Element) -> bool:
    return reply.get("type") == "result"

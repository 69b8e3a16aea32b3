"""RFC 6121 §4.2-§4.6 with rosters: broadcast to subscribers, probes, and presence that ends.

alice and bob subscribe to each other over the wire (the roster module's §3 handshake); carol
is subscribed to alice's presence only when a test says so.  Each test reads what every session
was handed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.harness import DEFAULT_MODULES, FakeSession, ScenarioHarness, canonical, expect
from xmppcore.jid import JID
from xmppcore.modules.roster import Roster
from xmppcore.modules.roster_store import RosterItem
from xmppcore.modules.subscription import SubState
from xmppcore.server.module_api import ModuleContext
from xmppcore.xml.element import Element

MODULES = (*DEFAULT_MODULES, "roster")
WHEN = 1031701267.0  # 2002-09-10T23:41:07Z
STAMP = "2002-09-10T23:41:07Z"


@pytest.fixture
async def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ScenarioHarness]:
    monkeypatch.setattr(ModuleContext, "now", staticmethod(lambda: WHEN))
    async with ScenarioHarness.running(tmp_path, modules=MODULES) as harness:
        for user in ("alice", "bob", "carol"):
            await harness.add_user(user)
        yield harness


async def subscribe(h: ScenarioHarness, user: FakeSession, contact: FakeSession) -> None:
    """``user`` asks for ``contact``'s presence and ``contact`` approves (§3.1)."""
    await h.send(user, f"<presence to='{contact.full_jid.bare}' type='subscribe'/>")
    await h.send(contact, f"<presence to='{user.full_jid.bare}' type='subscribed'/>")
    h.clear()


async def befriend(h: ScenarioHarness, a: FakeSession, b: FakeSession) -> None:
    await subscribe(h, a, b)
    await subscribe(h, b, a)


def presences(session: FakeSession) -> list[str]:
    """The presence stanzas ``session`` was handed, canonical and sorted (roster pushes dropped)."""
    return sorted(canonical(s) for s in session.take() if s.name == "presence")


async def seed(h: ScenarioHarness, user: str, contact: str, state: SubState) -> None:
    """Write one roster item through the roster module's exported API (a state no wire gives)."""
    roster: Roster = h.host().exports["roster"]
    await roster.save(JID.parse(f"{user}@localhost"), RosterItem(JID.parse(contact), state=state), push=False)


async def test_initial_presence_reaches_subscribers_and_probes_subscriptions(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    carol = await h.online("carol", "tab")
    await befriend(h, alice, bob)
    await subscribe(h, alice, carol)   # alice sees carol; carol does not see alice
    laptop = await h.connect("alice", "laptop")
    await h.send(laptop, "<presence><status>hi</status></presence>")
    # §4.2.2: to the subscriber's bare JID, from the new full JID.
    assert bob.take_xml() == expect(
        "<presence from='alice@localhost/laptop' to='bob@localhost'><status>hi</status></presence>")
    assert carol.take() == []  # no 'from' subscription: no leak
    assert alice.take_xml() == expect(
        "<presence from='alice@localhost/laptop' to='alice@localhost/phone'><status>hi</status></presence>")
    # The new session: its echo, the account's other resource, and the answers to its probes (§4.3).
    assert presences(laptop) == sorted(expect(
        "<presence from='alice@localhost/laptop' to='alice@localhost/laptop'><status>hi</status></presence>",
        "<presence from='alice@localhost/phone' to='alice@localhost/laptop'/>",
        "<presence from='bob@localhost/pc' to='alice@localhost/laptop'/>",
        "<presence from='carol@localhost/tab' to='alice@localhost/laptop'/>",
    ))


async def test_presence_updates_go_to_subscribers_only(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    carol = await h.online("carol", "tab")
    await befriend(h, alice, bob)
    await h.send(alice, "<presence to='carol@localhost'/>")  # directed: no later updates (§4.6)
    carol.take()
    await h.send(alice, "<presence><show>away</show></presence>")
    assert bob.take_xml() == expect(
        "<presence from='alice@localhost/phone' to='bob@localhost'><show>away</show></presence>")
    assert carol.take() == []


async def test_a_contact_sees_the_user_come_and_go(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await befriend(h, alice, bob)
    await h.send(alice, "<presence type='unavailable'><status>bye</status></presence>")
    assert bob.take_xml() == expect(
        "<presence from='alice@localhost/phone' to='bob@localhost' type='unavailable'><status>bye</status></presence>")
    alice.take()
    await h.send(alice, "<presence/>")
    assert bob.take_xml() == expect("<presence from='alice@localhost/phone' to='bob@localhost'/>")
    assert presences(alice) == sorted(expect(
        "<presence from='alice@localhost/phone' to='alice@localhost/phone'/>",
        "<presence from='bob@localhost/pc' to='alice@localhost/phone'/>",
    ))


async def test_a_session_that_ends_without_unavailable_presence_still_says_goodbye(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    laptop = await h.online("alice", "laptop")
    bob = await h.online("bob", "pc")
    carol = await h.online("carol", "tab")
    await befriend(h, alice, bob)
    await h.send(laptop, "<presence to='carol@localhost/tab'/>")
    h.clear()
    await h.disconnect(laptop)
    # §4.5.2 and §4.6.3: subscribers, directed-presence recipients and the account's resources.
    assert bob.take_xml() == expect("<presence from='alice@localhost/laptop' to='bob@localhost' type='unavailable'/>")
    assert carol.take_xml() == expect(
        "<presence from='alice@localhost/laptop' to='carol@localhost/tab' type='unavailable'/>")
    assert alice.take_xml() == expect(
        "<presence from='alice@localhost/laptop' to='alice@localhost/phone' type='unavailable'/>")
    assert laptop.take() == []


async def test_directed_presence_to_a_subscriber_is_followed_by_one_unavailable(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await befriend(h, alice, bob)
    await h.send(alice, "<presence to='bob@localhost'><show>chat</show></presence>")
    await h.send(alice, "<presence to='bob@localhost/pc'/>")
    bob.take()
    await h.send(alice, "<presence type='unavailable'/>")
    # The broadcast to bob's bare JID reached bob/pc: no second unavailable for the directed ones.
    assert bob.take_xml() == expect("<presence from='alice@localhost/phone' to='bob@localhost' type='unavailable'/>")


async def test_a_probe_from_a_subscriber_is_answered_for_each_available_resource(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    laptop = await h.online("alice", "laptop")
    bob = await h.online("bob", "pc")
    await befriend(h, alice, bob)
    await h.send(laptop, "<presence><show>dnd</show></presence>")
    h.clear()
    await h.send(bob, "<presence to='alice@localhost' type='probe' id='p1'/>")
    # §4.3.2 item 4: each resource's last presence, from its full JID; never the probe itself.
    assert presences(bob) == sorted(expect(
        "<presence from='alice@localhost/phone' to='bob@localhost/pc'/>",
        "<presence from='alice@localhost/laptop' to='bob@localhost/pc'><show>dnd</show></presence>",
    ))
    assert alice.take() == [] and laptop.take() == []


async def test_a_probe_to_a_full_jid_is_answered_not_delivered(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await befriend(h, alice, bob)
    await h.send(bob, "<presence to='alice@localhost/phone' type='probe'/>")
    assert bob.take_xml() == expect("<presence from='alice@localhost/phone' to='bob@localhost/pc'/>")
    assert alice.take() == []


async def test_a_probe_from_a_non_subscriber_gets_unsubscribed(h: ScenarioHarness) -> None:
    # carol believes she is subscribed to alice ('to'), but alice's roster does not say 'from'.
    await seed(h, "carol", "alice@localhost", SubState.TO)
    alice = await h.online("alice", "phone")
    carol = await h.connect("carol", "tab")
    await h.send(carol, "<presence/>")
    # §4.3.2 item 1: 'unsubscribed' from alice's bare JID, which ends carol's stale subscription
    # (A.3.4: To -> None, delivered); alice's presence does not leak.
    assert presences(carol) == sorted(expect(
        "<presence from='carol@localhost/tab' to='carol@localhost/tab'/>",
        "<presence from='alice@localhost' to='carol@localhost' type='unsubscribed'/>",
    ))
    roster: Roster = h.host().exports["roster"]
    item = await roster.item(JID.parse("carol@localhost"), JID.parse("alice@localhost"))
    assert item is not None and item.state is SubState.NONE
    assert alice.take() == []


async def test_a_stranger_probe_leaks_nothing(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    carol = await h.online("carol", "tab")
    await h.send(carol, "<presence to='alice@localhost' type='probe'/>")
    # The 'unsubscribed' answer changes nothing in carol's roster (A.3.4: None, not delivered).
    assert h.quiet()
    assert alice.take() == [] and carol.take() == []


async def test_a_probe_from_a_contact_without_from_subscription_leaks_nothing(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    carol = await h.online("carol", "tab")
    await subscribe(h, alice, carol)  # alice's item for carol: 'to'; carol's for alice: 'from'
    await h.send(carol, "<presence to='alice@localhost' type='probe'/>")
    assert h.quiet()  # 'unsubscribed' reaches carol's server only: A.3.4 From -> From, not delivered


async def test_an_offline_contact_answers_with_its_last_unavailable_presence(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await befriend(h, alice, bob)
    await h.send(bob, "<presence type='unavailable'><status>gone fishing</status></presence>")
    await h.disconnect(bob)
    await h.send(alice, "<presence type='unavailable'/>")
    alice.take()
    await h.send(alice, "<presence/>")
    # §4.3.2 item 3: from the full JID that sent it, with a XEP-0203 delay stamp.
    assert presences(alice) == sorted(expect(
        "<presence from='alice@localhost/phone' to='alice@localhost/phone'/>",
        "<presence from='bob@localhost/pc' to='alice@localhost/phone' type='unavailable'>"
        f"<status>gone fishing</status><delay xmlns='urn:xmpp:delay' stamp='{STAMP}'/></presence>",
    ))


async def test_a_session_that_vanished_is_remembered_as_unavailable(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await befriend(h, alice, bob)
    await h.disconnect(bob)
    laptop = await h.connect("alice", "laptop")
    await h.send(laptop, "<presence/>")
    assert expect(f"<presence from='bob@localhost/pc' to='alice@localhost/laptop' type='unavailable'>"
                  f"<delay xmlns='urn:xmpp:delay' stamp='{STAMP}'/></presence>")[0] in presences(laptop)


async def test_a_contact_never_seen_online_answers_nothing(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    carol = await h.connect("carol", "tab")   # subscribes and approves, but is never available
    await befriend(h, alice, carol)
    await h.disconnect(carol)
    laptop = await h.connect("alice", "laptop")
    await h.send(laptop, "<presence/>")
    # §4.3.2 item 3 asks for the last unavailable presence; none is known, so nothing is sent.
    assert presences(laptop) == sorted(expect(
        "<presence from='alice@localhost/laptop' to='alice@localhost/laptop'/>",
        "<presence from='alice@localhost/phone' to='alice@localhost/laptop'/>",
    ))


async def test_a_deleted_account_leaves_no_last_presence(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await befriend(h, alice, bob)
    await h.disconnect(bob)          # remembered as unavailable...
    await h.server.accounts.delete("localhost", "bob")
    await h.add_user("bob")          # ...but not for a new account of the same name
    await seed(h, "bob", "alice@localhost", SubState.BOTH)     # the new bob and alice are
    await seed(h, "alice", "bob@localhost", SubState.BOTH)     # contacts again
    laptop = await h.connect("alice", "laptop")
    await h.send(laptop, "<presence/>")
    assert not [s for s in laptop.take() if (s.get("from") or "").startswith("bob@")]


async def test_the_last_resource_to_leave_is_the_one_remembered(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    tablet = await h.online("bob", "tablet")
    await befriend(h, alice, bob)
    await h.send(bob, "<presence type='unavailable'><status>first</status></presence>")
    await h.send(tablet, "<presence type='unavailable'><status>last</status></presence>")
    await h.send(alice, "<presence type='unavailable'/>")
    alice.take()
    await h.send(alice, "<presence/>")
    answers = [s for s in alice.take() if (s.get("from") or "").startswith("bob@")]
    assert [canonical(s) for s in answers] == expect(
        "<presence from='bob@localhost/tablet' to='alice@localhost/phone' type='unavailable'>"
        f"<status>last</status><delay xmlns='urn:xmpp:delay' stamp='{STAMP}'/></presence>")


async def test_contacts_on_other_domains_get_broadcasts_and_bare_jid_probes(h: ScenarioHarness) -> None:
    # Other domains are the router's to reach (federation); here we record what it hands over.
    handed: list[str] = []

    async def federation(stanza: Element, sender: JID, to: JID) -> None:
        handed.append(canonical(stanza))

    h.server.router.remote = federation
    await seed(h, "alice", "romeo@remote.example", SubState.BOTH)
    alice = await h.connect("alice", "phone")
    await h.send(alice, "<presence/>")
    assert alice.take_xml() == expect("<presence from='alice@localhost/phone' to='alice@localhost/phone'/>")
    # RFC 6121 §4.2.2 the broadcast from the full JID; §4.3.1 the probe from the bare JID.
    assert handed == expect("<presence from='alice@localhost/phone' to='romeo@remote.example'/>",
                            "<presence type='probe' from='alice@localhost' to='romeo@remote.example'/>")


async def test_a_removed_subscription_stops_the_broadcast(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await befriend(h, alice, bob)
    # §3.2: alice cancels bob's subscription to her presence (her item: Both -> To).
    await h.send(alice, "<presence to='bob@localhost' type='unsubscribed'/>")
    h.clear()
    await h.send(alice, "<presence><show>xa</show></presence>")
    assert [s for s in bob.take() if s.name == "presence"] == []


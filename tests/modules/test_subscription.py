"""RFC 6121 Appendix A: one case per row of every subscription state table, plus pre-approval."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.harness import DEFAULT_MODULES, FakeSession, ScenarioHarness, canonical, expect, xml
from xmppcore.modules.subscription import TABLE, SubEvent, SubState, transition
from xmppcore.xml.element import Element

# The RFC's rows, written out as the appendix prints them: (existing, forward?, new or "=").
# Outbound subscribe and unsubscribe (A.2.1, A.2.2) have no ROUTE? column: always routed.
ROWS: dict[SubEvent, list[tuple[str, bool, str]]] = {
    SubEvent.OUT_SUBSCRIBE: [  # A.2.1
        ("None", True, "None + Pending Out"), ("None + Pending Out", True, "="),
        ("None + Pending In", True, "None + Pending Out/In"), ("None + Pending Out/In", True, "="),
        ("To", True, "="), ("To + Pending In", True, "="), ("From", True, "From + Pending Out"),
        ("From + Pending Out", True, "="), ("Both", True, "=")],
    SubEvent.OUT_UNSUBSCRIBE: [  # A.2.2
        ("None", True, "="), ("None + Pending Out", True, "None"), ("None + Pending In", True, "="),
        ("None + Pending Out/In", True, "None + Pending In"), ("To", True, "None"),
        ("To + Pending In", True, "None + Pending In"), ("From", True, "="),
        ("From + Pending Out", True, "From"), ("Both", True, "From")],
    SubEvent.OUT_SUBSCRIBED: [  # A.2.3
        ("None", False, "="), ("None + Pending Out", False, "="), ("None + Pending In", True, "From"),
        ("None + Pending Out/In", True, "From + Pending Out"), ("To", False, "="),
        ("To + Pending In", True, "Both"), ("From", False, "="), ("From + Pending Out", False, "="),
        ("Both", False, "=")],
    SubEvent.OUT_UNSUBSCRIBED: [  # A.2.4
        ("None", False, "="), ("None + Pending Out", False, "="), ("None + Pending In", True, "None"),
        ("None + Pending Out/In", True, "None + Pending Out"), ("To", False, "="),
        ("To + Pending In", True, "To"), ("From", True, "None"),
        ("From + Pending Out", True, "None + Pending Out"), ("Both", True, "To")],
    SubEvent.IN_SUBSCRIBE: [  # A.3.1
        ("None", True, "None + Pending In"), ("None + Pending Out", True, "None + Pending Out/In"),
        ("None + Pending In", False, "="), ("None + Pending Out/In", False, "="),
        ("To", True, "To + Pending In"), ("To + Pending In", False, "="), ("From", False, "="),
        ("From + Pending Out", False, "="), ("Both", False, "=")],
    SubEvent.IN_UNSUBSCRIBE: [  # A.3.2
        ("None", False, "="), ("None + Pending Out", False, "="), ("None + Pending In", True, "None"),
        ("None + Pending Out/In", True, "None + Pending Out"), ("To", False, "="),
        ("To + Pending In", True, "To"), ("From", True, "None"),
        ("From + Pending Out", True, "None + Pending Out"), ("Both", True, "To")],
    SubEvent.IN_SUBSCRIBED: [  # A.3.3
        ("None", False, "="), ("None + Pending Out", True, "To"), ("None + Pending In", False, "="),
        ("None + Pending Out/In", True, "To + Pending In"), ("To", False, "="),
        ("To + Pending In", False, "="), ("From", False, "="), ("From + Pending Out", True, "Both"),
        ("Both", False, "=")],
    SubEvent.IN_UNSUBSCRIBED: [  # A.3.4
        ("None", False, "="), ("None + Pending Out", True, "None"), ("None + Pending In", False, "="),
        ("None + Pending Out/In", True, "None + Pending In"), ("To", True, "None"),
        ("To + Pending In", True, "None + Pending In"), ("From", False, "="),
        ("From + Pending Out", True, "From"), ("Both", True, "From")],
}
CASES = [(event, SubState(old), forward, SubState(old if new == "=" else new))
         for event, rows in ROWS.items() for old, forward, new in rows]


def test_every_row_is_covered_once() -> None:
    assert len(CASES) == len(TABLE) == 8 * 9
    assert {(event, old) for event, old, _, _ in CASES} == set(TABLE)


@pytest.mark.parametrize(("event", "old", "forward", "new"), CASES,
                         ids=[f"{e.value}: {o.value}" for e, o, _, _ in CASES])
def test_appendix_a_row(event: SubEvent, old: SubState, forward: bool, new: SubState) -> None:
    outcome = transition(old, event)
    assert (outcome.state, outcome.forward) == (new, forward)
    # A roster push goes out exactly when the item changed: its state, or (§3.4) a 'subscribed'
    # with nothing to answer, which the server keeps as a pre-approval.
    preapproval = event is SubEvent.OUT_SUBSCRIBED and old in (SubState.NONE, SubState.NONE_PENDING_OUT, SubState.TO)
    assert outcome.push == (new is not old or preapproval)
    assert outcome.approved == preapproval
    # A.3.1: a subscribe from a contact who already has a subscription is answered by the server.
    assert outcome.auto_subscribed == (event is SubEvent.IN_SUBSCRIBE and old.from_)


@pytest.mark.parametrize(("state", "subscription", "ask"), [
    (SubState.NONE, "none", False), (SubState.NONE_PENDING_OUT, "none", True),
    (SubState.NONE_PENDING_IN, "none", False), (SubState.NONE_PENDING_OUT_IN, "none", True),
    (SubState.TO, "to", False), (SubState.TO_PENDING_IN, "to", False), (SubState.FROM, "from", False),
    (SubState.FROM_PENDING_OUT, "from", True), (SubState.BOTH, "both", False),
])
def test_states_map_to_roster_attributes(state: SubState, subscription: str, ask: bool) -> None:
    # §2.1.2.5 and §2.1.2.2: 'subscription' and ask='subscribe'.
    assert (state.subscription, state.pending_out) == (subscription, ask)


# -- pre-approval (§3.4) -------------------------------------------------------------------------
@pytest.mark.parametrize("state", [SubState.NONE, SubState.NONE_PENDING_OUT, SubState.TO])
def test_subscribed_before_any_request_is_a_pre_approval(state: SubState) -> None:
    outcome = transition(state, SubEvent.OUT_SUBSCRIBED)
    assert (outcome.state, outcome.approved, outcome.forward, outcome.push) == (state, True, False, True)
    again = transition(state, SubEvent.OUT_SUBSCRIBED, approved=True)
    assert (again.approved, again.push) == (True, False)


@pytest.mark.parametrize(("state", "after"), [
    (SubState.NONE, SubState.FROM), (SubState.NONE_PENDING_OUT, SubState.FROM_PENDING_OUT), (SubState.TO, SubState.BOTH),
])
def test_a_pre_approved_request_is_accepted_without_asking_the_user(state: SubState, after: SubState) -> None:
    outcome = transition(state, SubEvent.IN_SUBSCRIBE, approved=True)
    assert (outcome.state, outcome.approved, outcome.forward, outcome.push, outcome.auto_subscribed) == (
        after, False, False, True, True)


def test_unsubscribed_cancels_a_pre_approval() -> None:
    outcome = transition(SubState.NONE, SubEvent.OUT_UNSUBSCRIBED, approved=True)
    assert (outcome.state, outcome.approved, outcome.forward, outcome.push) == (SubState.NONE, False, False, True)


def test_a_pre_approval_survives_unrelated_stanzas() -> None:
    outcome = transition(SubState.NONE, SubEvent.OUT_SUBSCRIBE, approved=True)
    assert (outcome.state, outcome.approved) == (SubState.NONE_PENDING_OUT, True)


# -- the table at work: two and three accounts on one server (RFC 6121 §3) --------------------------
MODULES = (*DEFAULT_MODULES, "roster")


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[ScenarioHarness]:
    async with ScenarioHarness.running(tmp_path, modules=MODULES) as harness:
        for user in ("alice", "bob", "carol"):
            await harness.add_user(user)
        yield harness


async def interested(h: ScenarioHarness, user: str, resource: str) -> FakeSession:
    """Available, and has fetched the roster (so it gets pushes, §2.2)."""
    session = await h.online(user, resource)
    await h.send(session, "<iq type='get' id='g'><query xmlns='jabber:iq:roster'/></iq>")
    session.take()
    return session


def pushed(stanzas: list[Element]) -> list[str]:
    """The roster items pushed among ``stanzas``."""
    return [canonical(next(next(s.elements()).elements())) for s in stanzas
            if s.name == "iq" and s.get("type") == "set"]


def presences(stanzas: list[Element]) -> list[str]:
    return [canonical(s) for s in stanzas if s.name == "presence"]


def items(*texts: str) -> list[str]:
    return [canonical(next(xml(f"<query xmlns='jabber:iq:roster'>{t}</query>").elements())) for t in texts]


async def subscribe_and_approve(h: ScenarioHarness, alice: FakeSession, bob: FakeSession) -> None:
    await h.send(alice, "<presence to='bob@localhost' type='subscribe'/>")
    await h.send(bob, "<presence to='alice@localhost' type='subscribed'/>")
    h.clear()


async def test_a_subscription_request_and_its_approval(h: ScenarioHarness) -> None:
    alice = await interested(h, "alice", "phone")
    bob = await interested(h, "bob", "pc")
    await h.send(alice, "<presence to='bob@localhost' type='subscribe' id='s1'><status>hi</status></presence>")
    taken = alice.take()
    assert pushed(taken) == items("<item jid='bob@localhost' subscription='none' ask='subscribe'/>")  # A.2.1
    # §3.1.3: delivered from the user's bare JID; the contact's roster shows nothing yet.
    assert bob.take_xml() == expect("<presence from='alice@localhost' to='bob@localhost' type='subscribe' id='s1'>"
                                    "<status>hi</status></presence>")
    await h.send(bob, "<presence to='alice@localhost' type='subscribed'/>")
    assert pushed(bob.take()) == items("<item jid='alice@localhost' subscription='from'/>")      # A.2.3
    taken = alice.take()
    assert pushed(taken) == items("<item jid='bob@localhost' subscription='to'/>")               # A.3.3
    assert presences(taken) == expect(
        "<presence from='bob@localhost' to='alice@localhost' type='subscribed'/>",
        "<presence from='bob@localhost/pc' to='alice@localhost'/>")                              # §3.1.5


async def test_a_request_to_an_offline_account_waits_for_its_initial_presence(h: ScenarioHarness) -> None:
    alice = await interested(h, "alice", "phone")
    await h.send(alice, "<presence to='bob@localhost' type='subscribe'><status>me</status></presence>")
    bob = await h.connect("bob", "pc")
    assert bob.take() == []
    await h.send(bob, "<presence/>")
    assert expect("<presence from='alice@localhost' to='bob@localhost' type='subscribe'><status>me</status></presence>")[0] \
        in presences(bob.take())


async def test_a_repeated_request_is_not_delivered_again(h: ScenarioHarness) -> None:
    alice = await interested(h, "alice", "phone")
    bob = await interested(h, "bob", "pc")
    await h.send(alice, "<presence to='bob@localhost' type='subscribe'/>")
    h.clear()
    await h.send(alice, "<presence to='bob@localhost' type='subscribe'/>")
    assert bob.take() == [] and pushed(alice.take()) == []  # A.3.1 "None + Pending In": no


async def test_a_request_to_a_full_jid_is_handled_as_to_the_bare_jid(h: ScenarioHarness) -> None:
    alice = await interested(h, "alice", "phone")
    bob = await interested(h, "bob", "pc")
    await h.send(alice, "<presence to='bob@localhost/pc' type='subscribe'/>")
    assert bob.take_xml() == expect("<presence from='alice@localhost' to='bob@localhost' type='subscribe'/>")
    assert pushed(alice.take()) == items("<item jid='bob@localhost' subscription='none' ask='subscribe'/>")


async def test_a_pre_approved_request_is_answered_by_the_server(h: ScenarioHarness) -> None:
    alice = await interested(h, "alice", "phone")
    bob = await interested(h, "bob", "pc")
    await h.send(bob, "<presence to='alice@localhost' type='subscribed'/>")               # §3.4
    assert pushed(bob.take()) == items("<item jid='alice@localhost' subscription='none' approved='true'/>")
    assert alice.take() == []                                                              # A.2.3 None: not routed
    await h.send(alice, "<presence to='bob@localhost' type='subscribe'/>")
    assert pushed(bob.take()) == items("<item jid='alice@localhost' subscription='from'/>")
    taken = alice.take()
    assert pushed(taken)[-1] == items("<item jid='bob@localhost' subscription='to'/>")[0]
    assert expect("<presence from='bob@localhost' to='alice@localhost' type='subscribed'/>")[0] in presences(taken)


async def test_unsubscribe_ends_the_subscription_on_both_sides(h: ScenarioHarness) -> None:
    alice = await interested(h, "alice", "phone")
    bob = await interested(h, "bob", "pc")
    await subscribe_and_approve(h, alice, bob)
    await h.send(alice, "<presence to='bob@localhost' type='unsubscribe'/>")
    taken = alice.take()
    assert pushed(taken) == items("<item jid='bob@localhost' subscription='none'/>")                 # A.2.2 To
    # §3.3.3: the contact's server tells the user the contact's resources are gone.
    assert presences(taken) == expect("<presence from='bob@localhost/pc' to='alice@localhost' type='unavailable'/>")
    taken = bob.take()
    assert pushed(taken) == items("<item jid='alice@localhost' subscription='none'/>")               # A.3.2 From
    assert presences(taken) == expect("<presence from='alice@localhost' to='bob@localhost' type='unsubscribe'/>")


async def test_removing_an_item_cancels_both_directions(h: ScenarioHarness) -> None:
    alice = await interested(h, "alice", "phone")
    bob = await interested(h, "bob", "pc")
    await subscribe_and_approve(h, alice, bob)
    await h.send(bob, "<presence to='alice@localhost' type='subscribe'/>")
    await h.send(alice, "<presence to='bob@localhost' type='subscribed'/>")  # now mutual: Both
    h.clear()
    await h.send(alice, "<iq type='set' id='rm'><query xmlns='jabber:iq:roster'>"
                        "<item jid='bob@localhost' subscription='remove'/></query></iq>")
    assert pushed(alice.take()) == items("<item jid='bob@localhost' subscription='remove'/>")
    taken = bob.take()
    assert pushed(taken)[-1] == items("<item jid='alice@localhost' subscription='none'/>")[0]   # §2.5.2
    assert set(presences(taken)) >= set(expect(
        "<presence from='alice@localhost' to='bob@localhost' type='unsubscribe'/>",
        "<presence from='alice@localhost' to='bob@localhost' type='unsubscribed'/>",
        "<presence from='alice@localhost/phone' to='bob@localhost' type='unavailable'/>"))


async def test_a_third_account_is_not_affected(h: ScenarioHarness) -> None:
    alice = await interested(h, "alice", "phone")
    bob = await interested(h, "bob", "pc")
    carol = await interested(h, "carol", "tab")
    await subscribe_and_approve(h, alice, bob)
    await h.send(alice, "<presence to='bob@localhost' type='unsubscribe'/>")
    assert carol.take() == []


async def test_a_subscription_flood_from_one_user_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    # Bad input (issue 4): each request adds a roster item (A.2.1); past the roster limit the
    # request is bounced with policy-violation, nothing is stored and the contact sees nothing.
    async with ScenarioHarness.running(tmp_path, modules=MODULES, options={"roster": {"max_items": 3}}) as h:
        for name in ("alice", "c1", "c2", "c3", "c4"):
            await h.add_user(name)
        alice = await interested(h, "alice", "phone")
        victim = await h.online("c4", "pc")
        for name in ("c1", "c2", "c3"):
            await h.send(alice, f"<presence to='{name}@localhost' type='subscribe'/>")
        h.clear()
        await h.send(alice, "<presence to='c4@localhost' type='subscribe' id='flood'/>")
        (reply,) = alice.take()
        assert (reply.name, reply.get("type"), reply.get("id")) == ("presence", "error", "flood")
        assert any(c.name == "policy-violation" for e in reply.elements() if e.name == "error" for c in e.elements())
        assert victim.take() == []
        await h.send(alice, "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
        (roster,) = alice.take()
        listed = sorted(i.get("jid") or "" for i in next(roster.elements()).elements())
        assert listed == ["c1@localhost", "c2@localhost", "c3@localhost"]

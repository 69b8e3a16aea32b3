"""RFC 6121 §4: a client's presence broadcast to its account's resources, and directed presence (§4.6).

These load no roster: presence stays within the account, except what a client directs.
Broadcasts to subscribers and probes are in test_presence_subscriptions.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.harness import ScenarioHarness, expect, xml
from xmppcore.modules import presence as presence_module
from xmppcore.modules.presence import delay_stamp, parse_priority


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[ScenarioHarness]:
    async with ScenarioHarness.running(tmp_path) as harness:
        await harness.add_user("alice")
        await harness.add_user("bob")
        yield harness


@pytest.mark.parametrize(("text", "priority"), [
    ("<presence/>", 0),
    ("<presence><priority>5</priority></presence>", 5),
    ("<presence><priority> -128 </priority></presence>", -128),
    ("<presence><priority>127</priority></presence>", 127),
    ("<presence><priority>128</priority></presence>", 0),   # §4.7.2.3: out of range
    ("<presence><priority>-129</priority></presence>", 0),
    ("<presence><priority>high</priority></presence>", 0),
    ("<presence><priority/></presence>", 0),
])
def test_parse_priority(text: str, priority: int) -> None:
    assert parse_priority(xml(text)) == priority


async def test_initial_presence_makes_the_session_available_with_its_priority(h: ScenarioHarness) -> None:
    phone = await h.connect("alice", "phone")
    assert not phone.available
    await h.send(phone, "<presence><show>away</show><priority>7</priority></presence>")
    assert (phone.available, phone.priority) == (True, 7)
    # §4.2.2: the broadcast includes the sending resource itself.
    assert phone.take_xml() == expect(
        "<presence from='alice@localhost/phone' to='alice@localhost/phone'>"
        "<show>away</show><priority>7</priority></presence>")


async def test_presence_is_shared_between_the_accounts_resources(h: ScenarioHarness) -> None:
    phone = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    laptop = await h.connect("alice", "laptop")
    await h.send(laptop, "<presence id='p1'><status>at work</status></presence>")
    assert phone.take_xml() == expect(
        "<presence from='alice@localhost/laptop' to='alice@localhost/phone' id='p1'><status>at work</status></presence>")
    # The new resource hears itself and learns about the resources already online (§4.2.2).
    assert sorted(laptop.take_xml()) == sorted(expect(
        "<presence from='alice@localhost/laptop' to='alice@localhost/laptop' id='p1'><status>at work</status></presence>",
        "<presence from='alice@localhost/phone' to='alice@localhost/laptop'/>",
    ))
    assert bob.take() == []  # no roster subscription: other accounts hear nothing


async def test_a_presence_update_is_broadcast_without_repeating_the_others(h: ScenarioHarness) -> None:
    phone = await h.online("alice", "phone")
    laptop = await h.online("alice", "laptop")
    await h.send(laptop, "<presence><show>dnd</show></presence>")
    assert phone.take_xml() == expect("<presence from='alice@localhost/laptop' to='alice@localhost/phone'><show>dnd</show></presence>")
    assert laptop.take_xml() == expect("<presence from='alice@localhost/laptop' to='alice@localhost/laptop'><show>dnd</show></presence>")


async def test_unavailable_presence_is_broadcast_and_ends_availability(h: ScenarioHarness) -> None:
    phone = await h.online("alice", "phone")
    laptop = await h.online("alice", "laptop")
    await h.send(laptop, "<presence type='unavailable'><status>bye</status></presence>")
    assert not laptop.available
    assert phone.take_xml() == expect(
        "<presence from='alice@localhost/laptop' to='alice@localhost/phone' type='unavailable'><status>bye</status></presence>")
    assert laptop.take_xml() == expect(
        "<presence from='alice@localhost/laptop' to='alice@localhost/laptop' type='unavailable'><status>bye</status></presence>")
    await h.send(phone, "<presence><show>chat</show></presence>")
    assert laptop.take() == []  # an unavailable resource no longer hears its account's presence


async def test_unavailable_without_initial_presence_is_not_broadcast(h: ScenarioHarness) -> None:
    await h.online("alice", "phone")
    laptop = await h.connect("alice", "laptop")
    await h.send(laptop, "<presence type='unavailable'/>")
    assert h.quiet()


async def test_a_closed_session_becomes_unavailable_to_the_others(h: ScenarioHarness) -> None:
    phone = await h.online("alice", "phone")
    laptop = await h.online("alice", "laptop")
    await h.disconnect(laptop)
    assert phone.take_xml() == expect(
        "<presence from='alice@localhost/laptop' to='alice@localhost/phone' type='unavailable'/>")
    assert laptop.take() == []
    await h.send(phone, "<presence><show>away</show></presence>")
    assert laptop.take() == []


async def test_a_closed_session_that_was_never_available_says_nothing(h: ScenarioHarness) -> None:
    await h.online("alice", "phone")
    laptop = await h.connect("alice", "laptop")
    await h.disconnect(laptop)
    assert h.quiet()


async def test_a_session_replaced_by_a_resource_conflict_leaves_no_stale_presence(h: ScenarioHarness) -> None:
    # RFC 6121 §4.5: when a session ends, the server broadcasts unavailable presence for it.  A session replaced with <conflict/> (RFC 6120 §7.7.2.2)
    # ends too; if its replacement leaves without ever being available, nothing else will
    # ever tell the account's other resources that alice@localhost/phone is gone.
    laptop = await h.online("alice", "laptop")
    old = await h.online("alice", "phone")
    new = await h.connect("alice", "phone")   # the same resource: the old stream gets <conflict/>
    await h.disconnect(old)                   # its stream closes...
    await h.disconnect(new)                   # ...and the new one leaves, never available
    assert expect("<presence from='alice@localhost/phone' to='alice@localhost/laptop' type='unavailable'/>")[0] \
        in laptop.take_xml()


async def test_directed_presence_to_a_bare_jid_reaches_the_available_resources(h: ScenarioHarness) -> None:
    # RFC 6121 §8.5.2.1.2.
    alice = await h.online("alice", "phone")
    pc = await h.online("bob", "pc", priority=-5)  # priority does not matter for presence
    idle = await h.connect("bob", "idle")
    await h.send(alice, "<presence to='bob@localhost'><show>xa</show></presence>")
    assert pc.take_xml() == expect(
        "<presence from='alice@localhost/phone' to='bob@localhost'><show>xa</show></presence>")
    assert idle.take() == [] and alice.take() == []


async def test_directed_presence_to_a_full_jid_is_delivered(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    pc = await h.online("bob", "pc")
    await h.send(alice, "<presence to='bob@localhost/pc'/>")
    assert pc.take_xml() == expect("<presence from='alice@localhost/phone' to='bob@localhost/pc'/>")


async def test_a_probe_to_an_account_is_not_delivered_to_its_resources(h: ScenarioHarness) -> None:
    # §4.3: probes are the server's to answer (from the roster), never the clients'.
    alice = await h.online("alice", "phone")
    await h.online("bob", "pc")
    await h.send(alice, "<presence to='bob@localhost' type='probe'/>")
    assert h.quiet()


async def test_session_available_fires_once_on_initial_presence(h: ScenarioHarness) -> None:
    from xmppcore.server import hooks

    seen: list[str] = []

    async def record(event: hooks.SessionEvent) -> None:
        seen.append(str(event.session.jid))

    h.host().bus.add(hooks.SESSION_AVAILABLE, record)
    phone = await h.connect("alice", "phone")
    await h.send(phone, "<presence/>")
    await h.send(phone, "<presence><show>away</show></presence>")  # an update, not initial
    assert seen == ["alice@localhost/phone"]


# -- directed presence (§4.6), which needs no roster ------------------------------------------------
async def test_directed_presence_is_followed_by_unavailable_presence(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await h.send(alice, "<presence to='bob@localhost/pc'><show>chat</show></presence>")
    bob.take()
    await h.send(alice, "<presence><show>away</show></presence>")
    assert bob.take() == []  # §4.6: directed presence brings no later updates...
    await h.send(alice, "<presence type='unavailable'><status>off</status></presence>")
    # ...but the unavailable presence follows it (§4.6.3).
    assert bob.take_xml() == expect(
        "<presence from='alice@localhost/phone' to='bob@localhost/pc' type='unavailable'><status>off</status></presence>")
    await h.disconnect(alice)
    assert bob.take() == []  # once only: the session is no longer available


async def test_directed_unavailable_presence_ends_the_directed_presence(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await h.send(alice, "<presence to='bob@localhost'/>")
    await h.send(alice, "<presence to='bob@localhost' type='unavailable'/>")
    bob.take()
    await h.disconnect(alice)
    assert bob.take() == []


async def test_directed_presence_from_a_session_never_available_ends_with_it(h: ScenarioHarness) -> None:
    # §4.6.3 (and RFC 3921 §5.1.4 case 3): the recipient saw the resource; it must see it go.
    alice = await h.connect("alice", "bot")
    bob = await h.online("bob", "pc")
    await h.send(alice, "<presence to='bob@localhost'/>")
    bob.take()
    await h.disconnect(alice)
    assert bob.take_xml() == expect("<presence from='alice@localhost/bot' to='bob@localhost' type='unavailable'/>")


async def test_directed_presence_recipients_are_bounded(h: ScenarioHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presence_module, "MAX_DIRECTED", 2)
    await h.add_user("carol")
    await h.add_user("dave")
    alice = await h.online("alice", "phone")
    others = [await h.online(name, "pc") for name in ("bob", "carol", "dave")]
    for other in others:
        await h.send(alice, f"<presence to='{other.full_jid}'/>")
    h.clear()
    await h.disconnect(alice)
    assert [len(other.take()) for other in others] == [1, 1, 0]  # the third was not remembered


async def test_a_probe_to_a_full_jid_is_not_delivered_to_the_resource(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await h.online("bob", "pc")
    await h.send(alice, "<presence to='bob@localhost/pc' type='probe'/>")
    assert h.quiet()


def test_delay_stamp_is_xep_0082_utc() -> None:
    assert delay_stamp(1031701267.0) == "2002-09-10T23:41:07Z"
    assert delay_stamp(0.999) == "1970-01-01T00:00:00Z"

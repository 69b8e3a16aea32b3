"""XEP-0352 Client State Indication: what an inactive session is sent, XML in and XML out.

juliet's phone is the session that goes inactive; bob and carol are her contacts (mutual
subscriptions over the wire).  Sessions here send through their delivery filter as a client
connection does (:class:`FilteringSession`); a state change is the ``CLIENT_STATE`` event the
runtime fires when the c2s core reports ``<active/>`` or ``<inactive/>``.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.harness import (
    DEFAULT_MODULES,
    FakeSession,
    ScenarioHarness,
    canonical,
    expect,
    xml,
)
from xmppcore.jid import JID
from xmppcore.modules.carbons import NS_CARBONS
from xmppcore.modules.csi import NS_CSI, Options, PresenceHold
from xmppcore.server import hooks
from xmppcore.xml.element import Element

MODULES = (*DEFAULT_MODULES, "roster", "carbons", "csi")
_numbers = itertools.count(1)


class FilteringSession(FakeSession):
    """A fake client session that sends through its delivery filter, as ``ClientConnection`` does."""

    def deliver(self, stanza: Element) -> None:
        for admitted in self.filtered(stanza):
            super().deliver(admitted)


class Scene:
    """The harness, with filtering sessions and helpers to befriend them and switch their state."""

    def __init__(self, h: ScenarioHarness) -> None:
        self.h = h
        self.sessions: list[FilteringSession] = []

    async def connect(self, user: str, resource: str) -> FilteringSession:
        session = FilteringSession(f"csi{next(_numbers)}")
        jid = self.h.server.sessions.bind(session, user, self.h.domain, resource)
        self.sessions.append(session)
        await self.h.host(jid.domain).bus.fire(hooks.SESSION_BOUND, hooks.SessionEvent(session))
        return session

    async def online(self, user: str, resource: str) -> FilteringSession:
        """Connect and send initial presence; then forget what every session was sent."""
        session = await self.connect(user, resource)
        await self.h.send(session, "<presence/>")
        self.clear()
        return session

    async def befriend(self, a: FilteringSession, b: FilteringSession) -> None:
        for user, contact in ((a, b), (b, a)):
            await self.h.send(user, f"<presence to='{contact.full_jid.bare}' type='subscribe'/>")
            await self.h.send(contact, f"<presence to='{user.full_jid.bare}' type='subscribed'/>")
        self.clear()

    async def state(self, session: FilteringSession, *, active: bool) -> None:
        await self.h.host().bus.fire(hooks.CLIENT_STATE, hooks.ClientStateEvent(session, active))

    def clear(self) -> None:
        for session in self.sessions:
            session.take()


async def arrive(h: ScenarioHarness, stanza: str) -> None:
    """``stanza`` reaches the router from elsewhere (another server, as s2s would hand it over)."""
    element = xml(stanza)
    await h.server.router.route(element, JID.parse(element.attrs["from"]), JID.parse(element.attrs["to"]))


def presence(sender: str, to: str, status: str | None = None, kind: str | None = None) -> str:
    attrs = f"from='{sender}' to='{to}'" + (f" type='{kind}'" if kind else "")
    return f"<presence {attrs}><status>{status}</status></presence>" if status else f"<presence {attrs}/>"


def names(session: FakeSession) -> list[str]:
    return [f"{s.name}:{s.get('from')}:{s.get('type') or ''}" for s in session.take()]


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[ScenarioHarness]:
    async with ScenarioHarness.running(tmp_path, modules=MODULES) as harness:
        for user in ("juliet", "bob", "carol", "dave"):
            await harness.add_user(user)
        yield harness


@pytest.fixture
async def scene(h: ScenarioHarness) -> Scene:
    return Scene(h)


async def friends(scene: Scene) -> tuple[FilteringSession, FilteringSession, FilteringSession]:
    """juliet/phone, bob/pc and carol/tab, juliet subscribed both ways with bob and carol."""
    juliet = await scene.online("juliet", "phone")
    bob = await scene.online("bob", "pc")
    carol = await scene.online("carol", "tab")
    await scene.befriend(juliet, bob)
    await scene.befriend(juliet, carol)
    return juliet, bob, carol


async def test_the_feature_is_offered_after_authentication(h: ScenarioHarness) -> None:
    assert [canonical(f) for f in h.host().stream_features if f.ns == NS_CSI] == [f"<csi xmlns='{NS_CSI}'/>"]


async def test_presence_updates_wait_and_fold_to_the_latest_of_each_sender(scene: Scene) -> None:
    juliet, bob, carol = await friends(scene)
    await scene.state(juliet, active=False)
    for session, status in ((bob, "b1"), (carol, "c1"), (bob, "b2"), (carol, "c2"), (bob, "b3")):
        await scene.h.send(session, f"<presence><status>{status}</status></presence>")
    assert juliet.take() == []
    await scene.state(juliet, active=True)
    # The latest of each, in the order those arrived (bob's b3 after carol's c2).
    assert juliet.take_xml() == expect(
        presence("carol@localhost/tab", "juliet@localhost", "c2"),
        presence("bob@localhost/pc", "juliet@localhost", "b3"),
    )
    await scene.h.send(bob, "<presence><status>b4</status></presence>")  # active again: flows
    assert juliet.take_xml() == expect(presence("bob@localhost/pc", "juliet@localhost", "b4"))


async def test_unavailable_replaces_what_waited_from_that_resource(scene: Scene) -> None:
    juliet, bob, _ = await friends(scene)
    await scene.state(juliet, active=False)
    await scene.h.send(bob, "<presence><status>busy</status></presence>")
    await scene.h.send(bob, "<presence type='unavailable'><status>bye</status></presence>")
    assert juliet.take() == []
    await scene.state(juliet, active=True)
    assert juliet.take_xml() == expect(presence("bob@localhost/pc", "juliet@localhost", "bye", "unavailable"))


async def test_messages_and_iqs_flow_and_leave_other_senders_presence_waiting(scene: Scene) -> None:
    juliet, bob, carol = await friends(scene)
    await scene.state(juliet, active=False)
    await scene.h.send(bob, "<presence><status>away</status></presence>")
    await scene.h.send(carol, "<message to='juliet@localhost/phone' type='chat' id='m1'><body>hi</body></message>")
    await scene.h.send(carol, "<iq to='juliet@localhost/phone' type='get' id='v1'><query xmlns='jabber:iq:version'/></iq>")
    assert names(juliet) == ["message:carol@localhost/tab:chat", "iq:carol@localhost/tab:get"]
    await scene.state(juliet, active=True)
    assert juliet.take_xml() == expect(presence("bob@localhost/pc", "juliet@localhost", "away"))


async def test_a_message_brings_its_senders_presence_first(scene: Scene) -> None:
    # XEP-0352 §3.1: not interested in contacts' status "unless they are communicating with her".
    juliet, bob, carol = await friends(scene)
    await scene.state(juliet, active=False)
    await scene.h.send(bob, "<presence><status>b1</status></presence>")
    await scene.h.send(carol, "<presence><status>c1</status></presence>")
    await scene.h.send(bob, "<message to='juliet@localhost' type='chat' id='m1'><body>hi</body></message>")
    assert names(juliet) == ["presence:bob@localhost/pc:", "message:bob@localhost/pc:chat"]
    await scene.state(juliet, active=True)
    assert names(juliet) == ["presence:carol@localhost/tab:"]  # bob's went out already, once


async def test_subscription_presence_flows_after_what_waited_from_that_account(scene: Scene) -> None:
    juliet, bob, carol = await friends(scene)
    dave = await scene.online("dave", "desk")
    await scene.state(juliet, active=False)
    await scene.h.send(dave, "<presence to='juliet@localhost' type='subscribe'/>")
    assert names(juliet) == ["presence:dave@localhost:subscribe"]  # a request someone waits on
    await scene.h.send(bob, "<presence><status>b1</status></presence>")
    await scene.h.send(carol, "<presence><status>c1</status></presence>")
    await scene.h.send(bob, "<presence to='juliet@localhost' type='unsubscribed'/>")
    seen = names(juliet)
    # bob's update waited; it must not arrive after bob's newer presence, so it goes first.
    assert seen[:2] == ["presence:bob@localhost/pc:", "presence:bob@localhost:unsubscribed"]
    assert "presence:carol@localhost/tab:" not in seen
    await scene.state(juliet, active=True)
    assert "presence:carol@localhost/tab:" in names(juliet)


async def test_own_echo_and_presence_errors_flow_other_own_resources_wait(scene: Scene) -> None:
    juliet = await scene.online("juliet", "phone")
    laptop = await scene.online("juliet", "laptop")
    await scene.state(juliet, active=False)
    await scene.h.send(juliet, "<presence><show>away</show></presence>")
    assert names(juliet) == ["presence:juliet@localhost/phone:"]  # the echo answers what it just did
    await scene.h.send(laptop, "<presence><show>dnd</show></presence>")
    assert juliet.take() == []
    await arrive(scene.h, "<presence from='nobody@elsewhere.example' to='juliet@localhost/phone' type='error'/>")
    assert names(juliet) == ["presence:nobody@elsewhere.example:error"]
    await scene.state(juliet, active=True)
    assert names(juliet) == ["presence:juliet@localhost/laptop:"]


async def test_room_presence_waits_except_about_ones_own_occupant(scene: Scene) -> None:
    juliet = await scene.online("juliet", "phone")
    await scene.state(juliet, active=False)
    muc = "http://jabber.org/protocol/muc#user"

    async def from_room(nick: str, *codes: str) -> None:
        statuses = "".join(f"<status code='{code}'/>" for code in codes)
        await arrive(scene.h, f"<presence from='room@muc.example/{nick}' to='juliet@localhost/phone'>"
                              f"<x xmlns='{muc}'>{statuses}</x></presence>")

    await from_room("romeo")
    await from_room("mercutio")
    await from_room("romeo")
    await from_room("jules", "110")  # XEP-0045 §7.2.3: the room's word that she has joined
    assert names(juliet) == ["presence:room@muc.example/jules:"]
    await scene.state(juliet, active=True)
    assert names(juliet) == ["presence:room@muc.example/mercutio:", "presence:room@muc.example/romeo:"]


async def test_carbons_flow_while_presence_waits(scene: Scene) -> None:
    juliet, bob, _ = await friends(scene)
    laptop = await scene.online("juliet", "laptop")
    await scene.h.send(juliet, f"<iq type='set' id='c1'><enable xmlns='{NS_CARBONS}'/></iq>")
    scene.clear()
    await scene.state(juliet, active=False)
    await scene.h.send(bob, "<presence><status>b1</status></presence>")
    await scene.h.send(laptop, "<message to='bob@localhost/pc' type='chat' id='s1'><body>out</body></message>")
    await scene.h.send(bob, "<message to='juliet@localhost/laptop' type='chat' id='r1'><body>in</body></message>")
    copies = juliet.take()
    assert [(c.get("from"), next(c.elements()).name) for c in copies] == [
        ("juliet@localhost", "sent"), ("juliet@localhost", "received")]
    await scene.state(juliet, active=True)
    assert juliet.take_xml() == expect(presence("bob@localhost/pc", "juliet@localhost", "b1"))


async def test_active_delivers_before_what_the_client_sends_next(scene: Scene) -> None:
    # §5.1: "all actions triggered by a CSI nonza ... must happen before processing further requests".
    juliet, bob, _ = await friends(scene)
    await scene.state(juliet, active=False)
    await scene.h.send(bob, "<presence><status>b1</status></presence>")
    await scene.state(juliet, active=True)
    await scene.h.send(juliet, "<iq type='get' id='ping1'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert [(s.name, s.get("type"), s.get("id")) for s in juliet.take()] == [
        ("presence", None, None), ("iq", "result", "ping1")]


async def test_a_second_inactive_keeps_what_waits(scene: Scene) -> None:
    juliet, bob, _ = await friends(scene)
    await scene.state(juliet, active=False)
    await scene.h.send(bob, "<presence><status>b1</status></presence>")
    await scene.state(juliet, active=False)
    assert juliet.take() == []
    await scene.state(juliet, active=True)
    assert names(juliet) == ["presence:bob@localhost/pc:"]


async def test_what_waits_is_dropped_when_the_session_ends(scene: Scene) -> None:
    juliet, bob, _ = await friends(scene)
    await scene.state(juliet, active=False)
    await scene.h.send(bob, "<presence><status>stale</status></presence>")
    await scene.h.send(bob, "<presence><status>current</status></presence>")
    await scene.h.disconnect(juliet)
    assert juliet.take() == [] and bob.take() != []  # bob hears juliet go; she heard nothing
    # Presence is state: her next session learns bob's current presence by probing (RFC 6121 §4.3).
    tablet = await scene.connect("juliet", "tablet")
    await scene.h.send(tablet, "<presence/>")
    probed = [canonical(s) for s in tablet.take() if s.get("from") == "bob@localhost/pc"]
    assert probed == expect(presence("bob@localhost/pc", "juliet@localhost/tablet", "current"))


async def test_at_most_max_held_senders_wait(tmp_path: Path) -> None:
    async with ScenarioHarness.running(tmp_path, modules=MODULES, options={"csi": {"max_held": 2}}) as h:
        await h.add_user("juliet")
        scene = Scene(h)
        juliet = await scene.online("juliet", "phone")
        await scene.state(juliet, active=False)
        for nick in ("a", "b", "a", "c"):
            await arrive(h, f"<presence from='room@muc.example/{nick}' to='juliet@localhost/phone'/>")
        # The third sender is one too many: all three go out, in order (a's second after b's);
        # holding starts again.
        assert names(juliet) == ["presence:room@muc.example/b:", "presence:room@muc.example/a:",
                                 "presence:room@muc.example/c:"]
        await arrive(h, "<presence from='room@muc.example/d' to='juliet@localhost/phone'/>")
        assert juliet.take() == [] and isinstance(juliet.delivery_filter, PresenceHold)


async def test_unloading_the_module_lets_go_of_what_waits(scene: Scene) -> None:
    juliet, bob, _ = await friends(scene)
    await scene.state(juliet, active=False)
    await scene.h.send(bob, "<presence><status>b1</status></presence>")
    scene.h.host().modules["csi"].unload()
    assert names(juliet) == ["presence:bob@localhost/pc:"] and juliet.delivery_filter is None
    assert not [f for f in scene.h.host().stream_features if f.ns == NS_CSI]


@pytest.mark.parametrize("max_held", [0, 100_001])
def test_max_held_is_bounded(max_held: int) -> None:
    with pytest.raises(ValueError):
        Options(max_held=max_held)

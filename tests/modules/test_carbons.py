"""XEP-0280 Message Carbons, XML in and XML out against the real server runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.harness import (
    DEFAULT_MODULES,
    FakeSession,
    ScenarioHarness,
    canonical,
    error_of,
    expect,
    xml,
)
from xmppcore.jid import JID
from xmppcore.modules.carbons import (
    NS_CARBONS,
    NS_CARBONS_RULES,
    Direction,
    is_eligible,
)
from xmppcore.server import hooks
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_DISCO_INFO

MODULES = (*DEFAULT_MODULES, "offline", "blocking", "carbons")
FWD = "urn:xmpp:forward:0"
HINTS = "urn:xmpp:hints"
MUC_USER = "http://jabber.org/protocol/muc#user"
ROMEO = JID.parse("romeo@remote.example/orchard")


def _forwarded(inner: str) -> str:
    # XEP-0297: the forwarded stanza keeps its own namespace inside <forwarded/>.
    assert inner.startswith("<message ")
    return f"<forwarded xmlns='{FWD}'><message xmlns='jabber:client' {inner[len('<message '):]}</forwarded>"


def received(to: str, inner: str, kind: str = "chat") -> str:
    """The XEP-0280 §7 copy of ``inner`` for ``to`` (a resource of bob)."""
    return (f"<message from='bob@localhost' to='{to}' type='{kind}'>"
            f"<received xmlns='{NS_CARBONS}'>{_forwarded(inner)}</received></message>")


def sent(to: str, inner: str, kind: str = "chat") -> str:
    """The XEP-0280 §8 copy of ``inner`` for ``to`` (a resource of bob)."""
    return (f"<message from='bob@localhost' to='{to}' type='{kind}'>"
            f"<sent xmlns='{NS_CARBONS}'>{_forwarded(inner)}</sent></message>")


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[ScenarioHarness]:
    async with ScenarioHarness.running(tmp_path, modules=MODULES) as harness:
        for user in ("alice", "bob"):
            await harness.add_user(user)
        yield harness


@pytest.fixture
def federation(h: ScenarioHarness) -> list[str]:
    """What the router hands to federation for other domains (XEP-0280 never changes it)."""
    handed: list[str] = []

    async def remote(stanza: Element, sender: JID, to: JID) -> None:
        handed.append(canonical(stanza))

    h.server.router.remote = remote
    return handed


async def enable(h: ScenarioHarness, *sessions: FakeSession, action: str = "enable") -> None:
    for session in sessions:
        await h.send(session, f"<iq type='set' id='c1'><{action} xmlns='{NS_CARBONS}'/></iq>")
        assert session.take_xml() == expect(f"<iq type='result' id='c1' to='{session.jid}'/>")


async def bobs(h: ScenarioHarness, *, enabled: tuple[str, ...] = ("phone",)) -> dict[str, FakeSession]:
    """Bob online as pc, phone and tablet (priority 0), carbons on for ``enabled``."""
    sessions = {name: await h.online("bob", name) for name in ("pc", "phone", "tablet")}
    await enable(h, *(sessions[name] for name in enabled))
    return sessions


# -- enabling (§3-§5, §10.1) ---------------------------------------------------------------------------
async def test_the_features_are_advertised(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    await h.send(alice, f"<iq type='get' id='d1' to='localhost'><query xmlns='{NS_DISCO_INFO}'/></iq>")
    query = alice.take_one().find("query", NS_DISCO_INFO)
    assert query is not None
    assert {NS_CARBONS, NS_CARBONS_RULES} <= {f.get("var") for f in query.findall("feature")}


async def test_enable_and_disable_any_number_of_times(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    bob = await bobs(h, enabled=())
    for action in ("enable", "enable", "disable", "disable", "enable"):  # §10.1: repeats are no error
        await enable(h, bob["phone"], action=action)
    await h.send(alice, "<message to='bob@localhost/pc' type='chat' id='m1'><body>hi</body></message>")
    assert len(bob["phone"].take()) == 1
    await enable(h, bob["phone"], action="disable")
    await h.send(alice, "<message to='bob@localhost/pc' type='chat' id='m2'><body>hi</body></message>")
    assert bob["phone"].take() == [] and [m.get("id") for m in bob["pc"].take()] == ["m1", "m2"]


@pytest.mark.parametrize("action", ["enable", "disable"])
async def test_another_accounts_carbons_are_not_allowed(h: ScenarioHarness, action: str) -> None:
    alice = await h.online("alice", "home")
    await h.send(alice, f"<iq type='set' id='x' to='bob@localhost'><{action} xmlns='{NS_CARBONS}'/></iq>")
    reply = alice.take_one()
    assert (reply.get("from"), error_of(reply)) == ("bob@localhost", ("cancel", "not-allowed"))


async def test_a_remote_entity_cannot_enable(h: ScenarioHarness, federation: list[str]) -> None:
    stanza = xml(f"<iq type='set' id='r1' from='{ROMEO}' to='bob@localhost'><enable xmlns='{NS_CARBONS}'/></iq>")
    await h.server.router.route(stanza, ROMEO, JID.parse("bob@localhost"))
    assert [error_of(xml(answer)) for answer in federation] == [("cancel", "not-allowed")]


async def test_a_new_session_starts_without_carbons(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    bob = await bobs(h)
    await h.disconnect(bob["phone"])
    phone = await h.online("bob", "phone")
    await h.send(alice, "<message to='bob@localhost/pc' type='chat'><body>hi</body></message>")
    assert phone.take() == []


# -- received copies (§7) ------------------------------------------------------------------------------
async def test_a_message_to_a_full_jid_is_copied_to_the_other_enabled_resources(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    bob = await bobs(h, enabled=("pc", "phone"))
    original = "<message from='alice@localhost/home' to='bob@localhost/pc' type='chat' id='m1'><body>hi</body></message>"
    await h.send(alice, original)
    assert bob["pc"].take_xml() == expect(original)  # the addressee gets no copy besides
    assert bob["phone"].take_xml() == expect(received("bob@localhost/phone", original))
    assert bob["tablet"].take() == [] and alice.take() == []


async def test_a_bare_jid_message_is_copied_to_those_that_did_not_get_it(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    top = {name: await h.online("bob", name, priority=5) for name in ("pc", "tablet")}
    low = await h.online("bob", "phone", priority=1)
    shy = await h.online("bob", "shy", priority=-1)
    await enable(h, top["tablet"], low, shy)
    original = "<message from='alice@localhost/home' to='bob@localhost' type='normal'><body>hi</body></message>"
    await h.send(alice, original)
    # RFC 6121 §8.5.2.1.1: both priority-5 resources get the original, so neither gets a copy.
    assert [s.take_xml() for s in top.values()] == [expect(original), expect(original)]
    assert low.take_xml() == expect(received("bob@localhost/phone", original, kind="normal"))
    assert shy.take_xml() == expect(received("bob@localhost/shy", original, kind="normal"))


async def test_a_chat_to_a_vanished_resource_is_copied_once(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    bob = await bobs(h, enabled=("pc", "phone", "tablet"))
    await h.disconnect(bob.pop("tablet"))
    await h.send(alice, "<message to='bob@localhost/tablet' type='chat'><body>hi</body></message>")
    # RFC 6121 §8.5.3.2.1: treated as sent to the bare JID; every available resource gets it.
    messages = [[m for m in s.take() if m.name == "message"] for s in bob.values()]
    assert [[m.find("received", NS_CARBONS) is None for m in inbox] for inbox in messages] == [[True], [True]]


async def test_unavailable_sessions_get_no_copies(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    bob = await bobs(h)
    quiet = await h.connect("bob", "quiet")
    await enable(h, quiet)
    await h.send(alice, "<message to='bob@localhost/pc' type='chat'><body>hi</body></message>")
    assert quiet.take() == [] and len(bob["phone"].take()) == 1


async def test_a_message_from_another_server_is_copied(h: ScenarioHarness) -> None:
    bob = await bobs(h)
    original = f"<message from='{ROMEO}' to='bob@localhost/pc' type='chat' id='r1'><body>hi</body></message>"
    await h.server.router.route(xml(original), ROMEO, JID.parse("bob@localhost/pc"))
    assert bob["pc"].take_xml() == expect(original)
    assert bob["phone"].take_xml() == expect(received("bob@localhost/phone", original))


async def test_a_stored_message_makes_no_copies(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    shy = await h.online("bob", "shy", priority=-1)
    await enable(h, shy)
    await h.send(alice, "<message to='bob@localhost' type='chat'><body>later</body></message>")
    assert shy.take() == [] and alice.take() == []  # stored offline (XEP-0160), received by nobody yet
    assert await h.server.storage.archive("localhost", "offline").count("bob") == 1


@pytest.mark.parametrize(("hook", "to"), [(hooks.MESSAGE_FULL, "bob@localhost/pc"), (hooks.MESSAGE_BARE, "bob@localhost")])
async def test_a_message_another_module_takes_makes_no_copies(
    h: ScenarioHarness, hook: hooks.Hook[hooks.StanzaEvent], to: str,
) -> None:
    taken: list[str] = []

    async def take(event: hooks.StanzaEvent) -> hooks.Handled:
        taken.append(event.stanza.findtext("body") or "")
        return hooks.Handled.STOP

    h.host().bus.add(hook, take, priority=5)  # above the message module and our handlers
    alice = await h.online("alice", "home")
    bob = await bobs(h)
    await h.send(alice, f"<message to='{to}' type='chat'><body>mine</body></message>")
    assert taken == ["mine"] and bob["pc"].take() == [] and bob["phone"].take() == []


# -- sent copies (§8) ------------------------------------------------------------------------------------
async def test_a_sent_message_is_copied_to_the_senders_other_enabled_resources(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    bob = await bobs(h, enabled=("pc", "phone"))
    await h.send(bob["pc"], "<message to='alice@localhost' type='chat' id='s1'><body>hello</body></message>")
    original = "<message from='bob@localhost/pc' to='alice@localhost' type='chat' id='s1'><body>hello</body></message>"
    assert alice.take_xml() == expect(original)
    assert bob["phone"].take_xml() == expect(sent("bob@localhost/phone", original))
    assert bob["pc"].take() == [] and bob["tablet"].take() == []


async def test_the_sender_need_not_enable_carbons(h: ScenarioHarness, federation: list[str]) -> None:
    bob = await bobs(h)
    await h.send(bob["tablet"], f"<message to='{ROMEO}' type='normal'><body>far</body></message>")
    original = f"<message from='bob@localhost/tablet' to='{ROMEO}' type='normal'><body>far</body></message>"
    assert federation == expect(original)
    assert bob["phone"].take_xml() == expect(sent("bob@localhost/phone", original, kind="normal"))


async def test_a_message_within_the_account_is_copied_once_as_sent(h: ScenarioHarness) -> None:
    bob = await bobs(h, enabled=("pc", "phone", "tablet"))
    await h.send(bob["pc"], "<message to='bob@localhost/phone' type='chat'><body>note</body></message>")
    original = "<message from='bob@localhost/pc' to='bob@localhost/phone' type='chat'><body>note</body></message>"
    assert [bob[n].take_xml() for n in ("pc", "phone", "tablet")] == [
        [], expect(original), expect(sent("bob@localhost/tablet", original))]


async def test_a_message_without_to_names_the_account_in_its_copy(h: ScenarioHarness) -> None:
    pc = await h.online("bob", "pc", priority=-1)   # takes no bare-JID messages: stored offline
    phone = await h.online("bob", "phone", priority=-1)
    await enable(h, phone)
    await h.send(pc, "<message type='chat'><body>note to self</body></message>")
    assert phone.take_xml() == expect(sent("bob@localhost/phone",
        "<message from='bob@localhost/pc' to='bob@localhost' type='chat'><body>note to self</body></message>"))
    assert pc.take() == []


# -- which messages (§6.1) -------------------------------------------------------------------------------
CHATSTATE = "<composing xmlns='http://jabber.org/protocol/chatstates'/>"


@pytest.mark.parametrize(("text", "eligible"), [
    ("<message type='chat'/>", True),
    (f"<message type='chat'>{CHATSTATE}</message>", True),
    ("<message><body>b</body></message>", True),
    ("<message type='normal'><subject>no body</subject></message>", False),
    ("<message type='normal'><request xmlns='urn:xmpp:receipts'/></message>", True),
    ("<message><displayed xmlns='urn:xmpp:chat-markers:0' id='x'/></message>", True),
    ("<message type='headline'><body>news</body></message>", False),
    (f"<message type='headline'>{CHATSTATE}</message>", True),
    ("<message type='groupchat'><body>room</body></message>", False),
    ("<message type='error'><body>echo</body></message>", False),
    (f"<message type='chat'><body>b</body><private xmlns='{NS_CARBONS}'/></message>", False),
    (f"<message type='chat'><body>b</body><no-copy xmlns='{HINTS}'/></message>", False),
    (f"<message type='chat'><received xmlns='{NS_CARBONS}'/></message>", False),
    (f"<message type='chat'><sent xmlns='{NS_CARBONS}'/></message>", False),
    ("<message><x xmlns='jabber:x:conference' jid='room@muc.example'/></message>", True),
    (f"<message><x xmlns='{MUC_USER}'><invite from='a@b'/></x></message>", True),
])
def test_eligibility(text: str, eligible: bool) -> None:
    for direction in Direction:
        assert is_eligible(xml(text), direction, ROMEO) is eligible


def test_errors_are_eligible_when_they_answer_a_copied_message() -> None:
    error = xml("<message type='error' id='m1'><body>b</body></message>")
    assert is_eligible(error, Direction.RECEIVED, ROMEO, answers_copied=True)
    assert not is_eligible(error, Direction.RECEIVED, ROMEO, answers_copied=False)


@pytest.mark.parametrize(("direction", "peer", "eligible"), [
    (Direction.SENT, "room@muc.example/nick", True),
    (Direction.RECEIVED, "room@muc.example/nick", False),
    (Direction.RECEIVED, "room@muc.example", True),  # from the room itself: the general rules
])
def test_muc_private_messages(direction: Direction, peer: str, eligible: bool) -> None:
    stanza = xml(f"<message type='chat'><body>psst</body><x xmlns='{MUC_USER}'/></message>")
    assert is_eligible(stanza, direction, JID.parse(peer)) is eligible


@pytest.mark.parametrize("payload", [f"<private xmlns='{NS_CARBONS}'/>", f"<no-copy xmlns='{HINTS}'/>"])
async def test_a_message_asking_not_to_be_copied_is_not(h: ScenarioHarness, federation: list[str], payload: str) -> None:
    await h.online("alice", "home")
    bob = await bobs(h, enabled=("pc", "phone", "tablet"))
    await h.send(bob["pc"], f"<message to='alice@localhost/home' type='chat'><body>b</body>{payload}</message>")
    await h.send(bob["pc"], f"<message to='{ROMEO}' type='chat'><body>b</body>{payload}</message>")
    await h.server.router.route(xml(f"<message type='chat'><body>b</body>{payload}</message>"),
                                ROMEO, JID.parse("bob@localhost/pc"))
    assert [len(bob[n].take()) for n in ("pc", "phone", "tablet")] == [1, 0, 0]
    # The sending server leaves <private/> in (the receiving one removes it); hints always stay.
    assert federation == expect(f"<message from='bob@localhost/pc' to='{ROMEO}' type='chat'><body>b</body>{payload}</message>")


@pytest.mark.parametrize("to", ["bob@localhost/pc", "bob@localhost"])
async def test_private_is_removed_before_local_delivery(h: ScenarioHarness, to: str) -> None:
    alice = await h.online("alice", "home")
    bob = await bobs(h)
    await h.send(alice, f"<message to='{to}' type='chat' id='p'><body>b</body><private xmlns='{NS_CARBONS}'/></message>")
    stripped = f"<message from='alice@localhost/home' to='{to}' type='chat' id='p'><body>b</body></message>"
    assert bob["pc"].take_xml() == expect(stripped)
    assert bob["phone"].take_xml() == ([] if to.endswith("/pc") else expect(stripped))


@pytest.mark.parametrize("text", [
    "<message to='bob@localhost' type='groupchat'><body>room</body></message>",
    "<message to='bob@localhost/pc' type='headline'><body>news</body></message>",
    "<message to='bob@localhost/pc' type='normal'><subject>s</subject></message>",
    ("<message to='bob@localhost/pc' type='error'><error type='cancel'>"
     "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"),
])
async def test_messages_that_are_not_copied(h: ScenarioHarness, text: str) -> None:
    alice = await h.online("alice", "home")
    bob = await bobs(h)
    await enable(h, alice)
    second = await h.online("alice", "work")
    await enable(h, second)
    await h.send(alice, text)
    assert bob["phone"].take() == [] and second.take() == []


async def test_an_error_answering_a_copied_message_is_copied(h: ScenarioHarness) -> None:
    bob = await bobs(h)
    await h.send(bob["pc"], "<message to='nobody@localhost' type='chat' id='lost'><body>anyone?</body></message>")
    copies = bob["phone"].take()
    assert [c.find(d, NS_CARBONS) is not None for c, d in zip(copies, ("sent", "received"))] == [True, True]
    inner = copies[1].find("received", NS_CARBONS)
    forwarded = inner.find("forwarded", FWD) if inner is not None else None
    error = forwarded.find("message", "jabber:client") if forwarded is not None else None
    assert error is not None and error_of(error) == ("cancel", "service-unavailable")
    assert (copies[1].get("type"), error.get("id"), error.get("from")) == ("error", "lost", "nobody@localhost")


async def test_muc_private_messages_end_to_end(h: ScenarioHarness, federation: list[str]) -> None:
    bob = await bobs(h)
    occupant = JID.parse("room@muc.remote.example/nurse")
    pm = f"<message type='chat'><body>psst</body><x xmlns='{MUC_USER}'/></message>"
    await h.server.router.route(xml(pm), occupant, JID.parse("bob@localhost/pc"))
    assert bob["phone"].take() == []  # the room gives it to every joined client itself
    await h.send(bob["pc"], f"<message to='{occupant}' type='chat'><body>psst</body><x xmlns='{MUC_USER}'/></message>")
    assert [c.find("sent", NS_CARBONS) is not None for c in bob["phone"].take()] == [True]


# -- loops and forgeries (§11) ---------------------------------------------------------------------------
async def test_a_forged_carbon_keeps_its_full_jid_and_is_not_copied(h: ScenarioHarness) -> None:
    bob = await bobs(h, enabled=("pc", "phone", "tablet"))
    forged = (f"<received xmlns='{NS_CARBONS}'><forwarded xmlns='{FWD}'>"
              "<message from='alice@localhost/home' to='bob@localhost/phone' type='chat'><body>I owe you</body></message>"
              "</forwarded></received>")
    await h.send(bob["pc"], f"<message from='bob@localhost' to='bob@localhost/phone' type='chat'>{forged}</message>")
    # The router stamps the full JID, so the phone (§11: carbons only from the bare JID) ignores it.
    assert bob["phone"].take_xml() == expect(
        f"<message from='bob@localhost/pc' to='bob@localhost/phone' type='chat'>{forged}</message>")
    assert bob["pc"].take() == [] and bob["tablet"].take() == []


async def test_blocked_messages_make_no_copies(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    bob = await bobs(h)
    await h.send(bob["pc"], "<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='alice@localhost'/></block></iq>")
    h.clear()
    await h.send(alice, "<message to='bob@localhost/pc' type='chat'><body>1</body></message>")
    await h.send(bob["pc"], "<message to='alice@localhost' type='chat'><body>2</body></message>")
    assert [m.get("type") for m in bob["pc"].take()] == ["error"]  # XEP-0191 §3.3: refused
    assert bob["phone"].take() == []

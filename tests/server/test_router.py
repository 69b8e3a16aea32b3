"""RFC 6120 §8.1.2.1 and §10, RFC 6121 §8.5: where the router sends each stanza, XML in, XML out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.harness import ScenarioHarness, error_of, expect, xml
from xmppcore.server import hooks
from xmppcore.stanza.errors import StreamCondition

DISCO_INFO = "http://jabber.org/protocol/disco#info"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[ScenarioHarness]:
    async with ScenarioHarness.running(tmp_path) as harness:
        await harness.add_user("alice")
        await harness.add_user("bob")
        yield harness


# -- 'from' (RFC 6120 §8.1.2.1) -----------------------------------------------------------------
@pytest.mark.parametrize("claimed", [None, "alice@localhost", "alice@localhost/phone", "Alice@LOCALHOST/phone"])
async def test_from_is_stamped_with_the_full_jid(h: ScenarioHarness, claimed: str | None) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    from_attr = f" from='{claimed}'" if claimed else ""
    await h.send(alice, f"<message to='bob@localhost/pc' id='m1'{from_attr}><body>hi</body></message>")
    assert bob.take_xml() == expect(
        "<message from='alice@localhost/phone' to='bob@localhost/pc' id='m1'><body>hi</body></message>")
    assert alice.closes == []


@pytest.mark.parametrize("claimed", ["bob@localhost", "alice@localhost/laptop", "localhost", "@bad"])
async def test_a_foreign_from_ends_the_stream_with_invalid_from(h: ScenarioHarness, claimed: str) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await h.send(alice, f"<message from='{claimed}' to='bob@localhost/pc'><body>hi</body></message>")
    assert [condition for condition, _ in alice.closes] == [StreamCondition.INVALID_FROM]
    assert bob.take() == []


async def test_the_inbound_stanza_is_not_mutated(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await h.online("bob", "pc")
    stanza = xml("<message to='bob@localhost' type='chat'><body>hi</body></message>")
    await h.send(alice, stanza)
    assert stanza.get("from") is None


# -- 'to' ----------------------------------------------------------------------------------------
async def test_a_message_without_to_goes_to_the_account_itself(h: ScenarioHarness) -> None:
    # RFC 6120 §8.1.1.1: no 'to' means the sender's own bare JID.
    phone = await h.online("alice", "phone")
    laptop = await h.online("alice", "laptop")
    await h.send(phone, "<message type='chat' id='m1'><body>note to self</body></message>")
    for session in (phone, laptop):
        [got] = session.take()
        assert got.get("from") == "alice@localhost/phone"
        assert got.findtext("body") == "note to self"


async def test_an_iq_without_to_is_answered_on_behalf_of_the_account(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, f"<iq type='get' id='q1'><query xmlns='{DISCO_INFO}'/></iq>")
    reply = alice.take_one()
    assert (reply.get("type"), reply.get("id"), reply.get("to")) == ("result", "q1", "alice@localhost/phone")
    query = reply.find("query", DISCO_INFO)
    assert query is not None
    assert [(i.get("category"), i.get("type")) for i in query.findall("identity")] == [("account", "registered")]


@pytest.mark.parametrize("target", ["@localhost", "bob@", "bob@localhost/", "bob@local host"])
async def test_an_invalid_to_is_answered_with_jid_malformed(h: ScenarioHarness, target: str) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, f"<message to='{target}' id='m1'><body>hi</body></message>")
    assert alice.take_xml() == expect(f"""
        <message to='alice@localhost/phone' type='error' id='m1'>
          <body>hi</body>
          <error type='modify'><jid-malformed xmlns='{STANZAS}'/></error>
        </message>""")


async def test_an_error_with_an_invalid_to_is_dropped(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, f"<message to='@localhost' type='error'><error type='cancel'><gone xmlns='{STANZAS}'/></error></message>")
    assert h.quiet()


# -- messages to accounts (RFC 6121 §8.5) --------------------------------------------------------
async def test_a_message_to_a_full_jid_reaches_only_that_resource(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    pc = await h.online("bob", "pc")
    phone = await h.online("bob", "phone")
    await h.send(alice, "<message to='bob@localhost/phone' type='chat'><body>hi</body></message>")
    assert phone.take_xml() == expect(
        "<message from='alice@localhost/phone' to='bob@localhost/phone' type='chat'><body>hi</body></message>")
    assert pc.take() == [] and alice.take() == []


@pytest.mark.parametrize(("kind", "priorities", "receivers"), [
    ("chat", (5, 1, -1), {0}),           # §8.5.2.1.1: the highest non-negative priority wins
    ("normal", (3, 3, 0), {0, 1}),       # ... and all resources sharing it get the message
    ("chat", (0, -1, -5), {0}),
    ("headline", (5, 1, 0), {0, 1, 2}),  # §8.5.2.1.1: headline to every non-negative resource
    ("headline", (5, -1, 0), {0, 2}),
])
async def test_a_message_to_the_bare_jid_follows_priorities(
    h: ScenarioHarness, kind: str, priorities: tuple[int, ...], receivers: set[int],
) -> None:
    alice = await h.online("alice", "phone")
    bobs = [await h.online("bob", f"r{i}", priority=p) for i, p in enumerate(priorities)]
    await h.send(alice, f"<message to='bob@localhost' type='{kind}'><body>hi</body></message>")
    got = {i for i, bob in enumerate(bobs) if bob.take_xml() == expect(
        f"<message from='alice@localhost/phone' to='bob@localhost' type='{kind}'><body>hi</body></message>")}
    assert got == receivers
    assert h.quiet() and alice.take() == []


@pytest.mark.parametrize("kind", ["chat", "normal"])
async def test_only_negative_or_unavailable_resources_means_service_unavailable(h: ScenarioHarness, kind: str) -> None:
    # §8.5.2.1.1: negative priority never receives bare-JID messages; §8.5.2.2: no module stores
    # offline messages here, so the sender learns the message was not delivered.
    alice = await h.online("alice", "phone")
    negative = await h.online("bob", "hidden", priority=-1)
    connected = await h.connect("bob", "no-presence-yet")
    await h.send(alice, f"<message to='bob@localhost' type='{kind}' id='m1'><body>hi</body></message>")
    assert error_of(alice.take_one()) == ("cancel", "service-unavailable")
    assert negative.take() == [] and connected.take() == []


async def test_a_headline_to_no_available_resource_vanishes(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, "<message to='bob@localhost' type='headline'><body>news</body></message>")
    assert h.quiet()


async def test_a_message_to_an_offline_resource_is_treated_as_to_the_bare_jid(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await h.send(alice, "<message to='bob@localhost/gone' type='chat'><body>hi</body></message>")
    assert bob.take_xml() == expect(
        "<message from='alice@localhost/phone' to='bob@localhost/gone' type='chat'><body>hi</body></message>")


@pytest.mark.parametrize("target", ["bob@localhost", "bob@localhost/gone"])
async def test_groupchat_to_an_account_is_service_unavailable(h: ScenarioHarness, target: str) -> None:
    # RFC 6121 §8.5.2.1.1 (bare JID) and §8.5.3.2.1 (no such resource).
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await h.send(alice, f"<message to='{target}' type='groupchat' id='g1'><body>hi</body></message>")
    assert alice.take_xml() == expect(f"""
        <message from='{target}' to='alice@localhost/phone' type='error' id='g1'>
          <body>hi</body>
          <error type='cancel'><service-unavailable xmlns='{STANZAS}'/></error>
        </message>""")
    assert bob.take() == []


@pytest.mark.parametrize("target", ["nobody@localhost", "nobody@localhost/res"])
async def test_a_message_to_an_unknown_account_is_service_unavailable(h: ScenarioHarness, target: str) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, f"<message to='{target}' type='chat' id='m1'><body>hi</body></message>")
    reply = alice.take_one()
    assert error_of(reply) == ("cancel", "service-unavailable")
    assert (reply.get("from"), reply.get("id")) == (target, "m1")


@pytest.mark.parametrize("kind", ["", " type='subscribe'", " type='unavailable'", " type='probe'"])
async def test_presence_to_an_unknown_account_is_dropped(h: ScenarioHarness, kind: str) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, f"<presence to='nobody@localhost'{kind}/>")
    assert h.quiet() and alice.closes == []


# -- IQs to accounts -----------------------------------------------------------------------------
async def test_an_iq_to_an_online_full_jid_is_delivered(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.connect("bob", "pc")  # no presence needed for IQs
    await h.send(alice, "<iq to='bob@localhost/pc' type='get' id='q1'><query xmlns='urn:example'/></iq>")
    assert bob.take_xml() == expect(
        "<iq from='alice@localhost/phone' to='bob@localhost/pc' type='get' id='q1'><query xmlns='urn:example'/></iq>")
    await h.send(bob, "<iq to='alice@localhost/phone' type='result' id='q1'/>")
    assert alice.take_xml() == expect("<iq from='bob@localhost/pc' to='alice@localhost/phone' type='result' id='q1'/>")


@pytest.mark.parametrize("target", ["bob@localhost/gone", "nobody@localhost/res", "nobody@localhost"])
async def test_an_iq_request_to_no_such_entity_is_service_unavailable(h: ScenarioHarness, target: str) -> None:
    # RFC 6121 §8.5.3.2.2 (no such resource) and §8.5.1 (no such account).
    alice = await h.online("alice", "phone")
    await h.online("bob", "pc")
    await h.send(alice, f"<iq to='{target}' type='set' id='q1'><query xmlns='urn:example'/></iq>")
    assert alice.take_xml() == expect(f"""
        <iq from='{target}' to='alice@localhost/phone' type='error' id='q1'>
          <query xmlns='urn:example'/>
          <error type='cancel'><service-unavailable xmlns='{STANZAS}'/></error>
        </iq>""")


@pytest.mark.parametrize("target", ["bob@localhost/gone", "nobody@localhost/res", "nobody@localhost", "localhost"])
@pytest.mark.parametrize("stanza", [
    "<iq type='result' id='q1'/>",
    f"<iq type='error' id='q1'><error type='cancel'><service-unavailable xmlns='{STANZAS}'/></error></iq>",
])
async def test_iq_results_and_errors_are_never_answered(h: ScenarioHarness, target: str, stanza: str) -> None:
    alice = await h.online("alice", "phone")
    await h.online("bob", "pc")
    await h.send(alice, stanza.replace("<iq ", f"<iq to='{target}' ", 1))
    assert h.quiet()


async def test_an_iq_to_a_bare_jid_is_answered_by_the_server(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await h.send(alice, "<iq to='bob@localhost' type='get' id='q1'><ping xmlns='urn:xmpp:ping'/></iq>")
    reply = alice.take_one()
    assert (reply.get("from"), reply.get("type")) == ("bob@localhost", "result")
    # XEP-0030 §8: the server answers for bob, but tells a stranger nothing about the account.
    await h.send(alice, f"<iq to='bob@localhost' type='get' id='q3'><query xmlns='{DISCO_INFO}'/></iq>")
    assert error_of(alice.take_one()) == ("cancel", "service-unavailable")
    await h.send(alice, "<iq to='bob@localhost' type='get' id='q2'><query xmlns='urn:example'/></iq>")
    assert error_of(alice.take_one()) == ("cancel", "service-unavailable")
    assert bob.take() == []


# -- IQs to the server (RFC 6120 §8.2.3, §8.4) -----------------------------------------------------
@pytest.mark.parametrize(("stanza", "condition"), [
    ("<iq to='localhost' type='get' id='q1'><query xmlns='urn:example'/></iq>", "service-unavailable"),
    ("<iq to='localhost' type='set' id='q1'><ping xmlns='urn:xmpp:ping'/></iq>", "not-allowed"),
    ("<iq to='localhost' type='get' id='q1'/>", "bad-request"),
    ("<iq to='localhost' type='get' id='q1'><ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/></iq>",
     "bad-request"),
    ("<iq to='localhost' type='fetch' id='q1'><ping xmlns='urn:xmpp:ping'/></iq>", "bad-request"),
    ("<iq to='localhost' id='q1'><ping xmlns='urn:xmpp:ping'/></iq>", "bad-request"),
    ("<iq to='bob@localhost' type='get' id='q1'/>", "bad-request"),
])
async def test_iq_requests_the_server_cannot_answer(h: ScenarioHarness, stanza: str, condition: str) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, stanza)
    reply = alice.take_one()
    assert error_of(reply) == ({"bad-request": "modify"}.get(condition, "cancel"), condition)
    assert (reply.get("id"), reply.get("to")) == ("q1", "alice@localhost/phone")
    assert h.quiet()


# -- the filter hook ------------------------------------------------------------------------------
async def test_a_filter_hook_can_stop_a_stanza_before_routing(h: ScenarioHarness) -> None:
    async def drop_spam(event: hooks.StanzaEvent) -> hooks.Handled | None:
        assert event.stanza.get("from") == "alice@localhost/phone"  # filters see the stamped stanza
        return hooks.Handled.STOP if event.stanza.findtext("body") == "spam" else None

    h.host().bus.add(hooks.FILTER_FROM_CLIENT, drop_spam)
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await h.send(alice, "<message to='bob@localhost/pc'><body>spam</body></message>")
    await h.send(alice, "<message to='bob@localhost/pc'><body>ham</body></message>")
    assert [m.findtext("body") for m in bob.take()] == ["ham"]
    assert alice.take() == []


# -- errors, remote domains, the server's domain ------------------------------------------------------
@pytest.mark.parametrize("target", ["localhost", "nobody@localhost", "bob@localhost", "romeo@example.net"])
async def test_error_stanzas_are_never_answered_with_errors(h: ScenarioHarness, target: str) -> None:
    alice = await h.online("alice", "phone")
    error = f"<error type='cancel'><service-unavailable xmlns='{STANZAS}'/></error>"
    await h.send(alice, f"<message to='{target}' type='error' id='e1'>{error}</message>")
    await h.send(alice, f"<presence to='{target}' type='error' id='e2'>{error}</presence>")
    assert h.quiet()


@pytest.mark.parametrize("stanza", [
    "<message to='romeo@example.net' type='chat' id='x1'><body>hi</body></message>",
    "<iq to='example.net' type='get' id='x1'><ping xmlns='urn:xmpp:ping'/></iq>",
])
async def test_a_remote_domain_without_federation_is_remote_server_not_found(h: ScenarioHarness, stanza: str) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, stanza)
    reply = alice.take_one()
    assert error_of(reply) == ("cancel", "remote-server-not-found")
    assert reply.get("id") == "x1"


@pytest.mark.parametrize(("kind", "answered"), [("chat", True), ("normal", True), ("headline", False)])
async def test_a_message_to_the_server_domain(h: ScenarioHarness, kind: str, answered: bool) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, f"<message to='localhost' type='{kind}' id='m1'><body>hi</body></message>")
    replies = alice.take()
    if answered:
        assert [error_of(r) for r in replies] == [("cancel", "service-unavailable")]
        assert replies[0].get("from") == "localhost"
    else:
        assert replies == []


# -- filters fail closed -----------------------------------------------------------------------------
@pytest.mark.parametrize("hook", [hooks.FILTER_FROM_CLIENT, hooks.FILTER_TO_ACCOUNT])
async def test_a_crashing_filter_lets_nothing_through_and_tells_the_sender(
        h: ScenarioHarness, hook: hooks.Hook[hooks.StanzaEvent]) -> None:
    # A check that cannot run (a blocking list whose storage is down) must not deliver the
    # stanza as if it had passed; the sender learns it did not go through.
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")

    async def broken(event: hooks.StanzaEvent) -> hooks.Handled | None:
        raise RuntimeError("storage is down")

    h.host().bus.add(hook, broken)
    await h.send(alice, "<message to='bob@localhost' type='chat' id='m1'><body>hi</body></message>")
    assert bob.take() == []
    assert error_of(alice.take_one()) == ("cancel", "internal-server-error")
    await h.send(alice, "<iq to='bob@localhost/pc' type='result' id='r1'/>")
    assert bob.take() == [] and alice.take() == []  # a response is never answered

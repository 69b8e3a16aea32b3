"""XEP-0191: Blocking Command — the commands, their pushes, and what a block does to stanzas."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.harness import DEFAULT_MODULES, FakeSession, ScenarioHarness, canonical, error_of, expect, xml
from xmppcore.config import ConfigError
from xmppcore.jid import JID
from xmppcore.modules.blocking import NS_BLOCKING, NS_BLOCKING_ERRORS, Blocklists, matches, parse_items
from xmppcore.stanza.errors import StanzaError

MODULES = (*DEFAULT_MODULES, "blocking")
NS = NS_BLOCKING


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[ScenarioHarness]:
    async with ScenarioHarness.running(tmp_path, modules=MODULES, domains=("localhost", "example.org")) as harness:
        for user in ("alice", "bob"):
            await harness.add_user(user)
        await harness.add_user("carol", domain="example.org")
        yield harness


async def request_blocklist(h: ScenarioHarness, session: FakeSession) -> list[str]:
    """Ask for the blocklist (which also makes the session interested in pushes); its JIDs."""
    await h.send(session, f"<iq type='get' id='bl'><blocklist xmlns='{NS}'/></iq>")
    reply = session.take_one()
    assert reply.get("type") == "result", canonical(reply)
    blocklist = reply.find("blocklist", NS)
    assert blocklist is not None
    return [item.get("jid") or "" for item in blocklist.findall("item", NS)]


async def block(h: ScenarioHarness, session: FakeSession, *jids: str) -> None:
    items = "".join(f"<item jid='{jid}'/>" for jid in jids)
    await h.send(session, f"<iq type='set' id='block'><block xmlns='{NS}'>{items}</block></iq>")
    h.clear()


# -- matching (§6) -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("item", "jid", "blocked"), [
    ("romeo@montague.net/orchard", "romeo@montague.net/orchard", True),
    ("romeo@montague.net/orchard", "romeo@montague.net/garden", False),
    ("romeo@montague.net/orchard", "romeo@montague.net", False),
    ("romeo@montague.net", "romeo@montague.net", True),
    ("romeo@montague.net", "romeo@montague.net/garden", True),
    ("romeo@montague.net", "benvolio@montague.net", False),
    ("montague.net/gate", "montague.net/gate", True),
    ("montague.net/gate", "montague.net", False),
    ("montague.net/gate", "romeo@montague.net/gate", False),
    ("montague.net", "montague.net", True),
    ("montague.net", "romeo@montague.net/garden", True),
    ("montague.net", "montague.net/gate", True),
    ("montague.net", "chat.montague.net", False),   # 1.3 no longer names subdomains
    ("montague.net", "capulet.com", False),
])
def test_jid_matching(item: str, jid: str, blocked: bool) -> None:
    assert matches(JID.parse(item), JID.parse(jid)) is blocked


def test_items_are_normalised_and_deduplicated() -> None:
    payload = xml(f"<block xmlns='{NS}'><item jid='Romeo@Montague.NET'/><item jid='romeo@montague.net'/></block>")
    assert parse_items(payload) == [JID.parse("romeo@montague.net")]


@pytest.mark.parametrize(("item", "condition"), [
    ("<item/>", "bad-request"),
    ("<item jid='a@b@c'/>", "jid-malformed"),
    ("<item jid=''/>", "jid-malformed"),
])
def test_bad_items_are_refused(item: str, condition: str) -> None:
    with pytest.raises(StanzaError) as refused:
        parse_items(xml(f"<block xmlns='{NS}'>{item}</block>"))
    assert refused.value.condition.value == condition


# -- the commands (§3.1-§3.5) -------------------------------------------------------------------------
async def test_the_server_advertises_blocking(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, "<iq to='localhost' type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    query = alice.take_one().find("query", "http://jabber.org/protocol/disco#info")
    assert query is not None
    assert NS in [f.get("var") for f in query.findall("feature")]


async def test_an_empty_blocklist(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, f"<iq type='get' id='bl1'><blocklist xmlns='{NS}'/></iq>")
    assert alice.take_xml() == expect(
        f"<iq to='alice@localhost/phone' type='result' id='bl1'><blocklist xmlns='{NS}'/></iq>")


async def test_block_answers_and_pushes_to_the_resources_that_asked_for_the_list(h: ScenarioHarness) -> None:
    phone = await h.online("alice", "phone")
    laptop = await h.online("alice", "laptop")
    tablet = await h.online("alice", "tablet")
    await request_blocklist(h, phone)
    await request_blocklist(h, laptop)
    await h.send(phone, f"<iq type='set' id='b1'><block xmlns='{NS}'><item jid='Romeo@Montague.NET'/></block></iq>")
    pushed = f"<block xmlns='{NS}'><item jid='romeo@montague.net'/></block>"
    got = phone.take()
    assert canonical(got[-1]) == expect("<iq to='alice@localhost/phone' type='result' id='b1'/>")[0]
    push_ids = []
    for session, stanzas in ((phone, got[:-1]), (laptop, laptop.take())):
        assert len(stanzas) == 1
        push = stanzas[0]
        push_ids.append(push.get("id"))
        assert canonical(push) == expect(
            f"<iq from='alice@localhost' to='{session.jid}' type='set' id='{push.get('id')}'>{pushed}</iq>")[0]
    assert len(set(push_ids)) == 2
    assert tablet.take() == []   # never asked for the blocklist: no pushes (§3.3)
    assert await request_blocklist(h, tablet) == ["romeo@montague.net"]


async def test_the_blocklist_lists_every_blocked_jid_in_order(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await block(h, alice, "romeo@montague.net", "iago@shakespeare.lit")
    await block(h, alice, "montague.net", "romeo@montague.net")
    assert await request_blocklist(h, alice) == ["romeo@montague.net", "iago@shakespeare.lit", "montague.net"]


@pytest.mark.parametrize(("payload", "condition"), [
    (f"<block xmlns='{NS}'/>", "bad-request"),                                                  # §3.3
    (f"<block xmlns='{NS}'><item jid='ok@example.net'/><item jid='a@b@c'/></block>", "jid-malformed"),
    (f"<block xmlns='{NS}'><item jid='ok@example.net'/><item/></block>", "bad-request"),
    (f"<unblock xmlns='{NS}'><item jid='@example.net'/></unblock>", "jid-malformed"),
])
async def test_a_refused_command_changes_nothing(h: ScenarioHarness, payload: str, condition: str) -> None:
    alice = await h.online("alice", "phone")
    laptop = await h.online("alice", "laptop")
    await block(h, alice, "keep@example.net")
    await request_blocklist(h, laptop)
    await h.send(alice, f"<iq type='set' id='bad'>{payload}</iq>")
    reply = alice.take_one()
    assert error_of(reply) == ("modify", condition)
    assert laptop.take() == []   # no push
    assert await request_blocklist(h, alice) == ["keep@example.net"]


async def test_a_block_beyond_the_limit_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    async with ScenarioHarness.running(tmp_path, modules=MODULES, options={"blocking": {"max_items": 2}}) as h:
        await h.add_user("alice")
        alice = await h.online("alice", "phone")
        laptop = await h.online("alice", "laptop")
        await request_blocklist(h, laptop)
        await block(h, alice, "one@example.net", "two@example.net")
        await h.send(alice, f"<iq type='set' id='b3'><block xmlns='{NS}'><item jid='three@example.net'/></block></iq>")
        assert error_of(alice.take_one()) == ("modify", "policy-violation")
        assert laptop.take() == []
        assert await request_blocklist(h, alice) == ["one@example.net", "two@example.net"]
        # Blocking what is already blocked adds nothing, so it fits.
        await h.send(alice, f"<iq type='set' id='b4'><block xmlns='{NS}'><item jid='two@example.net'/></block></iq>")
        assert [(s.get("id"), s.get("type")) for s in alice.take()][-1] == ("b4", "result")


async def test_max_items_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        async with ScenarioHarness.running(tmp_path, modules=MODULES, options={"blocking": {"max_items": 0}}):
            pass


async def test_unblock_one_jid_pushes_it_and_keeps_the_others(h: ScenarioHarness) -> None:
    phone = await h.online("alice", "phone")
    laptop = await h.online("alice", "laptop")
    await request_blocklist(h, laptop)
    await block(h, phone, "romeo@montague.net", "iago@shakespeare.lit")
    await h.send(phone, f"<iq type='set' id='u1'><unblock xmlns='{NS}'><item jid='romeo@montague.net'/></unblock></iq>")
    assert phone.take_xml() == expect("<iq to='alice@localhost/phone' type='result' id='u1'/>")
    push = laptop.take_one()
    assert canonical(push) == expect(
        f"<iq from='alice@localhost' to='alice@localhost/laptop' type='set' id='{push.get('id')}'>"
        f"<unblock xmlns='{NS}'><item jid='romeo@montague.net'/></unblock></iq>")[0]
    assert await request_blocklist(h, phone) == ["iago@shakespeare.lit"]


async def test_an_empty_unblock_unblocks_everything(h: ScenarioHarness) -> None:
    phone = await h.online("alice", "phone")
    laptop = await h.online("alice", "laptop")
    await request_blocklist(h, laptop)
    await block(h, phone, "romeo@montague.net", "montague.net")
    await h.send(phone, f"<iq type='set' id='u2'><unblock xmlns='{NS}'/></iq>")
    assert phone.take_xml() == expect("<iq to='alice@localhost/phone' type='result' id='u2'/>")
    push = laptop.take_one()
    assert canonical(push) == expect(
        f"<iq from='alice@localhost' to='alice@localhost/laptop' type='set' id='{push.get('id')}'>"
        f"<unblock xmlns='{NS}'/></iq>")[0]
    assert await request_blocklist(h, phone) == []
    assert await h.server.storage.map("localhost", "blocklist").get_all("alice") == {}


async def test_blocks_are_stored_per_account(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await block(h, alice, "romeo@montague.net")
    store = h.server.storage.map("localhost", "blocklist")
    assert list((await store.get_all("alice")).keys()) == ["romeo@montague.net"]
    assert await store.get_all("bob") == {}
    # A fresh reader (another process, a restart) sees the same list.
    assert await Blocklists(store).items("alice") == (JID.parse("romeo@montague.net"),)


async def test_another_accounts_blocklist_is_forbidden(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await h.online("bob", "pc")
    await h.send(alice, f"<iq to='bob@localhost' type='get' id='x1'><blocklist xmlns='{NS}'/></iq>")
    assert error_of(alice.take_one()) == ("auth", "forbidden")
    await h.send(alice, f"<iq to='bob@localhost' type='set' id='x2'><block xmlns='{NS}'><item jid='a@b.c'/></block></iq>")
    assert error_of(alice.take_one()) == ("auth", "forbidden")
    assert h.quiet()


# -- enforcement: stanzas from a blocked JID (§3.3) ----------------------------------------------------
@pytest.mark.parametrize("to", ["alice@localhost/phone", "alice@localhost"])
async def test_messages_from_a_blocked_jid_bounce_with_service_unavailable(h: ScenarioHarness, to: str) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await block(h, alice, "bob@localhost")
    await h.send(bob, f"<message to='{to}' type='chat' id='m1'><body>hi</body></message>")
    assert alice.take() == []
    assert bob.take_xml() == expect(f"""
        <message from='{to}' to='bob@localhost/pc' type='error' id='m1'><body>hi</body>
          <error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>
        </message>""")


@pytest.mark.parametrize(("to", "payload"), [
    ("alice@localhost/phone", "<ping xmlns='urn:xmpp:ping'/>"),
    ("alice@localhost", "<query xmlns='http://jabber.org/protocol/disco#info'/>"),  # answered by the server
])
async def test_iq_requests_from_a_blocked_jid_get_service_unavailable(h: ScenarioHarness, to: str, payload: str) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await block(h, alice, "bob@localhost")
    await h.send(bob, f"<iq to='{to}' type='get' id='i1'>{payload}</iq>")
    assert alice.take() == []
    reply = bob.take_one()
    assert error_of(reply) == ("cancel", "service-unavailable")
    assert (reply.get("from"), reply.get("id")) == (to, "i1")


@pytest.mark.parametrize("stanza", [
    "<presence to='alice@localhost/phone'/>",
    "<presence to='alice@localhost'/>",
    "<presence to='alice@localhost' type='subscribe'/>",
    "<presence to='alice@localhost' type='probe'/>",
    "<presence to='alice@localhost/phone' type='error'/>",
    "<iq to='alice@localhost/phone' type='result' id='r1'/>",
    "<iq to='alice@localhost/phone' type='error' id='r2'><error type='cancel'/></iq>",
    "<message to='alice@localhost/phone' type='error' id='e1'><error type='cancel'/></message>",
])
async def test_presence_and_replies_from_a_blocked_jid_vanish(h: ScenarioHarness, stanza: str) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await block(h, alice, "bob@localhost")
    await h.send(bob, stanza)
    assert h.quiet()   # neither delivered nor answered


async def test_a_full_jid_block_leaves_the_other_resources_alone(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    pc = await h.online("bob", "pc")
    mobile = await h.online("bob", "mobile")
    await block(h, alice, "bob@localhost/pc")
    await h.send(mobile, "<message to='alice@localhost/phone' id='m1'><body>hi</body></message>")
    assert [m.get("id") for m in alice.take()] == ["m1"]
    await h.send(pc, "<message to='alice@localhost/phone' id='m2'><body>hi</body></message>")
    assert alice.take() == []
    assert error_of(pc.take_one()) == ("cancel", "service-unavailable")


async def test_a_domain_block_covers_every_account_there(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    carol = await h.connect("carol", "desk", domain="example.org")
    await block(h, alice, "example.org")
    await h.send(carol, "<message to='alice@localhost/phone' id='m1'><body>hi</body></message>")
    assert alice.take() == []
    assert error_of(carol.take_one()) == ("cancel", "service-unavailable")


async def test_unblocking_restores_delivery(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await block(h, alice, "bob@localhost")
    await h.send(alice, f"<iq type='set' id='u1'><unblock xmlns='{NS}'><item jid='bob@localhost'/></unblock></iq>")
    h.clear()
    await h.send(bob, "<message to='alice@localhost/phone' id='m1'><body>hi</body></message>")
    assert [m.get("id") for m in alice.take()] == ["m1"]
    assert bob.take() == []


# -- enforcement: stanzas to a blocked JID (§3.3) ------------------------------------------------------
@pytest.mark.parametrize("stanza", [
    "<message to='bob@localhost/pc' type='chat' id='o1'><body>Can you hear me now?</body></message>",
    "<message to='bob@localhost' id='o1'><body>Can you hear me now?</body></message>",
    "<iq to='bob@localhost/pc' type='get' id='o1'><ping xmlns='urn:xmpp:ping'/></iq>",
    "<presence to='bob@localhost/pc' id='o1'/>",
    "<message to='romeo@unhosted.invalid' id='o1'><body>x</body></message>",
])
async def test_stanzas_to_a_blocked_jid_are_refused_with_blocked(h: ScenarioHarness, stanza: str) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await block(h, alice, "bob@localhost", "unhosted.invalid")
    await h.send(alice, stanza)
    assert bob.take() == []
    reply = alice.take_one()
    assert (reply.get("type"), reply.get("from"), reply.get("to"), reply.get("id")) == \
        ("error", xml(stanza).get("to"), "alice@localhost/phone", "o1")
    error = reply.find("error")
    assert error is not None and error.get("type") == "cancel"
    assert error_of(reply) == ("cancel", "not-acceptable")
    assert error.find("blocked", NS_BLOCKING_ERRORS) is not None


@pytest.mark.parametrize("stanza", [
    "<iq to='bob@localhost/pc' type='result' id='r1'/>",
    "<message to='bob@localhost/pc' type='error' id='e1'><error type='cancel'/></message>",
])
async def test_replies_to_a_blocked_jid_are_held_back_silently(h: ScenarioHarness, stanza: str) -> None:
    alice = await h.online("alice", "phone")
    await h.online("bob", "pc")
    await block(h, alice, "bob@localhost")
    await h.send(alice, stanza)
    assert h.quiet()


async def test_the_server_sends_nothing_on_the_users_behalf_to_a_blocked_jid(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await block(h, alice, "bob@localhost")
    # What a presence broadcast to a subscribed contact looks like to the router.
    await h.server.router.route_stanza(xml("<presence from='alice@localhost/phone' to='bob@localhost/pc'/>"))
    assert bob.take() == [] and alice.take() == []


async def test_the_account_itself_and_its_server_are_never_blocked(h: ScenarioHarness) -> None:
    phone = await h.online("alice", "phone")
    laptop = await h.online("alice", "laptop")
    bob = await h.online("bob", "pc")
    await block(h, phone, "alice@localhost", "localhost")
    await h.send(laptop, "<message to='alice@localhost/phone' id='m1'><body>self</body></message>")
    assert [m.get("id") for m in phone.take()] == ["m1"]
    await h.send(phone, "<iq to='localhost' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert phone.take_xml() == expect("<iq from='localhost' to='alice@localhost/phone' type='result' id='p1'/>")
    # ...while the domain block does cover the other accounts on it.
    await h.send(bob, "<message to='alice@localhost/phone' id='m2'><body>hi</body></message>")
    assert phone.take() == []
    assert error_of(bob.take_one()) == ("cancel", "service-unavailable")

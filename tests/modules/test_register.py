"""XEP-0077: In-Band Registration — registering, the per-address throttle, password changes,
cancellation, and every module forgetting a deleted account (``ACCOUNT_DELETED``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.server.harness import DEFAULT_MODULES, ScenarioHarness, canonical, error_of, expect, xml
from xmppcore.config import ConfigError
from xmppcore.modules.register import NS_REGISTER, RegistrationThrottle
from xmppcore.protocol.sasl import derive_scram_credentials
from xmppcore.server import hooks
from xmppcore.stanza.errors import StreamCondition
from xmppcore.xml.element import Element

DATA_MODULES = ("roster", "vcard", "private", "last", "offline", "blocking")
MODULES = (*DEFAULT_MODULES, *DATA_MODULES, "register")
QUERY = f"xmlns='{NS_REGISTER}'"


async def running(tmp_path: Path, options: Mapping[str, Any] | None = None) -> AsyncIterator[ScenarioHarness]:
    async with ScenarioHarness.running(tmp_path, modules=MODULES,
                                       options={"register": dict(options or {})}) as harness:
        await harness.add_user("alice")
        await harness.add_user("bob")
        yield harness


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[ScenarioHarness]:
    async for harness in running(tmp_path):
        yield harness


async def unauthenticated(h: ScenarioHarness, stanza: str, address: str = "192.0.2.1") -> Element:
    """What the host answers a client that has not logged in (as the c2s runtime asks it)."""
    answers: list[Element] = []
    event = hooks.RegistrationEvent(xml(stanza), h.domain, address, answers.append)
    assert await h.host().bus.fire(hooks.REGISTRATION_REQUESTED, event)
    (reply,) = answers
    return reply


def register(username: str, password: str = "Calliope", iq_id: str = "r1") -> str:
    return (f"<iq type='set' id='{iq_id}'><query {QUERY}><username>{username}</username>"
            f"<password>{password}</password></query></iq>")


async def password_is(h: ScenarioHarness, user: str, password: str) -> bool:
    stored = await h.server.accounts.credentials(h.domain, user, "sha-256")
    assert stored is not None
    derived = derive_scram_credentials(password, "sha-256", salt=stored.salt, iterations=stored.iterations)
    return derived.stored_key == stored.stored_key


# -- before authentication (§3.1.1) ----------------------------------------------------------------
async def test_the_fields_are_a_username_and_a_password(h: ScenarioHarness) -> None:
    reply = await unauthenticated(h, f"<iq type='get' id='g1'><query {QUERY}/></iq>")
    query = reply.find("query", NS_REGISTER)
    assert reply.get("type") == "result" and reply.get("id") == "g1" and query is not None
    assert [child.name for child in query.elements()] == ["instructions", "username", "password"]
    assert query.findtext("username") == "" and query.findtext("instructions")


async def test_a_set_creates_the_account_with_its_normalised_name(h: ScenarioHarness) -> None:
    reply = await unauthenticated(h, register("Bill"))
    assert canonical(reply) == expect("<iq type='result' id='r1'/>")[0]
    assert await h.server.accounts.exists(h.domain, "bill") and await password_is(h, "bill", "Calliope")


@pytest.mark.parametrize("username,password,condition", [
    ("alice", "x", "conflict"),                 # §3.1: the username is taken
    ("ALICE", "x", "conflict"),                 # ... after normalisation
    ("bad@user", "x", "jid-malformed"),         # not a localpart (RFC 7622 §3.3)
    ("bill", "", "not-acceptable"),             # §3.1: an empty password MUST be refused
    ("", "x", "not-acceptable"),                # every field must be given
])
async def test_refused_registrations(h: ScenarioHarness, username: str, password: str, condition: str) -> None:
    reply = await unauthenticated(h, register(username, password))
    assert error_of(reply) is not None and error_of(reply)[1] == condition  # type: ignore[index]
    assert reply.find("query", NS_REGISTER) is None  # the request (and its password) is not echoed
    assert sorted(await h.server.accounts.users(h.domain)) == ["alice", "bob"]


async def test_a_missing_password_element_is_not_acceptable(h: ScenarioHarness) -> None:
    reply = await unauthenticated(h, f"<iq type='set' id='r'><query {QUERY}><username>bill</username></query></iq>")
    assert error_of(reply) == ("modify", "not-acceptable")


async def test_cancelling_before_login_is_an_unexpected_request(h: ScenarioHarness) -> None:
    reply = await unauthenticated(h, f"<iq type='set' id='r'><query {QUERY}><remove/></query></iq>")
    assert error_of(reply) == ("wait", "unexpected-request")  # §3.2 error table


# -- the throttle ---------------------------------------------------------------------------------
async def test_one_registration_per_address_per_window_by_default(h: ScenarioHarness) -> None:
    assert (await unauthenticated(h, register("bill"))).get("type") == "result"
    second = await unauthenticated(h, register("ben"))
    assert error_of(second) == ("wait", "resource-constraint")  # what ejabberd answers too
    assert not await h.server.accounts.exists(h.domain, "ben")
    other = await unauthenticated(h, register("ben"), address="198.51.100.7")
    assert other.get("type") == "result"


async def test_refused_registrations_do_not_count(h: ScenarioHarness) -> None:
    assert error_of(await unauthenticated(h, register("alice"))) == ("cancel", "conflict")
    assert (await unauthenticated(h, register("bill"))).get("type") == "result"


async def test_a_zero_window_turns_the_throttle_off(tmp_path: Path) -> None:
    async for h in running(tmp_path, {"throttle_window": 0}):
        for name in ("u1", "u2", "u3"):
            assert (await unauthenticated(h, register(name))).get("type") == "result"


def test_the_throttle_counts_per_window_and_forgets() -> None:
    throttle = RegistrationThrottle(window=600, limit=2)
    assert throttle.acquire("a", 0) and throttle.acquire("a", 10)
    assert not throttle.acquire("a", 599) and throttle.acquire("b", 599)
    assert throttle.acquire("a", 600.5)   # the first one has left the window
    throttle.release("a", 600.5)          # that registration failed: it does not count
    assert throttle.acquire("a", 601)


def test_the_throttle_remembers_a_bounded_number_of_addresses() -> None:
    throttle = RegistrationThrottle(window=600, limit=1, max_addresses=2)
    assert throttle.acquire("a", 0) and throttle.acquire("b", 0) and throttle.acquire("c", 0)
    assert throttle.acquire("a", 1)  # the oldest address was forgotten
    assert not throttle.acquire("c", 1)


@pytest.mark.parametrize("options,message", [
    ({"throttle_window": -1}, "throttle_window"),
    ({"registrations_per_address": 0}, "registrations_per_address"),
])
async def test_bad_options_are_refused_at_load(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        async for _ in running(tmp_path, options):
            pass


# -- after authentication --------------------------------------------------------------------------
async def test_a_logged_in_account_is_told_it_is_registered(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, f"<iq type='get' id='g'><query {QUERY}/></iq>")
    query = alice.take_one().find("query", NS_REGISTER)
    assert query is not None and query.find("registered") is not None and query.findtext("username") == "alice"


async def test_another_accounts_registration_is_forbidden(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, f"<iq type='get' id='g' to='bob@localhost'><query {QUERY}/></iq>")
    assert error_of(alice.take_one()) == ("auth", "forbidden")


async def test_the_server_advertises_registration(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, "<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    assert f"<feature var='{NS_REGISTER}'/>" in canonical(alice.take_one())


@pytest.mark.parametrize("to", ["", " to='localhost'", " to='alice@localhost'"])
async def test_changing_ones_password(h: ScenarioHarness, to: str) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, f"<iq type='set' id='c1'{to}><query {QUERY}><username>alice</username>"
                        f"<password>newpass</password></query></iq>")
    reply = alice.take_one()
    assert reply.get("type") == "result" and reply.get("id") == "c1" and reply.get("to") == "alice@localhost/phone"
    assert await password_is(h, "alice", "newpass")


@pytest.mark.parametrize("query,condition", [
    ("<username>bob</username><password>newpass</password>", ("auth", "forbidden")),
    ("<username>alice</username><password/>", ("modify", "not-acceptable")),  # §3.3: keep the old one
    ("<password>newpass</password>", ("modify", "bad-request")),              # §3.3 error table
])
async def test_refused_password_changes(h: ScenarioHarness, query: str, condition: tuple[str, str]) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, f"<iq type='set' id='c1'><query {QUERY}>{query}</query></iq>")
    reply = alice.take_one()
    assert error_of(reply) == condition
    assert "newpass" not in canonical(reply)  # §3.3: the original XML is not returned
    assert await password_is(h, "alice", "correct horse battery staple") and await password_is(
        h, "bob", "correct horse battery staple")


@pytest.mark.parametrize("option,query", [
    ("allow_password_change", "<username>alice</username><password>newpass</password>"),
    ("allow_cancel", "<remove/>"),
])
async def test_operators_may_turn_changes_off(tmp_path: Path, option: str, query: str) -> None:
    async for h in running(tmp_path, {option: False}):
        alice = await h.online("alice", "phone")
        await h.send(alice, f"<iq type='set' id='c1'><query {QUERY}>{query}</query></iq>")
        assert error_of(alice.take_one()) == ("cancel", "not-allowed")
        assert await h.server.accounts.exists(h.domain, "alice") and not alice.closes


async def test_remove_must_be_alone(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, f"<iq type='set' id='u1'><query {QUERY}><remove/><username>alice</username></query></iq>")
    assert error_of(alice.take_one()) == ("modify", "bad-request")
    assert await h.server.accounts.exists(h.domain, "alice")


async def test_cancelling_answers_then_ends_every_session(h: ScenarioHarness) -> None:
    phone = await h.online("alice", "phone")
    laptop = await h.online("alice", "laptop")
    await h.send(phone, f"<iq type='set' id='u1'><query {QUERY}><remove/></query></iq>")
    assert phone.take_xml() == expect("<iq type='result' id='u1' to='alice@localhost/phone'/>")
    # §3.2: "a <not-authorized/> stream error" for all active sessions of the account.
    assert [c for c, _ in phone.closes] == [StreamCondition.NOT_AUTHORIZED]
    assert [c for c, _ in laptop.closes] == [StreamCondition.NOT_AUTHORIZED]
    assert not await h.server.accounts.exists(h.domain, "alice")
    assert await h.server.accounts.credentials(h.domain, "alice", "sha-256") is None


# -- ACCOUNT_DELETED: each module forgets the account ---------------------------------------------
async def fill_alices_data(h: ScenarioHarness) -> None:
    """Roster (mutual subscription with bob), vCard, private data, a block, an offline message
    and a recorded logout."""
    alice, bob = await h.online("alice", "phone"), await h.online("bob", "pc")
    for who, stanza in [
        (alice, "<presence to='bob@localhost' type='subscribe'/>"),
        (bob, "<presence to='alice@localhost' type='subscribed'/>"),
        (bob, "<presence to='alice@localhost' type='subscribe'/>"),
        (alice, "<presence to='bob@localhost' type='subscribed'/>"),
        (alice, "<iq type='set' id='v'><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>"),
        (alice, "<iq type='set' id='p'><query xmlns='jabber:iq:private'><n xmlns='urn:x'>1</n></query></iq>"),
        (alice, "<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='eve@evil.example'/></block></iq>"),
    ]:
        await h.send(who, stanza)
    await h.disconnect(alice)  # records the logout (XEP-0012), in the background
    await h.send(bob, "<iq type='get' id='l' to='alice@localhost'><query xmlns='jabber:iq:last'/></iq>")  # waits for it
    await h.send(bob, "<message to='alice@localhost' type='chat'><body>while you were out</body></message>")
    h.clear()


async def alices_data(h: ScenarioHarness) -> dict[str, object]:
    storage = h.server.storage
    return {
        "roster": await storage.map(h.domain, "roster").get_all("alice"),
        "roster_version": await storage.keyval(h.domain, "roster_version").get("alice"),
        "vcard": await storage.keyval(h.domain, "vcard").get("alice"),
        "private": await storage.map(h.domain, "private").get_all("alice"),
        "blocklist": await storage.map(h.domain, "blocklist").get_all("alice"),
        "offline": await storage.archive(h.domain, "offline").count("alice"),
        "last": await storage.keyval(h.domain, "last").get("alice"),
    }


async def test_the_modules_hold_data_for_the_account_before(h: ScenarioHarness) -> None:
    await fill_alices_data(h)
    assert all((await alices_data(h)).values())  # so the test below can fail


async def test_cancelling_deletes_the_accounts_data_everywhere(h: ScenarioHarness) -> None:
    await fill_alices_data(h)
    alice = await h.online("alice", "tablet")
    await h.send(alice, f"<iq type='set' id='u1'><query {QUERY}><remove/></query></iq>")
    await h.disconnect(alice)  # the stream the server ended (the logout is no longer recorded)
    assert await alices_data(h) == {"roster": {}, "roster_version": None, "vcard": None, "private": {},
                                    "blocklist": {}, "offline": 0, "last": None}


async def test_contacts_lose_their_subscriptions_to_a_deleted_account(h: ScenarioHarness) -> None:
    await fill_alices_data(h)
    await h.server.accounts.delete(h.domain, "alice")  # the operator's path (CLI) fires the same hook
    item = await h.server.storage.map(h.domain, "roster").get("bob", "alice@localhost")
    # XEP-0077 §3.2: "cancel all existing presence subscriptions" (both directions, RFC 6121 §2.5.2).
    assert isinstance(item, dict) and item.get("state") == "NONE"
    assert (await alices_data(h))["vcard"] is None


async def test_a_new_account_of_the_same_name_starts_empty(h: ScenarioHarness) -> None:
    await fill_alices_data(h)
    await h.server.accounts.delete(h.domain, "alice")
    await h.add_user("alice")
    alice = await h.online("alice", "phone")
    await h.send(alice, "<iq type='get' id='v'><vCard xmlns='vcard-temp'/></iq>")
    assert alice.take_xml() == expect(
        "<iq type='result' id='v' to='alice@localhost/phone'><vCard xmlns='vcard-temp'/></iq>")

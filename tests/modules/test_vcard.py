"""XEP-0054: vcard-temp — publishing one's vCard, reading anyone's, and what is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.harness import DEFAULT_MODULES, FakeSession, ScenarioHarness, error_of, expect
from xmppcore.config import ConfigError

VCARD = "vcard-temp"
INFO = "http://jabber.org/protocol/disco#info"
MODULES = (*DEFAULT_MODULES, "vcard")
CARD = f"<vCard xmlns='{VCARD}'><FN>Alice Liddell</FN><N><FAMILY>Liddell</FAMILY><GIVEN>Alice</GIVEN></N></vCard>"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[ScenarioHarness]:
    async with ScenarioHarness.running(tmp_path, modules=MODULES) as harness:
        await harness.add_user("alice")
        await harness.add_user("bob")
        yield harness


async def publish(h: ScenarioHarness, session: FakeSession, card: str = CARD) -> None:
    await h.send(session, f"<iq type='set' id='pub'>{card}</iq>")
    reply = session.take_one()
    assert reply.get("type") == "result", error_of(reply)


async def stored(h: ScenarioHarness, user: str) -> object:
    return await h.server.storage.keyval("localhost", "vcard").get(user)


async def test_an_account_without_a_vcard_reads_an_empty_one(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, f"<iq type='get' id='v1'><vCard xmlns='{VCARD}'/></iq>")
    # §3.1 allows an empty <vCard/> or an error; we answer as ejabberd does.
    # RFC 6120 §8.1.2.1: an answer on the account's behalf to a request without 'to' has no
    # 'from' (or the bare JID); the router leaves it out.
    assert alice.take_xml() == expect(
        f"<iq type='result' id='v1' to='alice@localhost/phone'><vCard xmlns='{VCARD}'/></iq>")


@pytest.mark.parametrize("to", ["", " to='alice@localhost'"])
async def test_publish_then_read_ones_own_vcard(h: ScenarioHarness, to: str) -> None:
    alice = await h.online("alice", "phone")
    sender = " from='alice@localhost'" if to else ""
    await h.send(alice, f"<iq type='set' id='v1'{to}>{CARD}</iq>")
    assert alice.take_xml() == expect(f"<iq type='result' id='v1'{sender} to='alice@localhost/phone'/>")
    await h.send(alice, f"<iq type='get' id='v2'{to}><vCard xmlns='{VCARD}'/></iq>")
    assert alice.take_xml() == expect(f"<iq type='result' id='v2'{sender} to='alice@localhost/phone'>{CARD}</iq>")


async def test_a_new_vcard_replaces_the_whole_old_one(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await publish(h, alice)
    await publish(h, alice, f"<vCard xmlns='{VCARD}' version='3.0'><NICKNAME>al</NICKNAME></vCard>")
    await h.send(alice, f"<iq type='get' id='v2'><vCard xmlns='{VCARD}'/></iq>")
    assert alice.take_xml() == expect(
        f"<iq type='result' id='v2' to='alice@localhost/phone'>"
        f"<vCard xmlns='{VCARD}' version='3.0'><NICKNAME>al</NICKNAME></vCard></iq>")


async def test_anyone_reads_another_accounts_vcard_from_the_server(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await publish(h, alice)
    await h.disconnect(alice)   # offline: the server answers on the account's behalf (§3.3)
    bob = await h.online("bob", "pc")
    await h.send(bob, f"<iq type='get' id='v3' to='alice@localhost'><vCard xmlns='{VCARD}'/></iq>")
    assert bob.take_xml() == expect(
        f"<iq type='result' id='v3' from='alice@localhost' to='bob@localhost/pc'>{CARD}</iq>")


async def test_a_vcard_request_to_a_bare_jid_never_reaches_the_accounts_resources(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await publish(h, alice)
    bob = await h.online("bob", "pc")
    await h.send(bob, f"<iq type='get' id='v3' to='alice@localhost'><vCard xmlns='{VCARD}'/></iq>")
    assert bob.take_one().get("type") == "result"
    assert alice.take() == []


async def test_another_account_without_a_vcard_is_an_error(h: ScenarioHarness) -> None:
    bob = await h.online("bob", "pc")
    # §3.3: "If no vCard exists or the user does not exist, the server MUST return a stanza error".
    for to in ("alice@localhost", "nobody@localhost"):
        await h.send(bob, f"<iq type='get' id='v4' to='{to}'><vCard xmlns='{VCARD}'/></iq>")
        reply = bob.take_one()
        assert (reply.get("from"), error_of(reply)) == (to, ("cancel", "service-unavailable"))


async def test_setting_another_accounts_vcard_is_forbidden_and_changes_nothing(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await publish(h, alice)
    bob = await h.online("bob", "pc")
    await h.send(bob, f"<iq type='set' id='v5' to='alice@localhost'><vCard xmlns='{VCARD}'><FN>Mallory</FN></vCard></iq>")
    reply = bob.take_one()
    assert (reply.get("from"), error_of(reply)) == ("alice@localhost", ("auth", "forbidden"))
    assert await stored(h, "bob") is None      # not quietly stored as bob's own vCard either
    await h.send(bob, f"<iq type='get' id='v6' to='alice@localhost'><vCard xmlns='{VCARD}'/></iq>")
    assert bob.take_xml() == expect(
        f"<iq type='result' id='v6' from='alice@localhost' to='bob@localhost/pc'>{CARD}</iq>")


async def test_an_empty_vcard_removes_the_stored_one(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await publish(h, alice)
    await publish(h, alice, f"<vCard xmlns='{VCARD}'/>")
    assert await stored(h, "alice") is None
    bob = await h.online("bob", "pc")
    await h.send(bob, f"<iq type='get' id='v7' to='alice@localhost'><vCard xmlns='{VCARD}'/></iq>")
    assert error_of(bob.take_one()) == ("cancel", "service-unavailable")


async def test_an_oversized_vcard_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    async with ScenarioHarness.running(tmp_path, modules=MODULES, options={"vcard": {"max_size": 200}}) as h:
        await h.add_user("alice")
        alice = await h.online("alice", "phone")
        await publish(h, alice)
        before = await stored(h, "alice")
        big = f"<vCard xmlns='{VCARD}'><DESC>{'x' * 200}</DESC></vCard>"
        await h.send(alice, f"<iq type='set' id='big'>{big}</iq>")
        reply = alice.take_one()
        assert error_of(reply) == ("modify", "not-acceptable")
        assert await stored(h, "alice") == before


async def test_the_size_limit_counts_the_vcard_as_xml(tmp_path: Path) -> None:
    exactly = f"<vCard xmlns='{VCARD}'><DESC>{'é' * 40}</DESC></vCard>"   # 'é' is 2 bytes in UTF-8
    size = len(exactly.encode("utf-8"))
    for limit, outcome in ((size, None), (size - 1, ("modify", "not-acceptable"))):
        async with ScenarioHarness.running(tmp_path, modules=MODULES, options={"vcard": {"max_size": limit}}) as h:
            await h.add_user("alice")
            alice = await h.online("alice", "phone")
            await h.send(alice, f"<iq type='set' id='edge'>{exactly}</iq>")
            assert error_of(alice.take_one()) == outcome


async def test_the_default_limit_takes_a_vcard_with_a_photo_and_refuses_a_huge_one(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    photo = f"<vCard xmlns='{VCARD}'><PHOTO><TYPE>image/png</TYPE><BINVAL>{'A' * 40000}</BINVAL></PHOTO></vCard>"
    await publish(h, alice, photo)
    await h.send(alice, f"<iq type='set' id='huge'><vCard xmlns='{VCARD}'><DESC>{'x' * 70000}</DESC></vCard></iq>")
    assert error_of(alice.take_one()) == ("modify", "not-acceptable")
    await h.send(alice, f"<iq type='get' id='v8'><vCard xmlns='{VCARD}'/></iq>")
    assert alice.take_xml() == expect(f"<iq type='result' id='v8' to='alice@localhost/phone'>{photo}</iq>")


async def test_vcard_temp_is_advertised_for_the_server_and_for_accounts(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    for to in ("localhost", "alice@localhost"):
        await h.send(alice, f"<iq type='get' id='d' to='{to}'><query xmlns='{INFO}'/></iq>")
        query = alice.take_one().find("query", INFO)
        assert query is not None
        assert VCARD in [f.get("var") for f in query.findall("feature")]


async def test_a_zero_size_limit_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="modules.vcard"):
        async with ScenarioHarness.running(tmp_path, modules=MODULES, options={"vcard": {"max_size": 0}}):
            pass

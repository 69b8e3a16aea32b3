"""XEP-0199: XMPP Ping — the server answers pings to itself and to accounts' bare JIDs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.harness import ScenarioHarness, error_of, expect

PING = "<iq to='{to}' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[ScenarioHarness]:
    async with ScenarioHarness.running(tmp_path) as harness:
        await harness.add_user("alice")
        await harness.add_user("bob")
        yield harness


@pytest.mark.parametrize("to", ["localhost", "alice@localhost", "bob@localhost"])
async def test_a_ping_gets_an_empty_result(h: ScenarioHarness, to: str) -> None:
    # XEP-0199 §4.2 (server) and §4.3 via RFC 6121 §8.5.1.1 (an account's bare JID).
    alice = await h.online("alice", "phone")
    await h.send(alice, PING.format(to=to))
    assert alice.take_xml() == expect(f"<iq from='{to}' to='alice@localhost/phone' type='result' id='p1'/>")


async def test_a_ping_to_a_full_jid_goes_to_that_client(h: ScenarioHarness) -> None:
    # XEP-0199 §4.1: client-to-client pings are the client's to answer, not the server's.
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    await h.send(alice, PING.format(to="bob@localhost/pc"))
    assert bob.take_xml() == expect(
        "<iq from='alice@localhost/phone' to='bob@localhost/pc' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert alice.take() == []


async def test_a_ping_set_is_not_a_ping(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, PING.format(to="localhost").replace("type='get'", "type='set'"))
    assert error_of(alice.take_one()) == ("cancel", "not-allowed")  # a known service, not that request


async def test_without_the_module_a_ping_is_service_unavailable(tmp_path: Path) -> None:
    async with ScenarioHarness.running(tmp_path, modules=("disco",)) as h:
        await h.add_user("alice")
        alice = await h.connect("alice", "phone")
        await h.send(alice, PING.format(to="localhost"))
        assert error_of(alice.take_one()) == ("cancel", "service-unavailable")

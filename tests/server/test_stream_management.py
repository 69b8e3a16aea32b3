"""XEP-0198 §4 at run time: where the unacknowledged stanzas of an ended session go.

"A server SHOULD treat unacknowledged stanzas in the same way that it would treat a stanza sent
to an unavailable resource": :meth:`StreamManagementRuntime.reroute` routes them again once the
session is unbound, so RFC 6121 §8.5.3.2 decides — another resource, offline storage, or an error
to the sender.  Run against the real router and modules, with bob's session already gone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.harness import (
    DEFAULT_MODULES,
    FakeSession,
    ScenarioHarness,
    error_of,
    xml,
)

MODULES = (*DEFAULT_MODULES, "offline")


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[ScenarioHarness]:
    async with ScenarioHarness.running(tmp_path, modules=MODULES) as harness:
        await harness.add_user("alice")
        await harness.add_user("bob")
        yield harness


async def reroute(h: ScenarioHarness, *texts: str) -> None:
    await h.server.stream_management.reroute([xml(text) for text in texts], "test")


async def stored(h: ScenarioHarness) -> list[str]:
    items = await h.server.storage.archive(h.domain, "offline").query("bob", limit=100)
    return [str(item.value) for item in items]


async def online_alice(h: ScenarioHarness) -> FakeSession:
    return await h.online("alice", "desk")


async def test_a_chat_to_the_gone_resource_is_stored_offline(h: ScenarioHarness) -> None:
    alice = await online_alice(h)
    await reroute(h, "<message type='chat' from='alice@localhost/desk' to='bob@localhost/phone' id='c1'>"
                     "<body>hello</body></message>")
    assert len(await stored(h)) == 1 and "hello" in (await stored(h))[0]
    assert alice.take() == []


async def test_a_message_to_the_bare_jid_reaches_another_resource(h: ScenarioHarness) -> None:
    laptop = await h.online("bob", "laptop")
    await reroute(h, "<message type='chat' from='alice@localhost/desk' to='bob@localhost' id='c2'>"
                     "<body>hi</body></message>")
    (got,) = laptop.take()
    assert got.get("id") == "c2" and await stored(h) == []


async def test_a_normal_message_to_the_gone_resource_goes_back_with_an_error(h: ScenarioHarness) -> None:
    alice = await online_alice(h)
    await reroute(h, "<message from='alice@localhost/desk' to='bob@localhost/phone' id='n1'><body>x</body></message>")
    (bounce,) = alice.take()
    assert bounce.get("id") == "n1" and error_of(bounce) == ("cancel", "service-unavailable")  # RFC 6121 §8.5.3.2.1
    assert await stored(h) == []


async def test_an_iq_request_is_answered_with_an_error(h: ScenarioHarness) -> None:
    alice = await online_alice(h)
    await reroute(h, "<iq type='get' from='alice@localhost/desk' to='bob@localhost/phone' id='q1'>"
                     "<query xmlns='jabber:iq:version'/></iq>")
    (reply,) = alice.take()
    assert reply.get("id") == "q1" and error_of(reply) == ("cancel", "service-unavailable")  # §8.5.3.2.2


async def test_presence_results_errors_and_carbon_copies_are_dropped(h: ScenarioHarness) -> None:
    alice = await online_alice(h)
    laptop = await h.online("bob", "laptop")
    await reroute(
        h,
        "<presence from='alice@localhost/desk' to='bob@localhost'/>",
        "<iq type='result' from='alice@localhost/desk' to='bob@localhost/phone' id='r1'/>",
        "<message type='error' from='alice@localhost/desk' to='bob@localhost/phone' id='e1'/>",
        "<message type='chat' from='bob@localhost' to='bob@localhost/phone' id='cc1'>"
        "<received xmlns='urn:xmpp:carbons:2'/></message>",
        "<message type='chat' to='bob@localhost/phone' id='nofrom'><body>x</body></message>",
    )
    assert alice.take() == [] and laptop.take() == [] and await stored(h) == []

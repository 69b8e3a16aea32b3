"""RFC 6121 §8.5.2: messages to an account's bare JID, by type and resource priority."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.harness import FakeSession, ScenarioHarness, error_of
from xmppcore.jid import JID
from xmppcore.modules.message import deliverable
from xmppcore.stanza.model import MessageType


def sessions(*states: tuple[bool, int]) -> list[FakeSession]:
    made = []
    for i, (available, priority) in enumerate(states):
        session = FakeSession(f"s{i}")
        session.jid = JID.make("bob", "localhost", f"r{i}")
        session.available, session.priority = available, priority
        made.append(session)
    return made


@pytest.mark.parametrize(("kind", "states", "chosen"), [
    (MessageType.CHAT, [(True, 1), (True, 5), (True, 3)], [1]),
    (MessageType.NORMAL, [(True, 2), (True, 2), (True, 1)], [0, 1]),
    (MessageType.CHAT, [(True, -1), (True, 0)], [1]),
    (MessageType.CHAT, [(True, -1), (True, -2)], []),
    (MessageType.CHAT, [(False, 9), (True, 1)], [1]),      # not available: never
    (MessageType.NORMAL, [(False, 0), (False, 0)], []),
    (MessageType.HEADLINE, [(True, 9), (True, 0), (True, -1), (False, 5)], [0, 1]),
    (MessageType.CHAT, [], []),
])
def test_deliverable(kind: MessageType, states: list[tuple[bool, int]], chosen: list[int]) -> None:
    candidates = sessions(*states)
    assert deliverable(list(candidates), kind) == [candidates[i] for i in chosen]


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[ScenarioHarness]:
    async with ScenarioHarness.running(tmp_path) as harness:
        await harness.add_user("alice")
        await harness.add_user("bob")
        yield harness


async def test_priorities_change_with_presence(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    pc = await h.online("bob", "pc", priority=1)
    phone = await h.online("bob", "phone", priority=2)
    await h.send(alice, "<message to='bob@localhost' type='chat'><body>1</body></message>")
    assert (len(pc.take()), len(phone.take())) == (0, 1)
    await h.send(pc, "<presence><priority>10</priority></presence>")
    h.clear()
    await h.send(alice, "<message to='bob@localhost' type='chat'><body>2</body></message>")
    assert (len(pc.take()), len(phone.take())) == (1, 0)


async def test_an_error_to_a_bare_jid_is_never_bounced_or_delivered(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await h.online("bob", "pc")
    await h.send(alice, "<message to='bob@localhost' type='error'><error type='cancel'>"
                        "<gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
    assert h.quiet()


async def test_without_the_module_nothing_is_delivered_to_bare_jids(tmp_path: Path) -> None:
    # The router alone has no delivery policy for bare JIDs: RFC 6121 §8.5.2.2 applies.
    async with ScenarioHarness.running(tmp_path, modules=("presence",)) as h:
        await h.add_user("alice")
        await h.add_user("bob")
        alice = await h.online("alice", "phone")
        bob = await h.online("bob", "pc")
        await h.send(alice, "<message to='bob@localhost' type='chat'><body>hi</body></message>")
        assert error_of(alice.take_one()) == ("cancel", "service-unavailable")
        assert bob.take() == []

"""RFC 6120 §7: the session registry — binding, resource conflicts, limits."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.server.harness import FakeSession
from xmppcore.jid import JID
from xmppcore.server.sessions import SessionRegistry
from xmppcore.stanza.errors import Condition, StanzaError, StreamCondition

ALICE = JID.make("alice", "localhost")


def resources(*names: str) -> Callable[[], str]:
    """A resource factory that hands out ``names`` in turn (duplicates on purpose)."""
    it: Iterator[str] = iter(names)
    return lambda: next(it)


def registry(*names: str, max_resources: int = 100) -> SessionRegistry:
    return SessionRegistry(resource_factory=resources(*names), max_resources=max_resources)


def test_bind_gives_the_full_jid_and_makes_the_session_routable() -> None:
    reg = registry()
    phone = FakeSession("s1")
    jid = reg.bind(phone, "alice", "localhost", "phone")
    assert jid == JID.make("alice", "localhost", "phone") == phone.full_jid
    assert reg.get(jid) is phone
    assert reg.sessions_of(ALICE) == [phone]
    assert reg.is_online(ALICE) and len(reg) == 1


def test_unbind_forgets_the_session() -> None:
    reg = registry()
    phone, laptop = FakeSession("s1"), FakeSession("s2")
    reg.bind(phone, "alice", "localhost", "phone")
    reg.bind(laptop, "alice", "localhost", "laptop")
    assert reg.unbind(phone) is True
    assert reg.get(JID.make("alice", "localhost", "phone")) is None
    assert reg.sessions_of(ALICE) == [laptop]
    assert reg.unbind(laptop) is True
    assert not reg.is_online(ALICE) and len(reg) == 0
    assert reg.unbind(laptop) is False  # twice is harmless
    assert reg.unbind(FakeSession("never-bound")) is False


def test_a_resource_conflict_replaces_the_old_session() -> None:
    # RFC 6120 §7.7.2.2: the new session wins; the old one ends with <conflict/>.
    reg = registry()
    old, new = FakeSession("old"), FakeSession("new")
    jid = reg.bind(old, "alice", "localhost", "phone")
    assert reg.bind(new, "alice", "localhost", "phone") == jid
    assert [condition for condition, _ in old.closes] == [StreamCondition.CONFLICT]
    assert new.closes == []
    assert reg.get(jid) is new
    assert reg.sessions_of(ALICE) == [new]
    assert old.jid == jid  # kept for its goodbye (unavailable presence), but no longer routable
    # The old connection's teardown must not unbind its replacement.
    assert reg.unbind(old) is False
    assert reg.get(jid) is new and len(reg) == 1


def test_rebinding_the_same_session_is_not_a_conflict() -> None:
    reg = registry()
    phone = FakeSession("s1")
    reg.bind(phone, "alice", "localhost", "phone")
    reg.bind(phone, "alice", "localhost", "phone")
    assert phone.closes == [] and len(reg) == 1


def test_generated_resources_are_unique() -> None:
    # RFC 6120 §7.6.1: a server-generated resourcepart must be unique for the account.
    reg = registry("abc", "abc", "abc", "def")
    first, second = FakeSession("s1"), FakeSession("s2")
    assert reg.bind(first, "alice", "localhost", None).resource == "abc"
    assert reg.bind(second, "alice", "localhost", None).resource == "def"
    assert first.closes == [] and len(reg) == 2


def test_other_accounts_and_domains_are_separate() -> None:
    reg = registry()
    sessions = [FakeSession(f"s{i}") for i in range(3)]
    reg.bind(sessions[0], "alice", "localhost", "r")
    reg.bind(sessions[1], "bob", "localhost", "r")
    reg.bind(sessions[2], "alice", "example.org", "r")
    assert all(s.closes == [] for s in sessions)
    assert reg.sessions_of(ALICE) == [sessions[0]]
    assert reg.sessions_of(JID.make("alice", "example.org")) == [sessions[2]]


def test_too_many_resources_is_resource_constraint() -> None:
    reg = registry(max_resources=2)
    reg.bind(FakeSession("s1"), "alice", "localhost", "one")
    reg.bind(FakeSession("s2"), "alice", "localhost", "two")
    extra = FakeSession("s3")
    with pytest.raises(StanzaError) as caught:
        reg.bind(extra, "alice", "localhost", "three")
    assert caught.value.condition is Condition.RESOURCE_CONSTRAINT
    assert extra.jid is None and len(reg) == 2
    # Replacing a resource that is already bound does not need a new slot.
    again = FakeSession("s4")
    reg.bind(again, "alice", "localhost", "two")
    assert reg.get(JID.make("alice", "localhost", "two")) is again
    # Another account is not limited by alice's sessions.
    reg.bind(FakeSession("s5"), "bob", "localhost", "three")

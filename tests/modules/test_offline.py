"""XEP-0160 offline messages with XEP-0203 delay stamps, XML in and XML out against the real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.server.harness import (
    DEFAULT_MODULES,
    FakeSession,
    ScenarioHarness,
    error_of,
    expect,
    xml,
)
from xmppcore.config import ConfigError, config_from_mapping
from xmppcore.jid import JID
from xmppcore.modules.offline import (
    FEATURE,
    NS_DELAY,
    decode_stanza,
    delay_stamp,
    encode_stanza,
    resend_key,
    should_store,
    with_delay,
)
from xmppcore.server.app import Server
from xmppcore.server.module_api import ModuleContext
from xmppcore.server.modules import load_modules
from xmppcore.storage import (
    ArchiveItem,
    ArchiveStore,
    JSONValue,
    MemoryDriver,
    StorageError,
)
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_DISCO_INFO

MODULES = (*DEFAULT_MODULES, "offline")
T0 = 1031699305.0  # 2002-09-10T23:08:25Z, the moment of XEP-0160's example


# -- pure parts ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "stored"), [
    ("<message><body>hi</body></message>", True),                      # no type: normal
    ("<message type='normal'><subject>s</subject></message>", True),
    ("<message type='chat'><body>hi</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>", True),
    ("<message type='bogus'><body>hi</body></message>", True),         # unknown type reads as normal
    ("<message type='chat'><received xmlns='urn:xmpp:receipts' id='x'/></message>", True),
    ("<message type='headline'><body>news</body></message>", False),
    ("<message type='groupchat'><body>room</body></message>", False),
    ("<message type='error'><body>x</body></message>", False),
    ("<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>", False),
    ("<message type='chat'><thread>t1</thread><paused xmlns='http://jabber.org/protocol/chatstates'/></message>", False),
    ("<message type='chat'/>", False),
    ("<message type='chat'><body>secret</body><no-store xmlns='urn:xmpp:hints'/></message>", False),
    ("<message type='chat'><gone xmlns='http://jabber.org/protocol/chatstates'/><store xmlns='urn:xmpp:hints'/></message>", True),
    ("<message type='chat'><no-permanent-store xmlns='urn:xmpp:hints'/></message>", False),
    ("<message type='chat'><body>x</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>", True),
    ("<message type='headline'><body>x</body><store xmlns='urn:xmpp:hints'/></message>", False),
    # XEP-0085 §5.6: a standalone chat state is not stored, whatever describes it.
    (("<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/>"
     "<origin-id xmlns='urn:xmpp:sid:0' id='o1'/></message>"), False),
    (("<message type='chat'><paused xmlns='http://jabber.org/protocol/chatstates'/>"
     "<delay xmlns='urn:xmpp:delay' stamp='2002-09-10T23:08:25Z'/></message>"), False),
    (("<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/>"
     "<no-store xmlns='urn:xmpp:hints'/></message>"), False),
    # XEP-0184: a request travels with content; an ack is what its addressee waits for.
    ("<message type='chat' id='r1'><request xmlns='urn:xmpp:receipts'/></message>", False),
    (("<message type='chat' id='r1'><active xmlns='http://jabber.org/protocol/chatstates'/>"
     "<request xmlns='urn:xmpp:receipts'/></message>"), False),
    ("<message type='chat' id='r1'><body>hi</body><request xmlns='urn:xmpp:receipts'/></message>", True),
    ("<message id='a1'><received xmlns='urn:xmpp:receipts' id='r1'/><origin-id xmlns='urn:xmpp:sid:0' id='o2'/></message>", True),
    ("<message type='chat'><received xmlns='urn:xmpp:receipts' id='r1'/><no-store xmlns='urn:xmpp:hints'/></message>", False),
])
def test_should_store(text: str, stored: bool) -> None:
    assert should_store(xml(text)) is stored


@pytest.mark.parametrize(("text", "key"), [
    ("<message><body>b</body><origin-id xmlns='urn:xmpp:sid:0' id='abc'/></message>", "alice@localhost/abc"),
    ("<message><body>b</body><origin-id xmlns='urn:xmpp:sid:0' id='a/b@c'/></message>", "alice@localhost/a/b@c"),
    ("<message id='abc'><body>b</body></message>", None),  # the 'id' attribute may be reused: no key
    ("<message><body>b</body><origin-id xmlns='urn:xmpp:sid:0'/></message>", None),
    ("<message><body>b</body><origin-id xmlns='urn:xmpp:sid:0' id=''/></message>", None),
    (f"<message><body>b</body><origin-id xmlns='urn:xmpp:sid:0' id='{'x' * 257}'/></message>", None),
    ("<message><body>b</body><origin-id xmlns='urn:other' id='abc'/></message>", None),
])
def test_resend_key_is_the_bare_sender_and_the_origin_id(text: str, key: str | None) -> None:
    assert resend_key(xml(text), JID.parse("alice@localhost/phone")) == key


@pytest.mark.parametrize(("when", "stamp"), [
    (0.0, "1970-01-01T00:00:00.000Z"),
    (T0, "2002-09-10T23:08:25.000Z"),
    (T0 + 0.5, "2002-09-10T23:08:25.500Z"),
    (1700000000.123456, "2023-11-14T22:13:20.123Z"),
])
def test_delay_stamp_is_xep_0082_utc(when: float, stamp: str) -> None:
    assert delay_stamp(when) == stamp


def test_with_delay_adds_a_stamp_to_a_copy() -> None:
    original = xml("<message to='bob@localhost' id='m1'><body>hi</body></message>")
    delayed = with_delay(original, "localhost", T0)
    delay = delayed.find("delay", NS_DELAY)
    assert delay is not None and delay.attrs == {"from": "localhost", "stamp": "2002-09-10T23:08:25.000Z"}
    assert original.find("delay", NS_DELAY) is None  # the stored stanza itself is not changed


@pytest.mark.parametrize("text", [
    "<message from='alice@localhost/a' to='bob@localhost' id='1'><body>a &amp; b &lt; c \u00e9\U0001f600</body></message>",
    ("<message to='bob@localhost'><x xmlns='jabber:x:oob'><url>http://x/?a=1&amp;b=2</url></x>"
    "<html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'><p>p</p></body></html></message>"),
    "<message to='bob@localhost'><body xml:lang='de'>Hallo</body><body>  spaced\n  text </body></message>",
])
def test_stored_form_gives_the_same_stanza_back(text: str) -> None:
    stanza = xml(text)
    assert decode_stanza(encode_stanza(stanza)) == stanza


@pytest.mark.parametrize("value", [None, "x", {"xml": 3}, {"xml": "<message>"}, {"xml": "<a/><b/>"}, {"other": "<a/>"}])
def test_a_damaged_stored_value_decodes_to_none(value: JSONValue) -> None:
    assert decode_stanza(value) is None


# -- harness -------------------------------------------------------------------------------------
class SlowDriver(MemoryDriver):
    """Memory storage whose archive calls yield to the event loop first, as a real database's do;
    ``failing`` makes every archive call raise StorageError."""

    failing = False

    def archive(self, host: str, store: str) -> ArchiveStore:
        return _SlowArchive(self, super().archive(host, store))


class _SlowArchive:
    def __init__(self, driver: SlowDriver, inner: ArchiveStore) -> None:
        self._driver, self._inner = driver, inner

    async def _pause(self) -> None:
        await asyncio.sleep(0)  # a yield, not a wait: lets another task run, like real I/O
        if self._driver.failing:
            raise StorageError("the disk is on fire")

    async def append(self, user: str, value: JSONValue, *, when: float, with_jid: str = "") -> str:
        await self._pause()
        return await self._inner.append(user, value, when=when, with_jid=with_jid)

    async def query(self, user: str, **filters: Any) -> list[ArchiveItem]:
        await self._pause()
        return await self._inner.query(user, **filters)

    async def delete(self, user: str, ids: Sequence[str] | None = None) -> int:
        await self._pause()
        return await self._inner.delete(user, ids)

    async def count(self, user: str) -> int:
        await self._pause()
        return await self._inner.count(user)


@asynccontextmanager
async def running(tmp_path: Path, *, driver: MemoryDriver | None = None,
                  options: dict[str, Any] | None = None) -> AsyncIterator[ScenarioHarness]:
    """The ScenarioHarness with the offline module, on ``driver`` (memory storage by default)."""
    data = {
        "domains": ["localhost"], "data_dir": str(tmp_path), "storage": {"driver": "memory"},
        "auth": {"scram_iterations": 4096}, "s2s": {"enabled": False},
        "modules": {"enabled": list(MODULES), "offline": options or {}},
    }
    config = config_from_mapping(data, source="<test>", base_dir=tmp_path)
    server = Server(config, storage=driver or MemoryDriver())
    await server.open()
    for host in server.hosts.values():
        load_modules(server, host, config.modules.enabled, config.modules.options, source=config.source)
    try:
        harness = ScenarioHarness(server)
        await harness.add_user("alice")
        await harness.add_user("bob")
        yield harness
    finally:
        await server.stop()


@pytest.fixture
async def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ScenarioHarness]:
    monkeypatch.setattr(ModuleContext, "now", staticmethod(lambda: T0))
    async with running(tmp_path) as harness:
        yield harness


def stored(h: ScenarioHarness, user: str = "bob") -> Any:
    return h.server.storage.archive("localhost", "offline").count(user)


async def come_online(h: ScenarioHarness, resource: str, priority: int = 0, user: str = "bob") -> FakeSession:
    """Bind and send initial presence; what arrives besides presence stays in the inbox."""
    session = await h.connect(user, resource)
    await h.send(session, f"<presence><priority>{priority}</priority></presence>")
    session.inbox = [s for s in session.inbox if s.name != "presence"]
    return session


DELAY = f"<delay xmlns='{NS_DELAY}' from='localhost' stamp='2002-09-10T23:08:25.000Z'>Offline Storage</delay>"


# -- storing and delivering ----------------------------------------------------------------------
async def test_a_message_to_an_offline_account_is_delivered_with_a_delay_at_login(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    await h.send(alice, "<message to='bob@localhost' type='chat' id='m1'><body>call me</body></message>")
    assert alice.take() == []  # stored: no service-unavailable
    assert await stored(h) == 1
    bob = await come_online(h, "pc")
    assert bob.take_xml() == expect(
        f"<message from='alice@localhost/home' to='bob@localhost' type='chat' id='m1'><body>call me</body>{DELAY}</message>")
    assert await stored(h) == 0


async def test_stored_messages_arrive_in_the_order_they_were_sent(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    await h.send(alice, "<message to='bob@localhost' id='1'><body>one</body></message>")
    await h.send(alice, "<message to='bob@localhost/gone' type='chat' id='2'><body>two</body></message>")
    await h.send(alice, "<message to='bob@localhost' type='normal' id='3'><subject>three</subject></message>")
    bob = await come_online(h, "pc")
    assert bob.take_xml() == expect(
        f"<message from='alice@localhost/home' to='bob@localhost' id='1'><body>one</body>{DELAY}</message>",
        # RFC 6121 §8.5.3.2.1: a chat to a vanished resource is handled as if sent to the bare JID.
        f"<message from='alice@localhost/home' to='bob@localhost/gone' type='chat' id='2'><body>two</body>{DELAY}</message>",
        f"<message from='alice@localhost/home' to='bob@localhost' type='normal' id='3'><subject>three</subject>{DELAY}</message>",
    )


async def test_the_stamp_is_the_time_of_storage(h: ScenarioHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = await h.online("alice", "home")
    monkeypatch.setattr(ModuleContext, "now", staticmethod(lambda: 1700000000.25))
    await h.send(alice, "<message to='bob@localhost'><body>later</body></message>")
    monkeypatch.setattr(ModuleContext, "now", staticmethod(lambda: 1800000000.0))
    bob = await come_online(h, "pc")
    delay = bob.take_one().find("delay", NS_DELAY)
    assert delay is not None and delay.get("stamp") == "2023-11-14T22:13:20.250Z"


async def test_delivered_messages_are_gone(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    await h.send(alice, "<message to='bob@localhost'><body>once</body></message>")
    pc = await come_online(h, "pc")
    assert len(pc.take()) == 1
    await h.disconnect(pc)
    phone = await come_online(h, "phone")
    assert phone.take() == [] and await stored(h) == 0


async def test_a_queue_found_empty_is_read_again_once_a_message_is_stored(
        h: ScenarioHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    # A login that finds (or leaves) the queue empty lets the next logins skip the query, until
    # a message is stored for the account again.
    archive = h.server.storage.archive("localhost", "offline")
    queries: list[str] = []
    query = type(archive).query

    async def counted(self: Any, user: str, **filters: Any) -> Any:
        queries.append(user)
        return await query(self, user, **filters)

    monkeypatch.setattr(type(archive), "query", counted)
    pc = await come_online(h, "pc")
    assert pc.take() == [] and queries == ["bob"]
    await h.disconnect(pc)
    pc = await come_online(h, "pc")
    assert pc.take() == [] and queries == ["bob"]  # known empty: no query
    await h.disconnect(pc)
    alice = await h.online("alice", "home")
    await h.send(alice, "<message to='bob@localhost' id='m1'><body>while you were out</body></message>")
    pc = await come_online(h, "pc")
    assert [m.get("id") for m in pc.take()] == ["m1"]
    await h.disconnect(pc)
    pc = await come_online(h, "pc")
    assert pc.take() == [] and await stored(h) == 0


async def test_only_the_resource_that_logs_in_gets_them(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    await h.send(alice, "<message to='bob@localhost'><body>for one</body></message>")
    pc = await come_online(h, "pc")
    phone = await come_online(h, "phone")
    assert ([m.findtext("body") for m in pc.take() if m.name == "message"], phone.take()) == (["for one"], [])


async def test_available_recipient_gets_messages_directly(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    bob = await h.online("bob", "pc")
    await h.send(alice, "<message to='bob@localhost'><body>now</body></message>")
    assert bob.take_xml() == expect("<message from='alice@localhost/home' to='bob@localhost'><body>now</body></message>")
    assert await stored(h) == 0


async def test_a_bound_session_without_presence_does_not_get_bare_jid_messages(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    quiet = await h.connect("bob", "quiet")
    await h.send(alice, "<message to='bob@localhost'><body>wait</body></message>")
    assert quiet.take() == [] and await stored(h) == 1
    await h.send(quiet, "<presence/>")  # RFC 6121 §4.2: now it is available
    assert [m.findtext("body") for m in quiet.take() if m.name == "message"] == ["wait"]


async def test_negative_priority_login_does_not_take_them(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    await h.send(alice, "<message to='bob@localhost' id='n1'><body>kept</body></message>")
    shy = await come_online(h, "shy", priority=-1)
    assert shy.take() == [] and await stored(h) == 1
    # XEP-0160 §2: a resource with a negative priority is offline for bare-JID messages.
    await h.send(alice, "<message to='bob@localhost' id='n2'><body>also kept</body></message>")
    assert shy.take() == [] and alice.take() == [] and await stored(h) == 2
    pc = await come_online(h, "pc", priority=0)
    assert [m.get("id") for m in pc.take()] == ["n1", "n2"]


# -- what is not stored ------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "error"), [
    ("<message to='bob@localhost' type='headline' id='x'><body>news</body></message>", None),
    (("<message to='bob@localhost' type='error' id='x'><error type='cancel'>"
     "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"), None),
    ("<message to='bob@localhost' type='groupchat' id='x'><body>room</body></message>", ("cancel", "service-unavailable")),
    ("<message to='bob@localhost' type='chat' id='x'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
     ("cancel", "service-unavailable")),
    ("<message to='bob@localhost' type='chat' id='x'><body>b</body><no-store xmlns='urn:xmpp:hints'/></message>",
     ("cancel", "service-unavailable")),
    ("<message to='bob@localhost/gone' type='normal' id='x'><body>for that device</body></message>",
     ("cancel", "service-unavailable")),  # RFC 6121 §8.5.3.2.1: normal to a full JID is not redirected
])
async def test_messages_that_are_not_stored(h: ScenarioHarness, text: str, error: tuple[str, str] | None) -> None:
    alice = await h.online("alice", "home")
    await h.send(alice, text)
    replies = alice.take()
    assert [error_of(reply) for reply in replies] == ([] if error is None else [error])
    assert await stored(h) == 0
    bob = await come_online(h, "pc")
    assert bob.take() == []


async def test_the_limit_refuses_further_messages(tmp_path: Path) -> None:
    async with running(tmp_path, options={"max_messages": 3}) as h:
        alice = await h.online("alice", "home")
        for n in range(1, 5):
            await h.send(alice, f"<message to='bob@localhost' id='{n}'><body>{n}</body></message>")
        reply = alice.take_one()
        assert (reply.get("id"), reply.get("from"), error_of(reply)) == ("4", "bob@localhost", ("cancel", "service-unavailable"))
        assert await stored(h) == 3
        bob = await come_online(h, "pc")
        assert [m.findtext("body") for m in bob.take()] == ["1", "2", "3"]
        # Delivered messages no longer count: the queue takes new ones again.
        await h.disconnect(bob)
        await h.send(alice, "<message to='bob@localhost' id='5'><body>5</body></message>")
        assert alice.take() == [] and await stored(h) == 1


async def test_each_account_has_its_own_limit(tmp_path: Path) -> None:
    async with running(tmp_path, options={"max_messages": 1}) as h:
        await h.add_user("carol")
        alice = await h.online("alice", "home")
        await h.send(alice, "<message to='bob@localhost'><body>b</body></message>")
        await h.send(alice, "<message to='carol@localhost'><body>c</body></message>")
        assert alice.take() == [] and (await stored(h, "bob"), await stored(h, "carol")) == (1, 1)


@pytest.mark.parametrize("value", [0, -1, 100_001])
async def test_max_messages_must_be_sensible(tmp_path: Path, value: int) -> None:
    with pytest.raises(ConfigError, match="max_messages"):
        async with running(tmp_path, options={"max_messages": value}):
            pass


async def test_unknown_accounts_get_no_storage(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    await h.send(alice, "<message to='nobody@localhost' id='u'><body>hello?</body></message>")
    assert error_of(alice.take_one()) == ("cancel", "service-unavailable")
    assert await stored(h, "nobody") == 0


async def test_a_storage_failure_refuses_the_message(tmp_path: Path) -> None:
    driver = SlowDriver()
    async with running(tmp_path, driver=driver) as h:
        alice = await h.online("alice", "home")
        driver.failing = True
        await h.send(alice, "<message to='bob@localhost' id='f'><body>lost?</body></message>")
        assert error_of(alice.take_one()) == ("cancel", "service-unavailable")  # the sender knows


async def test_msgoffline_is_advertised(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    await h.send(alice, f"<iq type='get' id='d1' to='localhost'><query xmlns='{NS_DISCO_INFO}'/></iq>")
    query = alice.take_one().find("query", NS_DISCO_INFO)
    assert query is not None
    assert FEATURE in [f.get("var") for f in query.findall("feature")]


# -- delivery and concurrency --------------------------------------------------------------------------
class LeavingSession(FakeSession):
    """A client that drops its connection after receiving ``keep`` stanzas."""

    def __init__(self, h: ScenarioHarness, keep: int) -> None:
        super().__init__("leaving")
        self._h, self._keep = h, keep

    def deliver(self, stanza: Element) -> None:
        super().deliver(stanza)
        if len([s for s in self.inbox if s.name == "message"]) == self._keep:
            self._h.server.sessions.unbind(self)


async def test_messages_stay_stored_when_the_session_leaves_during_delivery(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    for n in range(1, 5):
        await h.send(alice, f"<message to='bob@localhost' id='{n}'><body>{n}</body></message>")
    leaving = LeavingSession(h, keep=2)
    h.server.sessions.bind(leaving, "bob", "localhost", "flaky")
    await h.send(leaving, "<presence/>")
    assert [m.get("id") for m in leaving.inbox if m.name == "message"] == ["1", "2"]
    assert await stored(h) == 2
    pc = await come_online(h, "pc")
    assert [m.get("id") for m in pc.take()] == ["3", "4"]


async def test_more_than_a_batch_is_delivered(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    for n in range(100):
        await h.send(alice, f"<message to='bob@localhost' id='{n}'><body>{n}</body></message>")
    assert alice.take() == []
    bob = await come_online(h, "pc")
    assert [m.get("id") for m in bob.take()] == [str(n) for n in range(100)]


async def test_a_live_message_waits_for_the_stored_ones(tmp_path: Path) -> None:
    async with running(tmp_path, driver=SlowDriver()) as h:
        alice = await h.online("alice", "home")
        await h.send(alice, "<message to='bob@localhost' id='old'><body>old</body></message>")
        bob = await h.connect("bob", "pc")
        # Bob's initial presence and Alice's next message are routed at the same time.
        await asyncio.gather(
            h.send(bob, "<presence/>"),
            h.send(alice, "<message to='bob@localhost' id='new'><body>new</body></message>"),
        )
        messages = [m for m in bob.take() if m.name == "message"]
        assert [(m.get("id"), m.find("delay", NS_DELAY) is not None) for m in messages] == [("old", True), ("new", False)]
        assert await stored(h) == 0


async def test_a_message_stored_while_the_recipient_logs_in_is_delivered(tmp_path: Path) -> None:
    async with running(tmp_path, driver=SlowDriver()) as h:
        alice = await h.online("alice", "home")
        await h.send(alice, "<message to='bob@localhost' id='old'><body>old</body></message>")
        bob = await h.connect("bob", "pc")
        # Alice's message is being stored when Bob becomes available: it must not be left behind.
        await asyncio.gather(
            h.send(alice, "<message to='bob@localhost' id='racing'><body>racing</body></message>"),
            h.send(bob, "<presence/>"),
        )
        assert [m.get("id") for m in bob.take() if m.name == "message"] == ["old", "racing"]
        assert await stored(h) == 0 and alice.take() == []


async def test_a_message_is_not_stored_for_a_resource_that_became_reachable_meanwhile(tmp_path: Path) -> None:
    async with running(tmp_path, driver=SlowDriver()) as h:
        await h.add_user("carol")
        alice = await h.online("alice", "home")
        carol = await h.online("carol", "home")
        shy = await come_online(h, "shy", priority=-1)
        # Carol's message is being stored while Alice's waits its turn; meanwhile the only
        # resource raises its priority, so Alice's message can be delivered after all.
        await asyncio.gather(
            h.send(carol, "<message to='bob@localhost' id='c'><body>from carol</body></message>"),
            h.send(alice, "<message to='bob@localhost' id='a'><body>from alice</body></message>"),
            h.send(shy, "<presence><priority>5</priority></presence>"),
        )
        assert [m.get("id") for m in shy.take() if m.name == "message"] == ["a"]
        assert await stored(h) == 1  # carol's, stored before the change: it waits for a login


async def test_two_resources_logging_in_at_once_get_each_message_once(tmp_path: Path) -> None:
    async with running(tmp_path, driver=SlowDriver()) as h:
        alice = await h.online("alice", "home")
        for n in range(3):
            await h.send(alice, f"<message to='bob@localhost' id='{n}'><body>{n}</body></message>")
        pc, phone = await h.connect("bob", "pc"), await h.connect("bob", "phone")
        await asyncio.gather(h.send(pc, "<presence/>"), h.send(phone, "<presence/>"))
        got = [m.attrs.get("id", "") for s in (pc, phone) for m in s.take() if m.name == "message"]
        assert sorted(got) == ["0", "1", "2"] and await stored(h) == 0


async def test_unloading_leaves_stored_messages(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    await h.send(alice, "<message to='bob@localhost'><body>still here</body></message>")
    h.host().modules["offline"].unload()
    await h.send(alice, "<message to='bob@localhost' id='after'><body>refused</body></message>")
    assert error_of(alice.take_one()) == ("cancel", "service-unavailable")
    assert await stored(h) == 1


# -- chat states and receipts (XEP-0085, XEP-0184) -------------------------------------------------
CHATSTATES = "http://jabber.org/protocol/chatstates"
RECEIPTS = "urn:xmpp:receipts"


async def test_chat_states_and_receipts_pass_through_to_an_available_recipient(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    bob = await h.online("bob", "pc")
    sent = [
        f"<message to='bob@localhost' type='chat' id='c1'><composing xmlns='{CHATSTATES}'/></message>",
        (f"<message to='bob@localhost' type='chat' id='c2'><body>hi</body><active xmlns='{CHATSTATES}'/>"
        f"<request xmlns='{RECEIPTS}'/></message>"),
        f"<message to='bob@localhost/pc' type='chat' id='c3'><received xmlns='{RECEIPTS}' id='x'/></message>",
    ]
    for text in sent:
        await h.send(alice, text)
    assert bob.take_xml() == expect(*(text.replace("<message ", "<message from='alice@localhost/home' ", 1)
                                      for text in sent))
    assert alice.take() == [] and await stored(h) == 0


async def test_a_standalone_chat_state_is_not_kept_for_later(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    for state in ("composing", "paused", "gone"):
        await h.send(alice, f"<message to='bob@localhost' type='chat'><{state} xmlns='{CHATSTATES}'/>"
                            "<origin-id xmlns='urn:xmpp:sid:0' id='o'/></message>")
    assert await stored(h) == 0
    bob = await come_online(h, "pc")
    assert bob.take() == []


async def test_a_receipt_request_is_stored_with_its_message_and_the_ack_waits_for_the_sender(
    h: ScenarioHarness,
) -> None:
    alice = await h.online("alice", "home")
    await h.send(alice, f"<message to='bob@localhost' type='chat' id='r1'><body>read me</body>"
                        f"<request xmlns='{RECEIPTS}'/></message>")
    await h.disconnect(alice)
    # XEP-0184 §5.5: bob acks when he first receives it, from offline storage; alice is away now.
    bob = await come_online(h, "pc")
    assert bob.take_one().find("request", RECEIPTS) is not None
    await h.send(bob, f"<message to='alice@localhost/home' type='chat' id='a1'><received xmlns='{RECEIPTS}' id='r1'/></message>")
    assert bob.take() == [] and await stored(h, "alice") == 1
    alice = await come_online(h, "phone", user="alice")
    assert alice.take_xml() == expect(
        f"<message from='bob@localhost/pc' to='alice@localhost/home' type='chat' id='a1'>"
        f"<received xmlns='{RECEIPTS}' id='r1'/>{DELAY}</message>")


# -- resent messages (XEP-0198 + XEP-0359) ----------------------------------------------------------------
def resent(ident: str, origin: str | None, body: str = "once") -> str:
    origin_id = "" if origin is None else f"<origin-id xmlns='urn:xmpp:sid:0' id='{origin}'/>"
    return f"<message to='bob@localhost' type='chat' id='{ident}'><body>{body}</body>{origin_id}</message>"


async def test_a_resent_message_with_an_origin_id_is_stored_once(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    await h.send(alice, resent("m1", "o-1"))
    # The stream broke before the ack; a new session of alice sends it again.
    await h.disconnect(alice)
    again = await h.online("alice", "other")
    await h.send(again, resent("m1", "o-1"))
    await h.send(again, resent("m2", "o-2", "twice"))
    assert again.take() == []  # taken as stored: the sender is not refused
    assert await stored(h) == 2
    bob = await come_online(h, "pc")
    assert [(m.get("id"), m.get("from")) for m in bob.take()] == [("m1", "alice@localhost/home"), ("m2", "alice@localhost/other")]


async def test_only_the_same_sender_and_origin_id_count_as_a_resend(h: ScenarioHarness) -> None:
    await h.add_user("carol")
    alice, carol = await h.online("alice", "home"), await h.online("carol", "home")
    await h.send(alice, resent("a", "shared"))
    await h.send(carol, resent("c", "shared"))      # another sender's origin-id is another message
    await h.send(alice, resent("n1", None))
    await h.send(alice, resent("n1", None))         # no origin-id: an 'id' alone may be reused
    await h.send(alice, resent("o", "other"))
    assert await stored(h) == 5
    bob = await come_online(h, "pc")
    assert [m.get("id") for m in bob.take()] == ["a", "c", "n1", "n1", "o"]


async def test_a_resend_after_delivery_is_a_new_message(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    await h.send(alice, resent("m1", "o-1"))
    bob = await come_online(h, "pc")
    assert len(bob.take()) == 1
    await h.disconnect(bob)
    await h.send(alice, resent("m1", "o-1"))  # the queue no longer holds it
    assert await stored(h) == 1


# -- damage -----------------------------------------------------------------------------------------
async def test_a_damaged_stored_message_costs_only_itself(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    await h.send(alice, "<message to='bob@localhost' id='before'><body>1</body></message>")
    archive = h.server.storage.archive("localhost", "offline")
    await archive.append("bob", {"xml": "<message to='bob@localhost'><body>torn in the midd"}, when=T0)
    await h.send(alice, "<message to='bob@localhost' id='after'><body>2</body></message>")
    bob = await come_online(h, "pc")
    assert [m.get("id") for m in bob.take()] == ["before", "after"]
    assert await stored(h) == 0

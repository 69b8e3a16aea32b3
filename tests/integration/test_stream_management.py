"""XEP-0198 Stream Management end to end: real slixmpp and aioxmpp clients lose their connection.

Each client reaches the server through :class:`Relay`, a loopback TCP relay that a test can cut
like a dropped mobile link: both TCP connections are reset and nobody sends a closing tag.
Before cutting, a test may *stall* the relay: what the server writes to the client is swallowed,
as when a link dies with data in flight, so the server believes it sent stanzas the client never
got.  The client then resumes (XEP-0198 §5) and every message sent to it — before the gap, lost
in flight, sent while it was away, after — must arrive exactly once; so must the messages it
sent around the cut.  When the session is not resumed in time, or its stream is closed cleanly
with messages unacknowledged, those messages are in offline storage and arrive at the next login
with an XEP-0203 delay.

Nothing sleeps: a test waits for a client's own events (stream management enabled, resumed), for
a message, or for the unavailable presence another resource of the account hears when a session
ends, which the server sends only after the session's unacknowledged messages were placed.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from slixmpp import JID

from xmppcore.jid import JID as CoreJID
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT, NS_STANZA_ERRORS

from .clients import TIMEOUT, AioClient, Endpoint, SlixClient, SlixPool
from .conftest import PASSWORD, RunningServer, make_config, start_server
from .rawclient import RawClient

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(30),
    pytest.mark.filterwarnings("ignore:as of aioxmpp 1.0, PresenceType:DeprecationWarning"),
]

NS_SM = "urn:xmpp:sm:3"
Start = Callable[..., Awaitable[tuple[RunningServer, "Relay"]]]


class Relay:
    """A TCP relay on 127.0.0.1 in front of the server's STARTTLS port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._server: asyncio.Server | None = None
        self._live: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.stalled = False
        self.port = 0

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def endpoint(self, server: RunningServer) -> Endpoint:
        return Endpoint("127.0.0.1", self.port, False, server.cafile)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self._target)
        self._live += [client_writer, server_writer]
        for reader, writer, downstream in ((client_reader, server_writer, False), (server_reader, client_writer, True)):
            task = asyncio.ensure_future(self._pipe(reader, writer, downstream))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, downstream: bool) -> None:
        try:
            while data := await reader.read(65536):
                if downstream and self.stalled:
                    continue  # lost in flight
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        writer.transport.abort()

    def cut(self) -> None:
        """Reset every connection through the relay, both ways, with no closing tag."""
        live, self._live = self._live, []
        for writer in live:
            writer.transport.abort()
        self.stalled = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[Start]:
    """Start the server (with extra ``c2s`` options) behind a relay, with alice and bob; both stop at the end."""
    started: list[tuple[RunningServer, Relay]] = []

    async def start(**c2s: object) -> tuple[RunningServer, Relay]:
        running = await start_server(make_config(tmp_path, **c2s))
        relay = await Relay((running.host, running.starttls_port)).start()
        started.append((running, relay))
        for user in ("alice", "bob"):
            await running.add_user(user)
        return running, relay

    yield start
    for running, relay in started:
        await relay.close()
        await running.server.stop()


class SmSlix:
    """A slixmpp client with XEP-0198, telling when stream management starts and resumes."""

    def __init__(self, pool: SlixPool, user: str, resource: str, endpoint: Endpoint) -> None:
        self.client: SlixClient = pool.make(user, resource, endpoint=endpoint,
                                            plugins=("xep_0198", "xep_0199", "xep_0203"))
        self.xmpp = self.client.xmpp
        self.enabled = asyncio.Event()
        self.resumed = asyncio.Event()
        self.started = asyncio.Event()
        self.xmpp.add_event_handler("sm_enabled", lambda _: self.enabled.set())
        self.xmpp.add_event_handler("session_resumed", lambda _: self.resumed.set())
        self.xmpp.add_event_handler("session_start", lambda _: self.started.set())

    async def connect(self) -> SmSlix:
        await self.client.connect()
        await asyncio.wait_for(self.enabled.wait(), TIMEOUT)
        assert self.sm_id, "the server granted no resumption"
        return self

    @property
    def sm_id(self) -> str | None:
        sm_id = self.xmpp.plugin["xep_0198"].sm_id
        return str(sm_id) if sm_id else None

    async def reconnect(self, endpoint: Endpoint) -> None:
        """After the link dropped: connect again; slixmpp resumes or, failing that, binds anew."""
        await asyncio.wait_for(self.client.closed.wait(), TIMEOUT)
        self.client.closed.clear()
        self.resumed.clear()
        self.started.clear()
        self.enabled.clear()
        self.xmpp.connect(endpoint.host, endpoint.port)


async def ping(client: SlixClient) -> None:
    """A round trip to the server: what the client sent before it has been routed (RFC 6120 §10.1)."""
    await client.xmpp.plugin["xep_0199"].ping(JID(client.xmpp.boundjid.domain), timeout=TIMEOUT)


def slix_bodies(client: SlixClient) -> collections.Counter[str]:
    return collections.Counter(str(m["body"]) for m in client.messages.pending)


def counted(*groups: list[str]) -> collections.Counter[str]:
    return collections.Counter(body for group in groups for body in group)


def series(name: str, count: int = 3) -> list[str]:
    return [f"{name} {n}" for n in range(1, count + 1)]


async def stored_for(server: RunningServer, user: str) -> int:
    return await server.server.storage.archive(server.domain, "offline").count(user)


async def ended(watcher: SlixClient, full_jid: str) -> None:
    """``watcher`` (another resource of the account) hears ``full_jid`` go unavailable: the
    session has ended and its unacknowledged messages were placed before that presence went out."""
    await watcher.presences.get(lambda p: str(p["from"]) == full_jid and p["type"] == "unavailable")


# -- resumption: every message exactly once ---------------------------------------------------------
async def test_slixmpp_resumes_and_every_message_arrives_exactly_once(servers: Start) -> None:
    running, relay = await servers()
    async with SlixPool(running) as pool:
        alice = await pool.login("alice", "desk", plugins=("xep_0199",))
        bob = await SmSlix(pool, "bob", "phone", relay.endpoint(running)).connect()
        await bob.client.announce()
        for body in series("before"):
            alice.send_message(bob.client.jid, body)
            bob.client.send_message(alice.jid, body.replace("before", "from bob"))
        await bob.client.receive("before 3")
        await alice.receive("from bob 3")

        relay.stalled = True  # the link dies with these in flight: the server wrote them, bob never read them
        for body in series("lost"):
            alice.send_message(bob.client.jid, body)
        bob.client.send_message(alice.jid, "from bob in flight")  # may or may not reach the server
        await ping(alice)
        relay.cut()
        for body in series("during"):
            alice.send_message(bob.client.jid, body)
        await ping(alice)

        await bob.reconnect(relay.endpoint(running))
        await asyncio.wait_for(bob.resumed.wait(), TIMEOUT)
        alice.send_message(bob.client.jid, "after")
        bob.client.send_message(alice.jid, "from bob after")
        await bob.client.receive("after")
        await alice.receive("from bob after")
        await ping(bob.client)
        await ping(alice)

        assert not bob.started.is_set()  # the same session, not a new one
        assert slix_bodies(bob.client) == counted(series("before")[:2], series("lost"), series("during"))
        assert slix_bodies(alice) == counted(series("from bob")[:2], ["from bob in flight"])
        assert running.server.sessions.get(CoreJID.parse(bob.client.jid)) is not None


async def test_aioxmpp_resumes_and_every_message_arrives_exactly_once(servers: Start) -> None:
    running, relay = await servers()
    async with SlixPool(running) as pool:
        alice = await pool.login("alice", "desk", plugins=("xep_0199",))
        bob = AioClient("bob@localhost/tablet", PASSWORD, relay.endpoint(running))
        bob.client.backoff_start = datetime.timedelta(seconds=0.05)  # reconnect at once after the cut
        resumed = asyncio.Event()
        bob.client.on_stream_resumed.connect(resumed.set)
        await bob.connect()
        try:
            assert bob.client.stream.sm_enabled and bob.client.stream.sm_resumable
            await bob.announce()
            for body in series("before"):
                alice.send_message(bob.jid, body)
                await bob.send_message(alice.jid, body.replace("before", "from bob"))
            await bob.receive("before 3")
            await alice.receive("from bob 3")

            relay.stalled = True
            for body in series("lost"):
                alice.send_message(bob.jid, body)
            await ping(alice)
            relay.cut()
            for body in series("during"):
                alice.send_message(bob.jid, body)
            await ping(alice)

            await asyncio.wait_for(resumed.wait(), TIMEOUT)  # aioxmpp reconnects and resumes by itself
            alice.send_message(bob.jid, "after")
            await bob.send_message(alice.jid, "from bob after")
            await bob.receive("after")
            await alice.receive("from bob after")
            await ping(alice)

            got = collections.Counter(m.body.any() for m in bob.messages.pending)
            assert got == counted(series("before")[:2], series("lost"), series("during"))
            assert slix_bodies(alice) == counted(series("from bob")[:2])
        finally:
            await bob.stop()


# -- no resumption: the messages go to offline storage ----------------------------------------------
async def test_after_the_timeout_resumption_fails_and_the_messages_are_offline(servers: Start) -> None:
    running, relay = await servers(sm_resume_timeout=1)
    async with SlixPool(running) as pool:
        alice = await pool.login("alice", "desk", plugins=("xep_0199",))
        desk = await pool.login("bob", "desk")  # never takes messages (negative priority), hears presence
        await desk.announce(priority=-1)
        bob = await SmSlix(pool, "bob", "phone", relay.endpoint(running)).connect()
        await bob.client.announce()
        previd = bob.sm_id
        relay.cut()
        for body in series("while away"):
            alice.send_message("bob@localhost", body)  # to bob/phone, still available, detached
        await ping(alice)
        await ended(desk, bob.client.jid)  # after the 1 s resumption time
        assert await stored_for(running, "bob") == 3

        # XEP-0198 §5: the session is gone; the server says so, with the count it ended with.
        raw = await RawClient.connect(running.host, running.starttls_port)
        await raw.open_stream()
        await raw.starttls(running.cafile)
        assert (await raw.authenticate("bob", PASSWORD)).name == "success"
        await raw.open_stream()
        await raw.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='0'/>")
        failed = await raw.next_element()
        assert failed.name == "failed" and failed.find("item-not-found", NS_STANZA_ERRORS) is not None
        assert int(failed.attrs["h"]) >= 1  # bob's initial presence, at least
        raw.close()

        await bob.reconnect(relay.endpoint(running))
        await asyncio.wait_for(bob.started.wait(), TIMEOUT)  # a new session after <failed/>
        assert not bob.resumed.is_set()
        bob.xmpp.send_presence()
        for body in series("while away"):
            message = await bob.client.receive(body)
            assert str(message["delay"]["from"]) == "localhost"  # XEP-0203, from offline storage
        await ping(bob.client)
        assert slix_bodies(bob.client) == collections.Counter()  # each taken once, none left over
        assert await stored_for(running, "bob") == 0


async def test_a_clean_close_puts_unacknowledged_messages_offline(servers: Start) -> None:
    running, _ = await servers()
    async with SlixPool(running) as pool:
        alice = await pool.login("alice", "desk", plugins=("xep_0199",))
        desk = await pool.login("bob", "desk")
        await desk.announce(priority=-1)
        bob = await RawClient.login(running.host, running.starttls_port, running.cafile, "bob", PASSWORD, "raw")
        await bob.send("<presence/>")
        await bob.wait_for(lambda e: e.name == "presence" and e.get("from") == str(bob.jid))
        await bob.send(f"<enable xmlns='{NS_SM}'/>")
        await bob.wait_for(lambda e: e.name == "enabled")
        for body in series("unread"):
            alice.send_message("bob@localhost", body)
        for body in series("unread"):
            await bob.wait_for(lambda e: e.name == "message" and e.findtext("body") == body)  # noqa: B023
        await bob.send(f"<a xmlns='{NS_SM}' h='1'/>")  # only the first one is handled
        await bob.send("</stream:stream>")  # XEP-0198 §7: a clean close ends the session at once
        await bob.expect_closed()
        await ended(desk, str(bob.jid))
        assert await stored_for(running, "bob") == 2

        laptop = await pool.login("bob", "laptop", plugins=("xep_0203",))
        laptop.xmpp.send_presence()
        for body in series("unread")[1:]:
            message = await laptop.receive(body)
            assert str(message["delay"]["from"]) == "localhost"
        await laptop.announce()  # the echo comes after the stored messages
        assert slix_bodies(laptop) == collections.Counter()  # "unread 1" was acknowledged: not again


# -- who may resume --------------------------------------------------------------------------------------
async def raw_login(running: RunningServer, user: str) -> RawClient:
    """Authenticated, not bound: where ``<resume/>`` is sent."""
    raw = await RawClient.connect(running.host, running.starttls_port)
    await raw.open_stream()
    await raw.starttls(running.cafile)
    assert (await raw.authenticate(user, PASSWORD)).name == "success"
    await raw.open_stream()
    return raw


async def test_only_the_same_account_can_resume_a_session(servers: Start) -> None:
    running, _ = await servers()
    bob = await RawClient.login(running.host, running.starttls_port, running.cafile, "bob", PASSWORD, "phone")
    await bob.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
    enabled = await bob.wait_for(lambda e: e.name == "enabled")
    previd = enabled.attrs["id"]
    bob.close()  # dropped: the session waits to be resumed

    alice = await raw_login(running, "alice")
    await alice.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='0'/>")
    failed = await alice.next_element()
    assert failed.name == "failed" and failed.find("item-not-found", NS_STANZA_ERRORS) is not None
    assert "h" not in failed.attrs  # nothing about somebody else's session
    alice.close()

    again = await raw_login(running, "bob")
    await again.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='0'/>")
    resumed = await again.next_element()
    assert (resumed.name, resumed.attrs["previd"]) == ("resumed", previd)
    await again.send_element(Element("iq", NS_CLIENT, {"type": "get", "id": "p"},
                                     [Element("ping", "urn:xmpp:ping")]))
    pong = await again.wait_for(lambda e: e.name == "iq")
    assert (pong.get("type"), pong.get("to")) == ("result", "bob@localhost/phone")  # the same full JID
    again.close()

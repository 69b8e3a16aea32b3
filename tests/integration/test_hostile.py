"""RFC 6120 §4.9, §6.4, §8.3, §11 and §13: hostile input against the real server.

Each attack runs against a server that already has a victim conversation going (alice and bob,
logged in before the attack).  Every scenario asserts the exact stream error (RFC 6120 §4.9.3)
or stanza/SASL error (§8.3.3, §6.5) the server sends, that the server then closes the
stream and the connection, and that afterwards the victims still exchange messages (and
receive nothing the attacker sent) and a fresh client can still log in.

The attacks that send more than the server will read (the 10 MiB stanza, the 20,000-deep one)
go out in chunks as fast as the event loop allows, and stop as soon as the server answers: the
server runs in this process, so each chunk gives it a turn to read, and not writing past its
stream error keeps the test from racing the server's close (a peer that keeps writing into a
closed socket gets a reset, which may discard what was sent before it).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import secrets
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from xmppcore.jid import JID, InvalidJID
from xmppcore.stanza.errors import SaslCondition, StreamCondition
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT, NS_SERVER, NS_STANZA_ERRORS, NS_STREAMS

from .conftest import PASSWORD, RunningServer, make_config, start_server
from .rawclient import RawClient, sasl_failure_condition, stream_error_condition, stream_header_bytes

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


# -- the cast ----------------------------------------------------------------------------------
@dataclass
class Cast:
    """The server, the victims logged in before the attack, and every client to clean up."""

    server: RunningServer
    alice: RawClient
    bob: RawClient
    clients: list[RawClient] = field(default_factory=list)

    async def login(self, username: str, resource: str | None = None) -> RawClient:
        s = self.server
        client = await RawClient.login(s.host, s.starttls_port, s.cafile, username, PASSWORD, resource)
        self.clients.append(client)
        return client

    async def connect(self) -> RawClient:
        client = await RawClient.connect(self.server.host, self.server.starttls_port)
        self.clients.append(client)
        return client

    async def connect_tls(self) -> RawClient:
        """A client past STARTTLS, about to authenticate."""
        client = await self.connect()
        await client.open_stream()
        await client.starttls(self.server.cafile)
        return client

    async def assert_unharmed(self) -> None:
        """The victims still talk both ways, and a new client can still log in."""
        await _exchange(self.alice, self.bob)
        await _exchange(self.bob, self.alice)
        fresh = await self.login("carol")
        assert fresh.jid is not None and fresh.jid.local == "carol"
        fresh.close()

    def close_all(self) -> None:
        for client in [self.alice, self.bob, *self.clients]:
            client.close()


async def _exchange(sender: RawClient, recipient: RawClient) -> None:
    """``sender`` messages ``recipient``; the next message ``recipient`` gets must be that one."""
    assert sender.jid is not None and recipient.jid is not None
    body = f"still here {secrets.token_hex(4)}"
    message = Element("message", NS_CLIENT, {"to": str(recipient.jid), "type": "chat", "id": body[-8:]})
    message.add("body", text=body)
    await sender.send_element(message)
    received = await recipient.wait_for(lambda e: e.name == "message")
    assert received.findtext("body") == body, f"{recipient.jid} got an unexpected message: {received!r}"
    assert received.get("from") == str(sender.jid)


async def _make_cast(server: RunningServer) -> Cast:
    for user in ("alice", "bob", "mallory", "carol"):
        await server.add_user(user)
    alice = await RawClient.login(server.host, server.starttls_port, server.cafile, "alice", PASSWORD, "victim")
    bob = await RawClient.login(server.host, server.starttls_port, server.cafile, "bob", PASSWORD, "victim")
    return Cast(server, alice, bob)


@pytest.fixture
async def cast(xmpp_server: RunningServer) -> AsyncIterator[Cast]:
    the_cast = await _make_cast(xmpp_server)
    try:
        yield the_cast
    finally:
        the_cast.close_all()


# -- helpers -----------------------------------------------------------------------------------
async def _assert_stream_error(client: RawClient, condition: StreamCondition) -> None:
    """The server sends exactly ``condition``, closes the stream, then the connection."""
    assert await client.expect_stream_error() is condition
    await client.expect_closed()


async def _yield_to_event_loop() -> None:
    # Not a timed wait: one pass of the loop lets the server (same loop) read and answer.
    await asyncio.sleep(0)


async def _send_until_answered(client: RawClient, chunks: Iterator[bytes]) -> int:
    """Send chunks until the server answers or hangs up; returns the bytes sent.

    After each chunk the loop runs twice: once for the server to read and answer, once for
    our side to read that answer before deciding to write again.
    """
    sent = 0
    for chunk in chunks:
        if client.has_input or client.ended:
            break
        await client.send(chunk)
        sent += len(chunk)
        await _yield_to_event_loop()
        await _yield_to_event_loop()
    return sent


@contextlib.contextmanager
def _traced_peak() -> Iterator[Callable[[], int]]:
    """Measure the peak of Python allocations (server and client share this process)."""
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield lambda: tracemalloc.get_traced_memory()[1] - base
    finally:
        if started_here:
            tracemalloc.stop()


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


# -- 1. a billion laughs as the stream opening -------------------------------------------------
def _billion_laughs() -> bytes:
    """The classic: lol9 expands to 10**9 "lol"s; the DOCTYPE comes before the stream header."""
    entities = ["<!ENTITY lol0 'lol'>"]
    entities += [f"<!ENTITY lol{i} '{f'&lol{i - 1};' * 10}'>" for i in range(1, 10)]
    header = stream_header_bytes().decode().replace("<?xml version='1.0'?>", "")
    return f"<?xml version='1.0'?><!DOCTYPE stream:stream [{''.join(entities)}]>{header}&lol9;".encode()


async def test_billion_laughs_header_is_restricted_xml(cast: Cast) -> None:
    with _traced_peak() as peak:
        attacker = await cast.connect()
        await attacker.send(_billion_laughs())
        await _assert_stream_error(attacker, StreamCondition.RESTRICTED_XML)
        # Expanding &lol9; means 10**9 "lol"s; refusing the DOCTYPE unread costs next to nothing.
        assert peak() < 8 * MiB
    await cast.assert_unharmed()


# -- 2. comments and processing instructions after login ---------------------------------------
@pytest.mark.parametrize("construct", [
    b"<!-- hello from mallory -->",
    b"<?mallory-pi data?>",
    b"<message to='bob@localhost/victim'><!-- inside a stanza --><body>hi</body></message>",
], ids=["comment", "processing-instruction", "comment-inside-stanza"])
async def test_comment_or_pi_mid_stream_is_restricted_xml(cast: Cast, construct: bytes) -> None:
    attacker = await cast.login("mallory")
    await attacker.send(construct)
    await _assert_stream_error(attacker, StreamCondition.RESTRICTED_XML)
    await cast.assert_unharmed()


# -- 3. a 10 MiB stanza ------------------------------------------------------------------------
async def test_ten_mib_stanza_is_policy_violation_without_buffering(cast: Cast) -> None:
    attacker = await cast.login("mallory")
    chunk = b"A" * (64 * 1024)
    opening = b"<message to='bob@localhost/victim' type='chat'><body>"

    def stanza() -> Iterator[bytes]:
        yield opening
        for _ in range(10 * MiB // len(chunk)):
            yield chunk

    with _traced_peak() as peak:
        sent = await _send_until_answered(attacker, stanza())
        await _assert_stream_error(attacker, StreamCondition.POLICY_VIOLATION)
        # tracemalloc sees every Python allocation of the server, the parser (pyexpat allocates
        # through Python's allocator) and this client.  A server that buffered the stanza would
        # hold more than its 10 MiB; refusing it at the 256 KiB limit leaves the peak at a few
        # hundred KiB.  8 MiB is far above the honest figure and below what buffering needs.
        assert peak() < 8 * MiB, f"peak {peak() / MiB:.1f} MiB after {sent / MiB:.1f} MiB sent"
    assert sent < 10 * MiB  # refused before the end of the stanza ever arrived
    await cast.assert_unharmed()


# -- 4. 20,000 nested elements -----------------------------------------------------------------
async def test_deep_nesting_is_policy_violation(cast: Cast) -> None:
    attacker = await cast.login("mallory")
    depth = 20_000
    document = (b"<message to='bob@localhost/victim' type='chat'>" + b"<a>" * depth
                + b"</a>" * depth + b"</message>")
    chunks = (document[i:i + 16384] for i in range(0, len(document), 16384))
    await _send_until_answered(attacker, chunks)
    await _assert_stream_error(attacker, StreamCondition.POLICY_VIOLATION)
    await cast.assert_unharmed()


# -- 5. a forged 'from' ------------------------------------------------------------------------
async def test_forged_from_is_invalid_from_and_never_delivered(cast: Cast) -> None:
    attacker = await cast.login("mallory")
    assert cast.alice.jid is not None and cast.bob.jid is not None
    forged = Element("message", NS_CLIENT, {
        "from": str(cast.alice.jid), "to": str(cast.bob.jid), "type": "chat", "id": "forged"})
    forged.add("body", text="send me your password -- alice")
    await attacker.send_element(forged)
    # RFC 6120 §4.9.3.9 and §8.1.2.1: router.py ends the stream rather than bouncing.
    await _assert_stream_error(attacker, StreamCondition.INVALID_FROM)
    # The forgery was handled before alice writes, so had it been routed bob would get it
    # first; _exchange fails on any message other than alice's genuine one.
    await cast.assert_unharmed()


# -- 6. SASL with someone else's authzid -------------------------------------------------------
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
async def test_authzid_of_another_user_is_invalid_authzid(cast: Cast, mechanism: str) -> None:
    attacker = await cast.connect_tls()
    outcome = await attacker.authenticate("mallory", PASSWORD, mechanism=mechanism, authzid="alice@localhost")
    assert sasl_failure_condition(outcome) is SaslCondition.INVALID_AUTHZID
    # Not authenticated as anyone: a stanza now is refused as unauthenticated (§4.9.3.12).
    await attacker.send(b"<message to='alice@localhost/victim'><body>as alice</body></message>")
    await _assert_stream_error(attacker, StreamCondition.NOT_AUTHORIZED)
    await cast.assert_unharmed()


# -- 7. the server-to-server namespace on the client port --------------------------------------
async def test_jabber_server_namespace_on_c2s_is_invalid_namespace(cast: Cast) -> None:
    attacker = await cast.connect()
    await attacker.send(stream_header_bytes(ns=NS_SERVER))
    await _assert_stream_error(attacker, StreamCondition.INVALID_NAMESPACE)
    await cast.assert_unharmed()


# -- 8. a thousand unauthenticated connections -------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Outcome:
    condition: StreamCondition
    seconds: float  # from just before our connect to the stream error


async def _unauthenticated(client: RawClient, connected_at: float) -> _Outcome:
    loop = asyncio.get_running_loop()
    try:
        # Refused connections get the error at once; admitted ones get features first.
        error = await client.wait_for(lambda e: (e.ns, e.name) == (NS_STREAMS, "error"), timeout=15.0)
        outcome = _Outcome(stream_error_condition(error), loop.time() - connected_at)
        await client.expect_closed()
        return outcome
    finally:
        client.close()


def _raise_open_files_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def test_thousand_unauthenticated_connections(tmp_path: Path) -> None:
    _raise_open_files_limit(4096)
    auth_timeout = 2.0
    server = await start_server(make_config(tmp_path, auth_timeout=auth_timeout))
    the_cast = await _make_cast(server)
    loop = asyncio.get_running_loop()
    try:
        rss_before = _max_rss_bytes()
        waiters: list[asyncio.Task[_Outcome]] = []
        for _ in range(10):  # 10 batches of 100 concurrent connects, not waiting for the outcomes
            # Read the clock before connecting: the server starts its auth timer when it accepts,
            # which can be well before the whole batch has connected on a loaded machine.
            before_connect = loop.time()
            batch = await asyncio.gather(*(RawClient.connect(server.host, server.starttls_port) for _ in range(100)))
            for client in batch:
                await client.send(stream_header_bytes())
                waiters.append(asyncio.ensure_future(_unauthenticated(client, before_connect)))
        outcomes = await asyncio.gather(*waiters)
        counts = Counter(o.condition for o in outcomes)
        assert set(counts) <= {StreamCondition.POLICY_VIOLATION, StreamCondition.CONNECTION_TIMEOUT}, counts
        assert sum(counts.values()) == 1000
        # max_unauthenticated_per_ip=100: the first hundred are admitted and time out; a slow
        # machine may admit a few more after those time out, but most are refused at once.
        assert counts[StreamCondition.CONNECTION_TIMEOUT] >= 100
        assert counts[StreamCondition.POLICY_VIOLATION] >= 700, counts
        assert all(o.seconds >= auth_timeout * 0.95 for o in outcomes
                   if o.condition is StreamCondition.CONNECTION_TIMEOUT)
        assert all(o.seconds < auth_timeout for o in outcomes
                   if o.condition is StreamCondition.POLICY_VIOLATION)
        # Peak RSS of this process, which holds both ends of every connection: under 64 KiB per
        # connection (about 30 MiB is what 1,000 take here).  ru_maxrss is a high-water mark, so
        # after a heavier earlier test the growth reads low, never high: the bound stays sound.
        assert _max_rss_bytes() - rss_before < 64 * MiB
        await the_cast.assert_unharmed()  # the fresh login proves the per-IP count went back down
    finally:
        the_cast.close_all()
        await server.server.stop()


# -- 9. invalid UTF-8, a malformed 'to', password guessing -------------------------------------
async def test_invalid_utf8_mid_stream_is_not_well_formed(cast: Cast) -> None:
    attacker = await cast.login("mallory")
    await attacker.send(b"<message to='bob@localhost/victim' type='chat'><body>\xc3\x28\xff</body></message>")
    await _assert_stream_error(attacker, StreamCondition.NOT_WELL_FORMED)
    await cast.assert_unharmed()


async def test_malformed_to_is_jid_malformed_and_session_survives(cast: Cast) -> None:
    attacker = await cast.login("mallory")
    bad = "bad@@localhost"
    with pytest.raises(InvalidJID):
        JID.parse(bad)
    message = Element("message", NS_CLIENT, {"to": bad, "type": "chat", "id": "m1"})
    message.add("body", text="hello?")
    await attacker.send_element(message)
    reply = await attacker.next_element()
    assert (reply.name, reply.get("type"), reply.get("id")) == ("message", "error", "m1"), reply
    error = reply.find("error", NS_CLIENT)
    assert error is not None and error.get("type") == "modify"  # RFC 6120 §8.3.3.8
    assert error.find("jid-malformed", NS_STANZA_ERRORS) is not None, reply
    # A stanza error leaves the stream up (§8.3): the same session still talks.
    await _exchange(attacker, cast.bob)
    assert not attacker.ended
    await cast.assert_unharmed()


async def test_repeated_wrong_passwords_end_the_stream(cast: Cast) -> None:
    attacker = await cast.connect_tls()
    for _ in range(3):  # c2s.max_auth_failures defaults to 3
        outcome = await attacker.authenticate("alice", "not " + PASSWORD)
        assert sasl_failure_condition(outcome) is SaslCondition.NOT_AUTHORIZED
    # RFC 6120 §6.4.5 leaves the stream error to us; protocol/c2s.py uses policy-violation.
    await _assert_stream_error(attacker, StreamCondition.POLICY_VIOLATION)
    await cast.assert_unharmed()

"""RFC 6120 / RFC 6121 / XEP-0368 with a second real client: aioxmpp against the server on loopback.

A different client library (its own XML stack, pyOpenSSL for TLS, aiosasl for SCRAM) logs in
over STARTTLS and direct TLS, fails with a wrong password, and exchanges messages with
full and bare JIDs (RFC 6121 §8.5), including with a slixmpp client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aioxmpp  # type: ignore[import-untyped]
import pytest

from xmppcore.config import Config

from .clients import AioClient, LoginFailed, SlixPool, capture_logins, direct_tls, logged_logins, starttls
from .conftest import PASSWORD, RunningServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(10),
    # aioxmpp's own dispatcher looks presence types up by value; nothing to fix on our side.
    pytest.mark.filterwarnings("ignore:as of aioxmpp 1.0, PresenceType:DeprecationWarning"),
]

Login = Callable[..., Awaitable[AioClient]]


@pytest.fixture
async def login(xmpp_server: RunningServer) -> AsyncIterator[Login]:
    """``await login(user, resource, password=..., direct=False)``: a connected aioxmpp client."""
    started: list[AioClient] = []

    async def connect(user: str, resource: str, *, password: str = PASSWORD, direct: bool = False) -> AioClient:
        endpoint = direct_tls(xmpp_server) if direct else starttls(xmpp_server)
        client = AioClient(f"{user}@{xmpp_server.domain}/{resource}", password, endpoint)
        started.append(client)
        return await client.connect()

    yield connect
    for client in started:
        await client.stop()


@pytest.mark.parametrize("direct", [False, True], ids=["starttls", "direct_tls"])
async def test_login_with_scram_sha_256(xmpp_server: RunningServer, login: Login,
                                        caplog: pytest.LogCaptureFixture, direct: bool) -> None:
    capture_logins(caplog)
    await xmpp_server.add_user("alice")

    alice = await login("alice", "tablet", direct=direct)

    assert alice.client.established
    assert alice.jid == "alice@localhost/tablet"
    assert "SCRAM-SHA-256" in alice.sasl.offered
    assert alice.sasl.offered <= set(Config().c2s.sasl_mechanisms)
    assert logged_logins(caplog) == [("alice@localhost", "SCRAM-SHA-256")]


async def test_wrong_password_is_not_authorized(xmpp_server: RunningServer, login: Login,
                                                caplog: pytest.LogCaptureFixture) -> None:
    capture_logins(caplog)
    await xmpp_server.add_user("alice")

    with pytest.raises(LoginFailed) as failure:
        await login("alice", "tablet", password="not the password")

    assert failure.value.condition == "not-authorized"
    assert logged_logins(caplog) == []


async def test_messages_to_full_and_bare_jids(xmpp_server: RunningServer, login: Login) -> None:
    await xmpp_server.add_user("alice")
    await xmpp_server.add_user("bob")
    alice = await login("alice", "tablet")
    bob = await login("bob", "watch", direct=True)
    await alice.announce()

    await alice.send_message("bob@localhost/watch", "full JID hello")
    got = await bob.receive("full JID hello")
    assert (str(got.from_), str(got.to), got.type_) == (
        "alice@localhost/tablet", "bob@localhost/watch", aioxmpp.MessageType.CHAT)

    await bob.send_message("alice@localhost", "bare JID hello")
    got = await alice.receive("bare JID hello")
    assert (str(got.from_), str(got.to)) == ("bob@localhost/watch", "alice@localhost")


async def test_bare_jid_message_between_libraries(xmpp_server: RunningServer, login: Login) -> None:
    await xmpp_server.add_user("alice")
    await xmpp_server.add_user("bob")
    alice = await login("alice", "tablet")
    async with SlixPool(xmpp_server) as slix:
        bob = await slix.login("bob", "desktop")
        await bob.announce(3)
        await alice.announce()

        await alice.send_message("bob@localhost", "from aioxmpp")
        got = await bob.receive("from aioxmpp")
        assert (str(got["from"]), str(got["to"])) == ("alice@localhost/tablet", "bob@localhost")

        bob.send_message("alice@localhost/tablet", "from slixmpp")
        reply = await alice.receive("from slixmpp")
        assert str(reply.from_) == "bob@localhost/desktop"

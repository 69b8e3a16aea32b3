"""RFC 6120 / RFC 6121 / XEP-0368 with a real client: slixmpp against the server on loopback.

Login over STARTTLS and direct TLS, SASL failure, message routing to full and bare JIDs
(RFC 6121 §8.5), resource conflicts (RFC 6120 §7.7.2.2), the RFC 6120 §10 / RFC 6121 §8.5
``service-unavailable`` defaults, and the server's own services: XEP-0030, XEP-0199,
XEP-0092 and XEP-0202.  Every assertion is about what the client received.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import AsyncIterator

import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError

import xmppcore
from xmppcore.config import Config

from .clients import LoginFailed, SlixClient, SlixPool, capture_logins, direct_tls, logged_logins, starttls
from .conftest import RunningServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(10)]

_SERVICE_PLUGINS = ("xep_0030", "xep_0092", "xep_0199", "xep_0202")


@pytest.fixture
async def clients(xmpp_server: RunningServer) -> AsyncIterator[SlixPool]:
    async with SlixPool(xmpp_server) as pool:
        yield pool


# ------------------------------------------------------------------------------ login


@pytest.mark.parametrize("transport", ["starttls", "direct_tls"])
async def test_login_with_scram_sha_256(xmpp_server: RunningServer, clients: SlixPool,
                                        caplog: pytest.LogCaptureFixture, transport: str) -> None:
    capture_logins(caplog)
    await xmpp_server.add_user("alice")
    endpoint = starttls(xmpp_server) if transport == "starttls" else direct_tls(xmpp_server)

    alice = await clients.login("alice", "laptop", endpoint=endpoint)

    assert alice.jid == "alice@localhost/laptop"
    assert alice.mechanism_used == "SCRAM-SHA-256"
    offered = alice.mechanisms_offered
    assert "SCRAM-SHA-256" in offered
    assert offered <= set(Config().c2s.sasl_mechanisms)
    # STARTTLS was negotiated on the STARTTLS port and never offered on the direct TLS one.
    assert ("starttls" in alice.negotiated_features) is (transport == "starttls")
    assert logged_logins(caplog) == [("alice@localhost", "SCRAM-SHA-256")]


async def test_wrong_password_is_not_authorized(xmpp_server: RunningServer, clients: SlixPool,
                                                caplog: pytest.LogCaptureFixture) -> None:
    capture_logins(caplog)
    await xmpp_server.add_user("alice")

    client = clients.make("alice", "laptop", password="not the password")
    with pytest.raises(LoginFailed) as failure:
        await client.connect()

    assert failure.value.condition == "not-authorized"
    assert client.auth_failures.pending == ["not-authorized"]
    assert logged_logins(caplog) == []


# ------------------------------------------------------------------------------ messages


async def test_messages_to_full_and_bare_jids(xmpp_server: RunningServer, clients: SlixPool) -> None:
    await xmpp_server.add_user("alice")
    await xmpp_server.add_user("bob")
    alice = await clients.login("alice", "home")
    bob = await clients.login("bob", "phone")
    await alice.announce()

    alice.send_message("bob@localhost/phone", "to your phone")
    got = await bob.receive("to your phone")
    assert (str(got["from"]), str(got["to"]), got["type"]) == ("alice@localhost/home", "bob@localhost/phone", "chat")

    bob.send_message("alice@localhost", "to you, wherever")
    got = await alice.receive("to you, wherever")
    # RFC 6121 §8.5.2.1.1: delivered as addressed, 'from' stamped with the sender's full JID.
    assert (str(got["from"]), str(got["to"])) == ("bob@localhost/phone", "alice@localhost")


async def test_bare_jid_chat_goes_to_highest_priority_resources(xmpp_server: RunningServer,
                                                                clients: SlixPool) -> None:
    await xmpp_server.add_user("alice")
    await xmpp_server.add_user("bob")
    alice = await clients.login("alice", "home")
    bob = {name: await clients.login("bob", name) for name in ("high1", "high2", "low")}
    for name, priority in (("high1", 5), ("high2", 5), ("low", 1)):
        await bob[name].announce(priority)

    alice.send_message("bob@localhost", "for the top ones")
    alice.send_message("bob@localhost/low", "marker")  # routed after the first one

    for name in ("high1", "high2"):
        got = await bob[name].receive("for the top ones")
        assert str(got["to"]) == "bob@localhost"
    await bob["low"].receive("marker")
    assert [m["body"] for m in bob["low"].messages.pending] == []


async def test_negative_priority_resource_gets_only_full_jid_messages(xmpp_server: RunningServer,
                                                                      clients: SlixPool) -> None:
    await xmpp_server.add_user("alice")
    await xmpp_server.add_user("bob")
    alice = await clients.login("alice", "home")
    bob = await clients.login("bob", "hidden")
    await bob.announce(-1)

    alice.send_message("bob@localhost", "to the bare JID")
    alice.send_message("bob@localhost/hidden", "to the full JID")

    got = await bob.receive("to the full JID")
    assert str(got["to"]) == "bob@localhost/hidden"
    # RFC 6121 §8.5.2.1.1: a negative priority never receives messages sent to the bare JID.
    assert [m["body"] for m in bob.messages.pending] == []


async def test_resource_conflict_replaces_the_old_session(xmpp_server: RunningServer, clients: SlixPool) -> None:
    await xmpp_server.add_user("alice")
    await xmpp_server.add_user("bob")
    alice = await clients.login("alice", "home")
    first = await clients.login("bob", "desk")

    second = await clients.login("bob", "desk")

    assert await first.stream_errors.get() == "conflict"
    await first.closed.wait()
    assert second.jid == "bob@localhost/desk"
    alice.send_message("bob@localhost/desk", "who is there?")
    got = await second.receive("who is there?")
    assert str(got["to"]) == "bob@localhost/desk"


# ------------------------------------------------------------------------------ errors


async def test_message_to_unknown_user_bounces_service_unavailable(xmpp_server: RunningServer,
                                                                   clients: SlixPool) -> None:
    await xmpp_server.add_user("alice")
    alice = await clients.login("alice", "home")

    alice.send_message("nobody@localhost", "anyone?")

    error = await alice.messages.get(lambda m: m["type"] == "error")
    assert str(error["from"]) == "nobody@localhost"
    assert (error["error"]["type"], error["error"]["condition"]) == ("cancel", "service-unavailable")


async def test_iq_to_offline_full_jid_is_service_unavailable(xmpp_server: RunningServer,
                                                             clients: SlixPool) -> None:
    await xmpp_server.add_user("alice")
    await xmpp_server.add_user("bob")
    alice = await clients.login("alice", "home", plugins=_SERVICE_PLUGINS)

    with pytest.raises(IqError) as failure:
        await alice.xmpp.plugin["xep_0199"].send_ping(JID("bob@localhost/gone"), timeout=5)

    reply = failure.value.iq
    assert str(reply["from"]) == "bob@localhost/gone"
    assert (reply["error"]["type"], reply["error"]["condition"]) == ("cancel", "service-unavailable")


# ------------------------------------------------------------------------------ server services


async def _service_client(server: RunningServer, clients: SlixPool) -> SlixClient:
    await server.add_user("alice")
    return await clients.login("alice", "home", plugins=_SERVICE_PLUGINS)


async def test_disco_info_on_the_server(xmpp_server: RunningServer, clients: SlixPool) -> None:
    alice = await _service_client(xmpp_server, clients)

    reply = await alice.xmpp.plugin["xep_0030"].get_info(jid=JID("localhost"), cached=False, timeout=5)

    info = reply["disco_info"]
    assert ("server", "im") in {(category, kind) for category, kind, _lang, _name in info["identities"]}
    assert {
        "http://jabber.org/protocol/disco#info",
        "urn:xmpp:ping",
        "jabber:iq:version",
        "urn:xmpp:time",
    } <= set(info["features"])


async def test_disco_info_on_an_account(xmpp_server: RunningServer, clients: SlixPool) -> None:
    alice = await _service_client(xmpp_server, clients)

    reply = await alice.xmpp.plugin["xep_0030"].get_info(jid=JID("alice@localhost"), cached=False, timeout=5)

    assert str(reply["from"]) == "alice@localhost"
    info = reply["disco_info"]
    # XEP-0030 §3.1 / RFC 6121 §8.5.1.1: the server answers for the account itself.
    assert ("account", "registered") in {(category, kind) for category, kind, _lang, _name in info["identities"]}
    assert "http://jabber.org/protocol/disco#info" in set(info["features"])


async def test_ping_the_server(xmpp_server: RunningServer, clients: SlixPool) -> None:
    alice = await _service_client(xmpp_server, clients)

    reply = await alice.xmpp.plugin["xep_0199"].send_ping(JID("localhost"), timeout=5)

    assert (reply["type"], str(reply["from"])) == ("result", "localhost")
    assert len(reply.xml) == 0  # XEP-0199 §4.2: an empty result


async def test_software_version_of_the_server(xmpp_server: RunningServer, clients: SlixPool) -> None:
    alice = await _service_client(xmpp_server, clients)

    reply = await alice.xmpp.plugin["xep_0092"].get_version(JID("localhost"), timeout=5)

    version = reply["software_version"]
    assert (version["name"], version["version"]) == ("xmppcore", xmppcore.__version__)
    assert not version["os"]  # off unless configured (XEP-0092 §5)


async def test_entity_time_of_the_server(xmpp_server: RunningServer, clients: SlixPool) -> None:
    alice = await _service_client(xmpp_server, clients)
    before = datetime.datetime.now(datetime.timezone.utc)

    reply = await alice.xmpp.plugin["xep_0202"].get_entity_time(JID("localhost"), timeout=5)

    after = datetime.datetime.now(datetime.timezone.utc)
    # COMPAT: slixmpp 1.17 appends its own "Z" to <utc/> before parsing, so it cannot read a
    # conforming value (XEP-0202 §3 example: "2006-12-19T17:58:35Z"); read the XML instead.
    payload = reply.xml.find("{urn:xmpp:time}time")
    assert payload is not None
    utc_text = payload.findtext("{urn:xmpp:time}utc") or ""
    assert utc_text.endswith("Z")  # XEP-0082 §3.2: expressed in UTC
    utc = datetime.datetime.fromisoformat(utc_text)
    # XEP-0082 millisecond precision: allow for the truncation on either side.
    assert before - datetime.timedelta(seconds=1) <= utc <= after + datetime.timedelta(seconds=1)
    assert re.fullmatch(r"[+-]\d\d:\d\d|Z", payload.findtext("{urn:xmpp:time}tzo") or "")

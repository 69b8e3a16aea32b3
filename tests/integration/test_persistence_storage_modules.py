"""XEP-0054 and XEP-0049 over the wire: vCards and private XML survive a restart (SQLite).

The real server runs twice on the same data directory.  Between the runs only the SQLite file
carries state, so what the second run answers is what the first one stored.  A vCard refused
for its size must not have been stored either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from xmppcore.config import Config
from xmppcore.stanza.errors import Condition, StanzaError
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT

from .conftest import PASSWORD, RunningServer, make_config, start_server
from .rawclient import RawClient

pytestmark = pytest.mark.integration

VCARD = "vcard-temp"
PRIVATE = "jabber:iq:private"


def config_with_storage_modules(tmp_path: Path) -> Config:
    config = make_config(tmp_path)
    enabled = tuple(dict.fromkeys((*config.modules.enabled, "vcard", "private", "last")))
    return dataclasses.replace(config, modules=dataclasses.replace(config.modules, enabled=enabled))


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[RunningServer]:
    server = await start_server(config_with_storage_modules(tmp_path))
    try:
        yield server
    finally:
        await server.server.stop()


async def login(server: RunningServer, username: str) -> RawClient:
    return await RawClient.login(server.host, server.starttls_port, server.cafile, username, PASSWORD)


async def iq(client: RawClient, type_: str, payload: Element, to: str | None = None) -> Element:
    """Send an IQ and return the answer with the same id."""
    stanza = Element("iq", NS_CLIENT, {"type": type_, "id": f"iq-{id(payload)}"})
    if to is not None:
        stanza.attrs["to"] = to
    stanza.append(payload)
    await client.send_element(stanza)
    match: Callable[[Element], bool] = lambda el: el.name == "iq" and el.get("id") == stanza.attrs["id"]
    return await client.wait_for(match)


def vcard(**fields: str) -> Element:
    card = Element("vCard", VCARD)
    for name, value in fields.items():
        card.add(name, text=value)
    return card


def private_query(*children: Element) -> Element:
    query = Element("query", PRIVATE)
    for child in children:
        query.append(child)
    return query


def error_condition(reply: Element) -> Condition:
    assert reply.get("type") == "error", reply
    error = reply.find("error", NS_CLIENT)
    assert error is not None
    return StanzaError.from_element(error).condition


async def test_vcards_and_private_data_survive_a_restart(tmp_path: Path) -> None:
    prefs = Element("prefs", "x:client-prefs", {"v": "2"})
    prefs.add("nick", text="Hamlet")
    async with running(tmp_path) as server:
        await server.add_user("alice")
        await server.add_user("bob")
        alice = await login(server, "alice")
        try:
            assert (await iq(alice, "set", vcard(FN="Alice Liddell", NICKNAME="alice"))).get("type") == "result"
            oversized = vcard(DESC="x" * 70_000)   # over the 64 KiB default, under the stanza limit
            assert error_condition(await iq(alice, "set", oversized)) is Condition.NOT_ACCEPTABLE
            assert (await iq(alice, "set", private_query(prefs))).get("type") == "result"
        finally:
            alice.close()

    async with running(tmp_path) as server:
        bob = await login(server, "bob")
        alice = await login(server, "alice")
        try:
            reply = await iq(bob, "get", Element("vCard", VCARD), to="alice@localhost")
            assert reply.get("type") == "result"
            assert reply.find("vCard", VCARD) == vcard(FN="Alice Liddell", NICKNAME="alice")
            reply = await iq(alice, "get", private_query(Element("prefs", "x:client-prefs")))
            assert reply.get("type") == "result"
            assert reply.find("query", PRIVATE) == private_query(prefs)
            # bob has no vCard of his own: nothing leaked into his from alice's data.
            reply = await iq(alice, "get", Element("vCard", VCARD), to="bob@localhost")
            assert error_condition(reply) is Condition.SERVICE_UNAVAILABLE
        finally:
            alice.close()
            bob.close()


async def test_the_last_logout_survives_a_restart(tmp_path: Path) -> None:
    async with running(tmp_path) as server:
        await server.add_user("alice")
        await server.add_user("bob")
        alice = await login(server, "alice")
        await alice.send("<presence/><presence type='unavailable'><status>Heading Home</status></presence>"
                         "</stream:stream>")
        await alice.expect_closed()
        # The logout is written when the server has seen the stream end; a whole login later
        # (TLS, SCRAM, bind) that write is long done.
        (await login(server, "bob")).close()

    async with running(tmp_path) as server:
        alice = await login(server, "alice")   # bound without presence: not available
        try:
            reply = await iq(alice, "get", Element("query", "jabber:iq:last"))
            query = reply.find("query", "jabber:iq:last")
            assert reply.get("type") == "result" and query is not None, reply
            assert query.text == "Heading Home" and int(query.get("seconds") or "-1") >= 0
        finally:
            alice.close()


async def test_a_logout_by_server_shutdown_is_recorded(tmp_path: Path) -> None:
    async with running(tmp_path) as server:
        await server.add_user("alice")
        alice = await login(server, "alice")
        await alice.send("<presence/>")
        await iq(alice, "get", Element("ping", "urn:xmpp:ping"))   # the presence has been handled
    async with running(tmp_path) as server:
        alice = await login(server, "alice")
        try:
            reply = await iq(alice, "get", Element("query", "jabber:iq:last"))
            assert reply.get("type") == "result", reply
        finally:
            alice.close()

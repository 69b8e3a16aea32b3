"""XEP-0077 In-Band Registration on the real server, over TCP and TLS, with the raw client.

Register before logging in, authenticate on the same stream, change the password, log in
with the new one, cancel (the stream ends with ``not-authorized``), and fail to log in again;
the per-address throttle; and ``xmppcore deluser`` deleting the account's module data.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from xmppcore.config import config_from_mapping
from xmppcore.protocol.c2s import NS_REGISTER_FEATURE
from xmppcore.server.app import Server
from xmppcore.stanza.errors import StreamCondition
from xmppcore.storage import create_driver
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_STANZA_ERRORS

from .conftest import RunningServer, start_server
from .rawclient import RawClient, best_scram, stream_error_condition

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

NS_REGISTER = "jabber:iq:register"
MODULES = ["disco", "ping", "presence", "message", "roster", "vcard", "private", "last", "offline",
           "blocking", "register"]


def config_data(tmp_path: Path, register: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "domains": ["localhost"],
        "data_dir": str(tmp_path / "data"),
        "c2s": {"bind": ["127.0.0.1"], "port": 0, "direct_tls_port": 0},
        "s2s": {"port": -1, "direct_tls_port": -1},
        "auth": {"scram_iterations": 4096, "failure_delay": 0.0, "failure_delay_max": 0.0},
        "storage": {"driver": "sqlite"},
        "modules": {"enabled": MODULES, "register": register or {}},
    }


async def running(tmp_path: Path, register: dict[str, Any] | None = None) -> AsyncIterator[RunningServer]:
    config = config_from_mapping(config_data(tmp_path, register), source="<test>", base_dir=tmp_path)
    server = await start_server(config)
    try:
        yield server
    finally:
        await server.server.stop()


@pytest.fixture
async def xmpp(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async for server in running(tmp_path):
        yield server


async def unauthenticated(s: RunningServer) -> tuple[RawClient, Element]:
    """Connected, TLS up, not logged in; returns the client and the features."""
    client = await RawClient.connect(s.host, s.starttls_port)
    await client.open_stream()
    return client, await client.starttls(s.cafile)


def register_iq(username: str, password: str, iq_id: str = "reg") -> Element:
    iq = Element("iq", "jabber:client", {"type": "set", "id": iq_id})
    query = iq.add("query", NS_REGISTER)
    query.add("username", text=username)
    query.add("password", text=password)
    return iq


def condition_of(reply: Element) -> str | None:
    error = reply.find("error", "jabber:client")
    if error is None:
        return None
    return next(c.name for c in error.elements() if c.ns == NS_STANZA_ERRORS and c.name != "text")


async def login_fails(s: RunningServer, username: str, password: str) -> bool:
    client, features = await unauthenticated(s)
    try:
        mechanism = best_scram(features)
        assert mechanism is not None
        return (await client.authenticate(username, password, mechanism=mechanism)).name == "failure"
    finally:
        client.close()


async def test_register_log_in_change_password_and_cancel(xmpp: RunningServer) -> None:
    client, features = await unauthenticated(xmpp)
    assert features.find("register", NS_REGISTER_FEATURE) is not None  # XEP-0077 §8
    await client.send(f"<iq type='get' id='fields'><query xmlns='{NS_REGISTER}'/></iq>")
    fields = await client.next_element()
    query = fields.find("query", NS_REGISTER)
    assert fields.get("type") == "result" and query is not None and query.find("username", NS_REGISTER) is not None

    await client.send_element(register_iq("Bill", "Calliope"))
    assert (await client.next_element()).get("type") == "result"
    # §3.1.1: the new account authenticates on the same stream.
    mechanism = best_scram(features)
    assert mechanism is not None
    assert (await client.authenticate("bill", "Calliope", mechanism=mechanism)).name == "success"
    await client.open_stream()
    await client.bind("first")
    await client.send_element(register_iq("bill", "groundlings", "change"))  # §3.3
    assert (await client.next_element()).get("type") == "result"
    client.close()

    assert await login_fails(xmpp, "bill", "Calliope")
    again = await RawClient.login(xmpp.host, xmpp.starttls_port, xmpp.cafile, "bill", "groundlings", "second")
    await again.send(f"<iq type='set' id='bye'><query xmlns='{NS_REGISTER}'><remove/></query></iq>")
    assert (await again.next_element()).get("type") == "result"  # §3.2: the result comes first
    assert stream_error_condition(await again.next_element()) is StreamCondition.NOT_AUTHORIZED
    await again.expect_closed()
    assert await login_fails(xmpp, "bill", "groundlings")
    assert not await xmpp.server.accounts.exists("localhost", "bill")


async def test_one_registration_per_address_per_window(xmpp: RunningServer) -> None:
    first, _ = await unauthenticated(xmpp)
    await first.send_element(register_iq("one", "secret-1"))
    assert (await first.next_element()).get("type") == "result"
    second, _ = await unauthenticated(xmpp)
    await second.send_element(register_iq("two", "secret-2"))
    assert condition_of(await second.next_element()) == "resource-constraint"
    for client in (first, second):
        client.close()
    assert not await xmpp.server.accounts.exists("localhost", "two")


async def test_without_the_module_there_is_no_registration(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    data["modules"] = {"enabled": [m for m in MODULES if m != "register"]}
    server = await start_server(config_from_mapping(data, source="<test>", base_dir=tmp_path))
    try:
        client, features = await unauthenticated(server)
        assert features.find("register", NS_REGISTER_FEATURE) is None
        await client.send_element(register_iq("bill", "Calliope"))
        assert condition_of(await client.next_element()) == "service-unavailable"  # §3.1
        client.close()
    finally:
        await server.server.stop()


async def test_deluser_deletes_the_accounts_module_data(tmp_path: Path) -> None:
    config = config_from_mapping(config_data(tmp_path), source="<test>", base_dir=tmp_path)
    server = Server(config)
    await server.open()
    await server.accounts.create("localhost", "alice", "secret")
    await server.storage.keyval("localhost", "vcard").set("alice", ["vCard", "vcard-temp", {}, []])
    await server.storage.map("localhost", "private").set("alice", "urn:x", [["n", "urn:x", {}, ["1"]]])
    await server.storage.close()
    config_file = tmp_path / "xmppcore.toml"
    config_file.write_text(f"data_dir = '{tmp_path / 'data'}'\n[modules]\nenabled = {MODULES!r}\n".replace("'", '"'))

    done = subprocess.run([sys.executable, "-m", "xmppcore.cli", "deluser", "alice@localhost",
                           "--config", str(config_file)], capture_output=True, text=True, timeout=20, check=False)

    assert (done.returncode, done.stdout) == (0, "deleted alice@localhost\n"), done.stderr
    storage = create_driver("sqlite", path=str(tmp_path / "data" / "xmppcore.sqlite3"))
    await storage.open()
    try:
        assert await storage.keyval("localhost", "vcard").get("alice") is None
        assert await storage.map("localhost", "private").get_all("alice") == {}
    finally:
        await storage.close()

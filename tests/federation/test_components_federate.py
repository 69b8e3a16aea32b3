"""A component's stanzas are routed like any other: over federation too (XEP-0114 §1, RFC 6120 §2.5).

``bot.one.test`` is a component of one.test; bob on two.test talks with it across the s2s link,
which one.test authenticates for the component's domain with dialback like any domain it serves.
"""

from __future__ import annotations

import hashlib
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path

import pytest

from xmppcore.xml.namespaces import NS_STREAMS
from xmppcore.xml.parser import StreamHeader

from ..integration.rawclient import RawClient
from .nodes import free_port, node_config, running_node

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

COMPONENT, SECRET = "bot.one.test", "bot-secret"


async def test_a_component_talks_with_a_user_on_another_server(tmp_path: Path) -> None:
    ports = {"one.test": free_port(), "two.test": free_port()}
    routes = {domain: f"127.0.0.1:{port}" for domain, port in ports.items()}
    one_config = node_config(tmp_path, "one.test", s2s_port=ports["one.test"], routes=routes)
    one_config = replace(one_config, components=replace(one_config.components, port=0, secrets={COMPONENT: SECRET}))
    two_config = node_config(tmp_path, "two.test", s2s_port=ports["two.test"],
                             routes={**routes, COMPONENT: routes["one.test"]})
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(running_node(one_config))
        two = await stack.enter_async_context(running_node(two_config))
        await two.add_user("bob")
        bob = await two.login("bob")
        stack.push_async_callback(bob.disconnect)
        await bob.announce()
        component = await RawClient.connect("127.0.0.1", one.server.components.addresses[0][1], domain=COMPONENT)
        await component.send_header((f"<stream:stream xmlns='jabber:component:accept' xmlns:stream='{NS_STREAMS}'"
                                     f" to='{COMPONENT}'>").encode())
        header = await component.next_event()
        assert isinstance(header, StreamHeader)
        digest = hashlib.sha1((header.attrs["id"] + SECRET).encode()).hexdigest()
        await component.send(f"<handshake>{digest}</handshake>")
        assert (await component.next_element()).name == "handshake"
        await component.send(f"<message from='news@{COMPONENT}' to='bob@two.test' type='chat'>"
                             f"<body>extra! extra!</body></message>")
        got = await bob.receive("extra! extra!")
        assert str(got["from"]) == f"news@{COMPONENT}"
        bob.send_message(f"news@{COMPONENT}", "thanks")
        answer = await component.wait_for(lambda e: e.name == "message")
        assert (answer.get("from"), answer.findtext("body", "jabber:component:accept")) == (bob.jid, "thanks")
        assert ("out", COMPONENT, "two.test", "dialback") in [link[:4] for link in one.links()]

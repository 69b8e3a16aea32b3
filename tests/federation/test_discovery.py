"""Peers found through DNS SRV (RFC 6120 §3.2.1, XEP-0368): direct TLS first when its record says so.

A real DNS server on loopback (the resolver tests' ``DnsServer``) publishes ``_xmpps-server`` and
``_xmpp-server`` records for two.test; one.test looks them up instead of using ``s2s.routes``.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from xmppcore.transport.resolver import ServerResolver

from ..transport.test_resolver import StartDns
from .nodes import Node, free_port, node_config, running_node

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


async def nodes_with_dns(stack: AsyncExitStack, tmp_path: Path, dns_server: StartDns,
                         zone: Mapping[str, Sequence[str]], two_ports: tuple[int, int]) -> tuple[Node, Node]:
    one_port = free_port()
    one = await stack.enter_async_context(running_node(node_config(
        tmp_path, "one.test", s2s_port=one_port, routes={})))
    two = await stack.enter_async_context(running_node(node_config(
        tmp_path, "two.test", s2s_port=two_ports[0], direct_tls_port=two_ports[1],
        routes={"one.test": f"127.0.0.1:{one_port}"})))
    dns, port = await dns_server(zone)
    one.server.federation.resolver = ServerResolver(nameservers=["127.0.0.1"], port=port, timeout=2.0,
                                                    rng=random.Random(1))
    return one, two


async def message_crosses(stack: AsyncExitStack, one: Node, two: Node) -> None:
    await one.add_user("alice")
    await two.add_user("bob")
    alice, bob = await one.login("alice"), await two.login("bob")
    stack.push_async_callback(alice.disconnect)
    stack.push_async_callback(bob.disconnect)
    await bob.announce()
    alice.send_message("bob@two.test", "found you")
    await bob.receive("found you")


async def test_a_direct_tls_srv_record_is_used_first(stack: AsyncExitStack, tmp_path: Path,
                                                     dns_server: StartDns) -> None:
    starttls, direct = free_port(), free_port()
    dead = free_port()  # the STARTTLS record points nowhere: only direct TLS can work
    zone = {"_xmpps-server._tcp.two.test.": [f"0 0 {direct} localhost."],
            "_xmpp-server._tcp.two.test.": [f"10 0 {dead} localhost."]}
    one, two = await nodes_with_dns(stack, tmp_path, dns_server, zone, (starttls, direct))
    await message_crosses(stack, one, two)
    assert ("out", "one.test", "two.test", "dialback") in [link[:4] for link in one.links()]


async def test_a_starttls_srv_record_is_followed(stack: AsyncExitStack, tmp_path: Path,
                                                 dns_server: StartDns) -> None:
    starttls, direct = free_port(), free_port()
    # XEP-0368 §3: "." says direct TLS is not offered; the STARTTLS record names the real port.
    zone = {"_xmpps-server._tcp.two.test.": ["0 0 0 ."],
            "_xmpp-server._tcp.two.test.": [f"10 0 {starttls} localhost."]}
    one, two = await nodes_with_dns(stack, tmp_path, dns_server, zone, (starttls, direct))
    await message_crosses(stack, one, two)

"""No spoofing across federation (RFC 6120 §4.9.3.9, §13.7; XEP-0220 §2.1; XEP-0178).

A hand-driven peer talks to real xmppcore nodes: it authenticates one domain and then sends for
another, presents a certificate for the wrong domain, or hands over dialback keys the
authoritative server never made.  Each time the node refuses, and bob — logged in on the node —
receives nothing he should not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from xmppcore.protocol.dialback import dialback_key
from xmppcore.stanza.errors import StreamCondition
from xmppcore.xml.namespaces import NS_DIALBACK, NS_SASL

from ..testca import make_ca
from .nodes import Node, free_port, node_config, running_node
from .rawpeer import RawPeer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TWO, ONE = "two.test", "one.test"


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


async def node_with_ca(stack: AsyncExitStack, tmp_path: Path) -> tuple[Node, object]:
    ca = make_ca(tmp_path / "ca")
    config = node_config(tmp_path, TWO, s2s_port=free_port(), routes={},
                         certificate=ca.issue([TWO], tmp_path / "two"), ca_file=ca.cert_path)
    return await stack.enter_async_context(running_node(config, cafile=ca.cert_path)), ca


async def peer_to(node: Node, claimed: str) -> RawPeer:
    return await RawPeer.open(node.s2s[0], node.s2s[1], claimed=claimed, target=node.domain)


async def test_a_stanza_for_a_domain_the_stream_did_not_authenticate_is_invalid_from(
        stack: AsyncExitStack, tmp_path: Path) -> None:
    two, ca = await node_with_ca(stack, tmp_path)
    await two.add_user("bob")
    bob = await two.login("bob")
    stack.push_async_callback(bob.disconnect)
    await bob.announce()
    peer = await peer_to(two, "evil.test")
    await peer.open_server_stream()
    features = await peer.secure(certificate=ca.issue(["evil.test"], tmp_path / "evil"),  # type: ignore[attr-defined]
                                 cafile=ca.cert_path)  # type: ignore[attr-defined]
    assert features.find("mechanisms", NS_SASL) is not None
    assert (await peer.external()).name == "success"
    await peer.open_server_stream()
    # Its own domain goes through...
    await peer.send("<message from='mallory@evil.test' to='bob@two.test' type='chat'><body>hi</body></message>")
    assert (await bob.receive("hi"))["from"] == "mallory@evil.test"
    # ...another domain's user does not: the stream ends with invalid-from (RFC 6120 §4.9.3.9).
    await peer.send("<message from='alice@one.test' to='bob@two.test' type='chat'><body>spoofed</body></message>")
    assert await peer.expect_stream_error() is StreamCondition.INVALID_FROM
    await bob.xmpp.plugin["xep_0199"].send_ping(bob.xmpp.boundjid.domain, timeout=5)  # bob's stream is fine
    assert [m for m in bob.messages.pending if m["body"] == "spoofed"] == []


async def test_a_certificate_for_another_domain_does_not_authenticate_with_external(
        stack: AsyncExitStack, tmp_path: Path) -> None:
    two, ca = await node_with_ca(stack, tmp_path)
    peer = await peer_to(two, "one.test")
    await peer.open_server_stream()
    # A valid certificate, but for evil.test: EXTERNAL is not offered for one.test (XEP-0178 §2).
    features = await peer.secure(certificate=ca.issue(["evil.test"], tmp_path / "evil"),  # type: ignore[attr-defined]
                                 cafile=ca.cert_path)  # type: ignore[attr-defined]
    assert features.find("mechanisms", NS_SASL) is None
    failure = await peer.external()
    assert failure.name == "failure"
    await peer.send("<message from='alice@one.test' to='bob@two.test'><body>x</body></message>")
    assert await peer.expect_stream_error() is StreamCondition.NOT_AUTHORIZED


async def test_a_dialback_key_the_authoritative_server_did_not_make_is_invalid(
        stack: AsyncExitStack, tmp_path: Path) -> None:
    ports = {ONE: free_port(), TWO: free_port()}
    routes = {domain: f"127.0.0.1:{port}" for domain, port in ports.items()}
    one = await stack.enter_async_context(running_node(node_config(tmp_path, ONE, s2s_port=ports[ONE], routes=routes)))
    two = await stack.enter_async_context(running_node(node_config(tmp_path, TWO, s2s_port=ports[TWO], routes=routes)))
    await two.add_user("bob")
    peer = await peer_to(two, ONE)
    await peer.open_server_stream()
    await peer.secure()
    # Made with a secret that is not one.test's: two.test asks one.test, which says invalid.
    forged = dialback_key(b"not the secret", receiving=TWO, originating=ONE, stream_id=peer.stream_id)
    await peer.send(f"<db:result from='{ONE}' to='{TWO}'>{forged}</db:result>")
    answer = await peer.wait_for(lambda e: e.ns == NS_DIALBACK and e.name == "result")
    assert answer.get("type") == "invalid"
    assert not [link for link in two.links() if link[0] == "in"]
    assert one.server.is_hosted(ONE)


async def test_the_authoritative_server_answers_verify_from_its_secret(
        stack: AsyncExitStack, tmp_path: Path) -> None:
    port = free_port()
    one = await stack.enter_async_context(running_node(node_config(tmp_path, ONE, s2s_port=port, routes={})))
    peer = await peer_to(one, TWO)
    await peer.open_server_stream()
    await peer.secure()
    secret = one.server.federation.dialback_secret
    good = dialback_key(secret, receiving=TWO, originating=ONE, stream_id="abc123")
    for key, expected in ((good, "valid"), ("0" * 64, "invalid")):
        await peer.send(f"<db:verify from='{TWO}' to='{ONE}' id='abc123'>{key}</db:verify>")
        answer = await peer.wait_for(lambda e: e.ns == NS_DIALBACK and e.name == "verify")
        assert (answer.get("type"), answer.get("id"), answer.get("from"), answer.get("to")) == (expected, "abc123", ONE, TWO)

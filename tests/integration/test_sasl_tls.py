"""SASL over real TLS (RFC 6120 §5–§6): every mechanism, channel binding, and the login throttle.

The -PLUS tests bind SCRAM to the TLS connection with RFC 9266 ``tls-exporter``: the client
computes the exporter on its side of the real connection, so a server that bound to anything
else (another connection, the pre-TLS stream, a TLS 1.2 value) would fail the proof.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from pathlib import Path

import pytest

from xmppcore.stanza.errors import SaslCondition, StreamCondition
from xmppcore.transport.tls import tls_exporter_available
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_SASL, NS_SASL_CB, NS_TLS

from .conftest import PASSWORD, RunningServer, make_config, start_server
from .rawclient import RawClient, sasl_failure_condition

pytestmark = pytest.mark.timeout(30)

PLUS = ("SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS")
needs_exporter = pytest.mark.skipif(
    not tls_exporter_available(),
    reason="this Python build cannot export TLS keying material, so -PLUS is (correctly) not offered")


def mechanisms(features: Element) -> list[str]:
    listing = features.find("mechanisms", NS_SASL)
    return [m.text for m in listing.findall("mechanism", NS_SASL)] if listing is not None else []


async def connect_tls(server: RunningServer, direct: bool) -> tuple[RawClient, Element]:
    if direct:
        client = await RawClient.connect(server.host, server.direct_tls_port, direct_tls_cafile=server.cafile)
        return client, await client.open_stream()
    client = await RawClient.connect(server.host, server.starttls_port)
    before = await client.open_stream()
    # RFC 6120 §5.3.1: TLS is mandatory-to-negotiate, so nothing else is offered before it.
    starttls = before.find("starttls", NS_TLS)
    assert starttls is not None and starttls.find("required", NS_TLS) is not None
    assert mechanisms(before) == []
    return client, await client.starttls(server.cafile)


@needs_exporter
@pytest.mark.parametrize("direct", [False, True], ids=["starttls", "direct-tls"])
async def test_plus_mechanisms_and_the_xep_0440_list_are_offered_under_tls(
        xmpp_server: RunningServer, direct: bool) -> None:
    client, features = await connect_tls(xmpp_server, direct)
    offered = mechanisms(features)
    assert set(PLUS) <= set(offered) and "PLAIN" in offered
    listing = features.find("sasl-channel-binding", NS_SASL_CB)
    assert listing is not None
    assert [c.get("type") for c in listing.findall("channel-binding", NS_SASL_CB)] == ["tls-exporter"]
    client.close()


@pytest.mark.parametrize("mechanism", [
    "SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN",
    pytest.param("SCRAM-SHA-1-PLUS", marks=needs_exporter),
    pytest.param("SCRAM-SHA-256-PLUS", marks=needs_exporter),
])
@pytest.mark.parametrize("direct", [False, True], ids=["starttls", "direct-tls"])
async def test_every_mechanism_logs_in_over_real_tls(
        xmpp_server: RunningServer, mechanism: str, direct: bool) -> None:
    await xmpp_server.add_user("juliet")
    client, _ = await connect_tls(xmpp_server, direct)
    outcome = await client.authenticate("juliet", PASSWORD, mechanism=mechanism)
    assert outcome.name == "success", outcome
    await client.open_stream()
    assert str(await client.bind("balcony")) == "juliet@localhost/balcony"
    client.close()


@needs_exporter
async def test_plus_with_another_connections_binding_is_refused(xmpp_server: RunningServer) -> None:
    await xmpp_server.add_user("juliet")
    client, _ = await connect_tls(xmpp_server, direct=False)
    outcome = await client.authenticate(
        "juliet", PASSWORD, mechanism="SCRAM-SHA-256-PLUS", channel_binding_data=secrets.token_bytes(32))
    assert sasl_failure_condition(outcome) is SaslCondition.NOT_AUTHORIZED
    client.close()


async def test_without_tls_plain_is_withheld_and_refused_with_encryption_required(tmp_path: Path) -> None:
    # A deployment that allows plaintext (e.g. on loopback) still never takes PLAIN in clear.
    server = await start_server(make_config(tmp_path, tls_required=False))
    try:
        await server.add_user("juliet")
        client = await RawClient.connect(server.host, server.starttls_port)
        offered = mechanisms(await client.open_stream())
        assert "SCRAM-SHA-256" in offered and "PLAIN" not in offered
        assert not any(m.endswith("-PLUS") for m in offered)
        outcome = await client.authenticate("juliet", PASSWORD, mechanism="PLAIN")
        assert sasl_failure_condition(outcome) is SaslCondition.ENCRYPTION_REQUIRED
        assert (await client.authenticate("juliet", PASSWORD, mechanism="SCRAM-SHA-256")).name == "success"
        client.close()
    finally:
        await server.server.stop()


async def test_repeated_failures_slow_down_the_next_attempt(tmp_path: Path) -> None:
    # Two failures from this address and for this account: the next check waits
    # base * 2 = 0.8 s before the credentials are even looked at.
    config = make_config(tmp_path)
    config = replace(config, auth=replace(config.auth, failure_delay=0.4, failure_delay_max=5.0))
    server = await start_server(config)
    try:
        await server.add_user("juliet")
        client, _ = await connect_tls(server, direct=False)
        for _ in range(2):
            failed = await client.authenticate("juliet", "wrong", mechanism="SCRAM-SHA-256")
            assert sasl_failure_condition(failed) is SaslCondition.NOT_AUTHORIZED
        started = time.monotonic()
        outcome = await client.authenticate("juliet", PASSWORD, mechanism="SCRAM-SHA-256")
        assert outcome.name == "success"
        assert time.monotonic() - started >= 0.8
        client.close()
    finally:
        await server.server.stop()


async def test_the_third_failure_on_a_stream_ends_it(xmpp_server: RunningServer) -> None:
    # RFC 6120 §6.4.5: a few retries (2 to 5; 3 by default), then a stream error.
    await xmpp_server.add_user("juliet")
    client, _ = await connect_tls(xmpp_server, direct=False)
    for _ in range(3):
        failed = await client.authenticate("juliet", "wrong", mechanism="PLAIN")
        assert sasl_failure_condition(failed) is SaslCondition.NOT_AUTHORIZED
    assert await client.expect_stream_error() is StreamCondition.POLICY_VIOLATION

"""RFC 6121 §3.4 and §2.6: pre-approval and roster versioning are stream features after login.

A server that supports subscription pre-approvals "MUST advertise" ``<sub
xmlns='urn:xmpp:features:pre-approval'/>`` during stream negotiation (§3.4); roster versioning is
``<ver xmlns='urn:xmpp:features:rosterver'/>`` (§2.6.1).  Both describe the account's roster, so
they come with the features of the authenticated stream, not before.
"""

from __future__ import annotations

import pytest

from xmppcore.modules.roster import NS_PRE_APPROVAL, NS_ROSTER_VER
from xmppcore.xml.element import Element

from .conftest import PASSWORD, RunningServer
from .rawclient import RawClient, best_scram

pytestmark = pytest.mark.integration


def offered(features: Element) -> set[tuple[str, str]]:
    return {(child.ns, child.name) for child in features.elements()}


async def test_pre_approval_and_versioning_are_offered_after_authentication(xmpp_server: RunningServer) -> None:
    await xmpp_server.add_user("alice")
    client = await RawClient.connect(xmpp_server.host, xmpp_server.starttls_port)
    try:
        before_tls = await client.open_stream()
        before_auth = await client.starttls(xmpp_server.cafile)
        mechanism = best_scram(before_auth)
        assert mechanism is not None, before_auth
        outcome = await client.authenticate("alice", PASSWORD, mechanism=mechanism)
        assert outcome.name == "success", outcome
        after_auth = await client.open_stream()
        assert {(NS_PRE_APPROVAL, "sub"), (NS_ROSTER_VER, "ver")} <= offered(after_auth)
        for unauthenticated in (before_tls, before_auth):
            assert not {(NS_PRE_APPROVAL, "sub"), (NS_ROSTER_VER, "ver")} & offered(unauthenticated)
        # The feature is empty: <sub/> carries nothing (RFC 6121 §3.4, §B.2 schema).
        sub = after_auth.find("sub", NS_PRE_APPROVAL)
        assert sub is not None and sub == Element("sub", NS_PRE_APPROVAL)
        await client.bind("pc")   # the stream goes on as usual
    finally:
        client.close()

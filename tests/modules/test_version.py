"""XEP-0092: Software Version — the server's name and version; the OS only when configured."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.harness import ScenarioHarness, error_of, expect
from xmppcore import __version__

VERSION = "jabber:iq:version"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[ScenarioHarness]:
    async with ScenarioHarness.running(tmp_path) as harness:
        await harness.add_user("alice")
        yield harness


async def test_name_and_version_without_the_os_by_default(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, f"<iq to='localhost' type='get' id='v1'><query xmlns='{VERSION}'/></iq>")
    assert alice.take_xml() == expect(f"""
        <iq from='localhost' to='alice@localhost/phone' type='result' id='v1'>
          <query xmlns='{VERSION}'><name>xmppcore</name><version>{__version__}</version></query>
        </iq>""")


async def test_the_os_is_given_only_with_show_os(tmp_path: Path) -> None:
    async with ScenarioHarness.running(tmp_path, options={"version": {"show_os": True}}) as h:
        await h.add_user("alice")
        alice = await h.online("alice", "phone")
        await h.send(alice, f"<iq to='localhost' type='get' id='v1'><query xmlns='{VERSION}'/></iq>")
        query = alice.take_one().find("query", VERSION)
        assert query is not None
        assert [child.name for child in query.elements()] == ["name", "version", "os"]
        assert (query.findtext("os") or "").strip() != ""


async def test_setting_the_version_is_not_allowed(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    await h.send(alice, f"<iq to='localhost' type='set' id='v1'><query xmlns='{VERSION}'><name>x</name></query></iq>")
    reply = alice.take_one()
    assert error_of(reply) == ("cancel", "not-allowed")
    assert (reply.get("from"), reply.get("id")) == ("localhost", "v1")


async def test_accounts_do_not_answer_version_queries(h: ScenarioHarness) -> None:
    # The version is the server's; a bare JID's software is its clients' business.
    alice = await h.online("alice", "phone")
    await h.send(alice, f"<iq to='alice@localhost' type='get' id='v1'><query xmlns='{VERSION}'/></iq>")
    assert error_of(alice.take_one()) == ("cancel", "service-unavailable")

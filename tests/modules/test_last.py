"""XEP-0012: Last Activity — server uptime, and when an account last logged out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.harness import DEFAULT_MODULES, FakeSession, ScenarioHarness, error_of, expect
from xmppcore.modules.last import last_query
from xmppcore.server.module_api import ModuleContext

LAST = "jabber:iq:last"
MODULES = (*DEFAULT_MODULES, "last")


class Clock:
    """The wall clock modules read through ``ModuleContext.now``, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(ModuleContext, "now", staticmethod(lambda: c.now))
    return c


@pytest.fixture
async def h(tmp_path: Path, clock: Clock) -> AsyncIterator[ScenarioHarness]:
    async with ScenarioHarness.running(tmp_path, modules=MODULES) as harness:
        await harness.add_user("alice")
        await harness.add_user("bob")
        yield harness


async def last(h: ScenarioHarness, session: FakeSession, to: str) -> list[str]:
    await h.send(session, f"<iq type='get' id='l1' to='{to}'><query xmlns='{LAST}'/></iq>")
    return session.take_xml()


async def test_the_server_answers_with_its_uptime(h: ScenarioHarness, clock: Clock) -> None:
    clock.advance(123_456.7)
    alice = await h.online("alice", "phone")
    # §5: seconds since the server started, and no character data.
    assert await last(h, alice, "localhost") == expect(
        f"<iq type='result' id='l1' from='localhost' to='alice@localhost/phone'><query xmlns='{LAST}' seconds='123456'/></iq>")


async def test_last_activity_is_read_only(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    for to in ("localhost", "alice@localhost"):
        await h.send(alice, f"<iq type='set' id='l2' to='{to}'><query xmlns='{LAST}' seconds='1'/></iq>")
        assert error_of(alice.take_one()) == ("cancel", "not-allowed")


async def test_an_account_with_an_available_resource_answers_zero(h: ScenarioHarness, clock: Clock) -> None:
    alice = await h.online("alice", "phone")
    await h.disconnect(await h.connect("alice", "old"))
    clock.advance(50)
    # §3: "If the user has at least one available resource ... seconds ... '0'".
    assert await last(h, alice, "alice@localhost") == expect(
        f"<iq type='result' id='l1' from='alice@localhost' to='alice@localhost/phone'><query xmlns='{LAST}' seconds='0'/></iq>")


async def test_an_offline_account_reports_its_logout_time_and_status(h: ScenarioHarness, clock: Clock) -> None:
    phone = await h.online("alice", "phone")
    await h.send(phone, "<presence type='unavailable'><status>Heading Home</status></presence>")
    await h.disconnect(phone)
    clock.advance(903.9)
    # A session that never sent presence is not available: it asks about its own account.
    quiet = await h.connect("alice", "quiet")
    assert await last(h, quiet, "alice@localhost") == expect(
        f"<iq type='result' id='l1' from='alice@localhost' to='alice@localhost/quiet'>"
        f"<query xmlns='{LAST}' seconds='903'>Heading Home</query></iq>")


async def test_only_the_last_session_to_close_counts(h: ScenarioHarness, clock: Clock) -> None:
    phone = await h.online("alice", "phone")
    laptop = await h.online("alice", "laptop")
    await h.send(phone, "<presence type='unavailable'><status>phone off</status></presence>")
    await h.disconnect(phone)        # laptop is still connected: no logout yet
    clock.advance(100)
    await h.disconnect(laptop)       # the account is gone now, without a goodbye status
    clock.advance(10)
    quiet = await h.connect("alice", "quiet")
    assert await last(h, quiet, "alice@localhost") == expect(
        f"<iq type='result' id='l1' from='alice@localhost' to='alice@localhost/quiet'><query xmlns='{LAST}' seconds='10'/></iq>")


async def test_available_presence_after_a_goodbye_drops_its_status(h: ScenarioHarness, clock: Clock) -> None:
    phone = await h.online("alice", "phone")
    await h.send(phone, "<presence type='unavailable'><status>brb</status></presence>")
    await h.send(phone, "<presence/>")
    await h.disconnect(phone)
    clock.advance(5)
    quiet = await h.connect("alice", "quiet")
    assert await last(h, quiet, "alice@localhost") == expect(
        f"<iq type='result' id='l1' from='alice@localhost' to='alice@localhost/quiet'><query xmlns='{LAST}' seconds='5'/></iq>")


async def test_going_offline_is_a_logout_even_with_a_session_that_never_sent_presence(
        h: ScenarioHarness, clock: Clock) -> None:
    quiet = await h.connect("alice", "quiet")     # bound, never available
    phone = await h.online("alice", "phone")
    await h.disconnect(phone)                     # contacts see alice go offline now
    clock.advance(30)
    assert await last(h, quiet, "alice@localhost") == expect(
        f"<iq type='result' id='l1' from='alice@localhost' to='alice@localhost/quiet'><query xmlns='{LAST}' seconds='30'/></iq>")


async def test_sessions_that_never_sent_presence_leave_the_logout_time_alone(h: ScenarioHarness, clock: Clock) -> None:
    phone = await h.online("alice", "phone")
    await h.send(phone, "<presence type='unavailable'><status>away for good</status></presence>")
    clock.advance(60)
    await h.disconnect(phone)                     # already unavailable: not a new logout
    await h.disconnect(await h.connect("alice", "bot"))
    clock.advance(40)
    quiet = await h.connect("alice", "quiet")
    assert await last(h, quiet, "alice@localhost") == expect(
        f"<iq type='result' id='l1' from='alice@localhost' to='alice@localhost/quiet'>"
        f"<query xmlns='{LAST}' seconds='100'>away for good</query></iq>")


async def test_an_account_that_never_logged_out_has_no_last_activity(h: ScenarioHarness) -> None:
    quiet = await h.connect("alice", "quiet")
    await h.send(quiet, f"<iq type='get' id='l1'><query xmlns='{LAST}'/></iq>")
    assert error_of(quiet.take_one()) == ("cancel", "item-not-found")


async def test_other_accounts_are_forbidden_until_rosters_exist(h: ScenarioHarness) -> None:
    bob = await h.online("bob", "pc")
    await h.disconnect(await h.online("alice", "phone"))
    # §3: last activity only for those who may see the account's presence; no roster yet.
    await h.send(bob, f"<iq type='get' id='l2' to='alice@localhost'><query xmlns='{LAST}'/></iq>")
    reply = bob.take_one()
    assert (reply.get("from"), error_of(reply)) == ("alice@localhost", ("auth", "forbidden"))
    # An account that does not exist is not there to ask (RFC 6121 §8.5.1).
    await h.send(bob, f"<iq type='get' id='l3' to='nobody@localhost'><query xmlns='{LAST}'/></iq>")
    assert error_of(bob.take_one()) == ("cancel", "service-unavailable")


async def test_a_query_to_a_full_jid_goes_to_that_client(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    bob = await h.online("bob", "pc")
    # §4: idle time is the client's to tell; the server only routes the request.
    await h.send(bob, f"<iq type='get' id='l4' to='alice@localhost/phone'><query xmlns='{LAST}'/></iq>")
    assert alice.take_xml() == expect(
        f"<iq type='get' id='l4' from='bob@localhost/pc' to='alice@localhost/phone'><query xmlns='{LAST}'/></iq>")
    assert bob.take() == []


async def test_the_logout_time_is_stored(h: ScenarioHarness, clock: Clock) -> None:
    phone = await h.online("alice", "phone")
    await h.send(phone, "<presence type='unavailable'><status>bye</status></presence>")
    await h.disconnect(phone)
    # Written in the background (server/writes_behind.py); a query waits for it, and then it
    # is in storage.
    quiet = await h.connect("alice", "quiet")
    assert await last(h, quiet, "alice@localhost") == expect(
        f"<iq type='result' id='l1' from='alice@localhost' to='alice@localhost/quiet'>"
        f"<query xmlns='{LAST}' seconds='0'>bye</query></iq>")
    assert await h.server.storage.keyval("localhost", "last").get("alice") == {"when": clock.now, "status": "bye"}


async def test_last_activity_is_advertised(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "phone")
    info = "http://jabber.org/protocol/disco#info"
    await h.send(alice, f"<iq type='get' id='d' to='localhost'><query xmlns='{info}'/></iq>")
    query = alice.take_one().find("query", info)
    assert query is not None and LAST in [f.get("var") for f in query.findall("feature")]


@pytest.mark.parametrize(("seconds", "status", "attr", "text"), [
    (0.0, "", "0", ""), (59.99, "", "59", ""), (-3.0, "", "0", ""), (7.0, "gone", "7", "gone"),
])
def test_last_query(seconds: float, status: str, attr: str, text: str) -> None:
    query = last_query(seconds, status)
    assert (query.ns, query.get("seconds"), query.text) == (LAST, attr, text)

"""XEP-0313 §4 queries against the real server runtime: the form, each filter, RSM paging in both
directions with exact first/last/count/complete, results before the IQ result, and the errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.modules.test_mam import STAMP0, T0, Clock, archive_ids, running
from tests.server.harness import FakeSession, ScenarioHarness, error_of, expect
from xmppcore.modules.mam import NS_MAM
from xmppcore.modules.mam_form import parse_datetime
from xmppcore.modules.mam_ids import IdCodec
from xmppcore.modules.mam_prefs import NS_RETENTION
from xmppcore.server.module_api import ModuleContext
from xmppcore.stanza.rsm import NS_RSM, RsmPage, parse_page
from xmppcore.xml.element import Element

MINUTE = 60.0
FORM_TYPE = f"<field var='FORM_TYPE' type='hidden'><value>{NS_MAM}</value></field>"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    current = Clock()
    monkeypatch.setattr(ModuleContext, "now", staticmethod(lambda: current.now))
    return current


@pytest.fixture
async def h(tmp_path: Path, clock: Clock) -> AsyncIterator[ScenarioHarness]:
    async with running(tmp_path) as harness:
        yield harness


async def converse(h: ScenarioHarness, clock: Clock, count: int) -> tuple[FakeSession, list[str]]:
    """Alice (home) sends ``count`` messages to bob (pc), a minute apart; bob's session and his ids."""
    alice, bob = await h.online("alice", "home"), await h.online("bob", "pc")
    for n in range(count):
        clock.now = T0 + n * MINUTE
        await h.send(alice, f"<message to='bob@localhost' type='chat' id='m{n}'><body>{n}</body></message>")
    h.clear()
    return bob, await archive_ids(h, "bob")


def form(**fields: str | list[str]) -> str:
    values = "".join(
        f"<field var='{var.rstrip('_').replace('_', '-')}'>" + "".join(f"<value>{v}</value>" for v in
                                                           (value if isinstance(value, list) else [value])) + "</field>"
        for var, value in fields.items())
    return f"<x xmlns='jabber:x:data' type='submit'>{FORM_TYPE}{values}</x>"


async def query(h: ScenarioHarness, session: FakeSession, inner: str = "", *, rsm: str | None = None,
                attrs: str = "") -> tuple[list[Element], Element]:
    """Run one query; the result messages and the IQ answer (which must come last)."""
    set_el = "" if rsm is None else f"<set xmlns='{NS_RSM}'>{rsm}</set>"
    await h.send(session, f"<iq type='set' id='q'><query xmlns='{NS_MAM}' {attrs}>{inner}{set_el}</query></iq>")
    *messages, answer = session.take()
    assert answer.name == "iq" and all(m.name == "message" for m in messages)
    return messages, answer


def page(messages: list[Element], answer: Element) -> tuple[list[str], RsmPage, str | None]:
    """(result ids in arrival order, the RSM set, fin's 'complete')."""
    fin = answer.find("fin", NS_MAM)
    assert fin is not None, answer
    set_el = fin.find("set", NS_RSM)
    assert set_el is not None
    ids = [r.get("id") or "" for m in messages for r in m.findall("result", NS_MAM)]
    return ids, parse_page(set_el), fin.get("complete")


def rsm_page(ids: list[str], first_index: int, count: int) -> RsmPage:
    return RsmPage(first=ids[0], first_index=first_index, last=ids[-1], count=count, exact=True)


# -- results -----------------------------------------------------------------------------------------
async def test_results_come_before_the_fin(h: ScenarioHarness, clock: Clock) -> None:
    bob, [archive_id] = await converse(h, clock, 1)
    await h.send(bob, f"<iq type='set' id='q'><query xmlns='{NS_MAM}' queryid='f27'/></iq>")
    assert bob.take_xml() == expect(
        f"<message from='bob@localhost' to='bob@localhost/pc'><result xmlns='{NS_MAM}' queryid='f27' id='{archive_id}'>"
        f"<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='{STAMP0}'/>"
        "<message xmlns='jabber:client' from='alice@localhost/home' to='bob@localhost' type='chat' id='m0'>"
        "<body>0</body></message>"
        "</forwarded></result></message>",
        f"<iq type='result' id='q' to='bob@localhost/pc'><fin xmlns='{NS_MAM}' complete='true'><set xmlns='{NS_RSM}'>"
        f"<first index='0' exact-index='true'>{archive_id}</first><last>{archive_id}</last>"
        "<count exact='true'>1</count></set></fin></iq>")


async def test_an_empty_archive(h: ScenarioHarness) -> None:
    bob = await h.online("bob", "pc")
    assert page(*await query(h, bob)) == ([], RsmPage(count=0, exact=True), "true")
    await h.send(bob, f"<iq type='get' id='m'><metadata xmlns='{NS_MAM}'/></iq>")
    assert bob.take_xml() == expect(f"<iq type='result' id='m' to='bob@localhost/pc'><metadata xmlns='{NS_MAM}'/></iq>")


async def test_metadata_names_the_first_and_last_message(h: ScenarioHarness, clock: Clock) -> None:
    bob, ids = await converse(h, clock, 3)
    await h.send(bob, f"<iq type='get' id='m'><metadata xmlns='{NS_MAM}'/></iq>")
    assert bob.take_xml() == expect(
        f"<iq type='result' id='m' to='bob@localhost/pc'><metadata xmlns='{NS_MAM}'>"
        f"<start id='{ids[0]}' timestamp='{STAMP0}'/><end id='{ids[2]}' timestamp='2002-09-10T23:10:25.000Z'/>"
        "</metadata></iq>")


async def test_the_form_lists_the_fields(h: ScenarioHarness) -> None:
    bob = await h.online("bob", "pc")
    await h.send(bob, f"<iq type='get' id='f'><query xmlns='{NS_MAM}'/></iq>")
    assert bob.take_xml() == expect(
        f"<iq type='result' id='f' to='bob@localhost/pc'><query xmlns='{NS_MAM}'><x xmlns='jabber:x:data' type='form'>"
        f"<field type='hidden' var='FORM_TYPE'><value>{NS_MAM}</value></field>"
        "<field type='jid-single' var='with'/><field type='text-single' var='start'/>"
        "<field type='text-single' var='end'/><field type='text-single' var='before-id'/>"
        "<field type='text-single' var='after-id'/><field type='list-multi' var='ids'>"
        "<validate xmlns='http://jabber.org/protocol/xdata-validate' datatype='xs:string'><open/></validate>"
        "</field></x></query></iq>")


class LeavingSession(FakeSession):
    """A client that drops its connection after receiving ``keep`` stanzas."""

    def __init__(self, h: ScenarioHarness, keep: int) -> None:
        super().__init__("leaving")
        self._h, self._keep = h, keep

    def deliver(self, stanza: Element) -> None:
        super().deliver(stanza)
        if len(self.inbox) == self._keep:
            self._h.server.sessions.unbind(self)


async def test_a_query_whose_resource_leaves_midway_ends_quietly(h: ScenarioHarness, clock: Clock) -> None:
    _, ids = await converse(h, clock, 5)
    leaving = LeavingSession(h, keep=2)
    h.server.sessions.bind(leaving, "bob", "localhost", "flaky")
    await h.send(leaving, f"<iq type='set' id='q'><query xmlns='{NS_MAM}'/></iq>")
    assert [r.get("id") for m in leaving.take() for r in m.findall("result", NS_MAM)] == ids[:2]
    assert h.quiet()  # nothing went astray (no bounces of results to the account's other resources)


# -- paging ------------------------------------------------------------------------------------------
async def test_paging_forwards(h: ScenarioHarness, clock: Clock) -> None:
    bob, ids = await converse(h, clock, 10)
    assert page(*await query(h, bob, rsm="<max>4</max>")) == (ids[0:4], rsm_page(ids[0:4], 0, 10), "false")
    assert page(*await query(h, bob, rsm=f"<max>4</max><after>{ids[3]}</after>")) == (
        ids[4:8], rsm_page(ids[4:8], 4, 10), "false")
    assert page(*await query(h, bob, rsm=f"<max>4</max><after>{ids[7]}</after>")) == (
        ids[8:10], rsm_page(ids[8:10], 8, 10), "true")
    assert page(*await query(h, bob, rsm=f"<max>4</max><after>{ids[9]}</after>")) == (
        [], RsmPage(count=10, exact=True), "true")


async def test_paging_backwards(h: ScenarioHarness, clock: Clock) -> None:
    bob, ids = await converse(h, clock, 10)
    assert page(*await query(h, bob, rsm="<max>4</max><before/>")) == (ids[6:10], rsm_page(ids[6:10], 6, 10), "false")
    assert page(*await query(h, bob, rsm=f"<max>4</max><before>{ids[6]}</before>")) == (
        ids[2:6], rsm_page(ids[2:6], 2, 10), "false")
    assert page(*await query(h, bob, rsm=f"<max>4</max><before>{ids[2]}</before>")) == (
        ids[0:2], rsm_page(ids[0:2], 0, 10), "true")


async def test_flipped_pages_come_newest_first(h: ScenarioHarness, clock: Clock) -> None:
    bob, ids = await converse(h, clock, 5)
    assert page(*await query(h, bob, "<flip-page/>", rsm="<max>3</max><before/>")) == (
        ids[4:1:-1], rsm_page(ids[2:5], 2, 5), "false")  # §4.3.4: the same page, sent in reverse


async def test_paging_by_index_and_counting(h: ScenarioHarness, clock: Clock) -> None:
    bob, ids = await converse(h, clock, 10)
    assert page(*await query(h, bob, rsm="<max>3</max><index>5</index>")) == (ids[5:8], rsm_page(ids[5:8], 5, 10), "false")
    assert page(*await query(h, bob, rsm="<max>3</max><index>10</index>")) == ([], RsmPage(count=10, exact=True), "true")
    assert page(*await query(h, bob, rsm="<max>0</max>")) == ([], RsmPage(count=10, exact=True), "false")


async def test_a_page_is_capped_by_the_server(tmp_path: Path, clock: Clock) -> None:
    async with running(tmp_path, options={"max_page": 3}) as h:
        bob, ids = await converse(h, clock, 5)
        assert page(*await query(h, bob, rsm="<max>100</max>")) == (ids[0:3], rsm_page(ids[0:3], 0, 5), "false")
        assert page(*await query(h, bob)) == (ids[0:3], rsm_page(ids[0:3], 0, 5), "false")  # no <set/>: a page


# -- filters -----------------------------------------------------------------------------------------
async def test_filtering_by_time(h: ScenarioHarness, clock: Clock) -> None:
    bob, ids = await converse(h, clock, 6)
    # m1 at 23:09:25, m3 at 23:11:25 — both bounds are inclusive (§4.1.2); offsets are honoured.
    inner = form(start="2002-09-10T23:09:25Z", end="2002-09-11T01:11:25.000+02:00")
    assert page(*await query(h, bob, inner)) == (ids[1:4], rsm_page(ids[1:4], 0, 3), "true")
    assert page(*await query(h, bob, form(start="2002-09-11T00:00:00Z"))) == ([], RsmPage(count=0, exact=True), "true")
    # An id outside the time range is still in the archive: a bound, not item-not-found.
    assert page(*await query(h, bob, form(start="2002-09-10T23:11:25Z", after_id=ids[0])))[0] == ids[3:6]


async def test_filtering_by_id(h: ScenarioHarness, clock: Clock) -> None:
    bob, ids = await converse(h, clock, 6)
    assert page(*await query(h, bob, form(after_id=ids[1], before_id=ids[5]))) == (
        ids[2:5], rsm_page(ids[2:5], 0, 3), "true")
    assert page(*await query(h, bob, form(ids=[ids[4], ids[0]]))) == ([ids[0], ids[4]], rsm_page([ids[0], ids[4]], 0, 2), "true")
    # before-id is a filter, not a direction: the page starts at the oldest match (§9).
    assert page(*await query(h, bob, form(before_id=ids[5]), rsm="<max>2</max>")) == (
        ids[0:2], rsm_page(ids[0:2], 0, 5), "false")


async def test_filtering_by_partner(h: ScenarioHarness, clock: Clock) -> None:
    alice, bob = await h.online("alice", "home"), await h.online("bob", "pc")
    carol, alice_phone = await h.online("carol", "desk"), await h.online("alice", "phone")
    for sender in (alice, carol, alice_phone, alice):
        await h.send(sender, "<message to='bob@localhost' type='chat'><body>x</body></message>")
    await h.send(bob, "<message to='alice@localhost/phone' type='chat'><body>y</body></message>")
    await h.send(bob, "<message to='bob@localhost' type='chat'><body>note to self</body></message>")
    ids = await archive_ids(h, "bob")
    h.clear()
    by_alice = [ids[0], ids[2], ids[3], ids[4]]
    assert page(*await query(h, bob, form(with_="alice@localhost")))[0] == by_alice
    assert page(*await query(h, bob, form(with_="alice@localhost/phone")))[0] == [ids[2], ids[4]]
    assert page(*await query(h, bob, form(with_="alice@localhost/phone"), rsm="<max>1</max><before/>")) == (
        [ids[4]], rsm_page([ids[4]], 1, 2), "false")
    assert page(*await query(h, bob, form(with_="bob@localhost")))[0] == [ids[5]]  # §4.1.1: only to oneself
    assert page(*await query(h, bob, form(with_="nobody@localhost")))[0] == []


# -- errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("inner", "rsm", "condition"), [
    (form(start="yesterday"), None, ("modify", "bad-request")),
    (form(start="2002-09-10T23:08:25"), None, ("modify", "bad-request")),   # XEP-0082: a zone is required
    (form(end="2002-02-30T00:00:00Z"), None, ("modify", "bad-request")),
    (form(with_="@example.org"), None, ("modify", "bad-request")),
    (form(start=["2002-09-10T23:08:25Z", "2002-09-10T23:08:26Z"]), None, ("modify", "bad-request")),
    ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:example</value></field></x>",
     None, ("modify", "bad-request")),
    (form(**{"{urn:example}free-text-search": "x"}), None, ("cancel", "feature-not-implemented")),
    (form(include_groupchat="true"), None, ("cancel", "feature-not-implemented")),
    ("", "<max>many</max>", ("modify", "bad-request")),
    ("", "<index>1</index><after>x</after>", ("modify", "bad-request")),
    ("", "<after>ZZZZZZZZZZZZZZZZZZZZZZ</after>", ("cancel", "item-not-found")),
    ("", "<before>not-an-id</before>", ("cancel", "item-not-found")),
    (form(after_id="0000000000000000001"), None, ("cancel", "item-not-found")),
    (form(ids=["AAAAAAAAAAAAAAAAAAAAAA"]), None, ("cancel", "item-not-found")),
])
async def test_queries_that_are_refused(h: ScenarioHarness, inner: str, rsm: str | None,
                                        condition: tuple[str, str]) -> None:
    bob = await h.online("bob", "pc")
    messages, answer = await query(h, bob, inner, rsm=rsm)
    assert (messages, error_of(answer)) == ([], condition)


async def test_a_long_queryid_is_refused(h: ScenarioHarness) -> None:
    bob = await h.online("bob", "pc")  # it is echoed in every result: 250 copies of a huge one would not do
    assert error_of((await query(h, bob, attrs=f"queryid='{'q' * 257}'"))[1]) == ("modify", "bad-request")
    assert page(*await query(h, bob, attrs=f"queryid='{'q' * 256}'"))[2] == "true"


async def test_an_id_of_another_archive_is_not_found(h: ScenarioHarness, clock: Clock) -> None:
    _, ids = await converse(h, clock, 1)
    carol = await h.online("carol", "desk")
    assert error_of((await query(h, carol, rsm=f"<after>{ids[0]}</after>"))[1]) == ("cancel", "item-not-found")
    assert error_of((await query(h, carol, form(ids=[ids[0]])))[1]) == ("cancel", "item-not-found")


async def test_a_deleted_id_is_not_found(tmp_path: Path, clock: Clock) -> None:
    async with running(tmp_path, options={"retention_days": 1}) as h:
        bob, ids = await converse(h, clock, 2)
        clock.now = T0 + 2 * 86400.0
        assert error_of((await query(h, bob, rsm=f"<after>{ids[0]}</after>"))[1]) == ("cancel", "item-not-found")


def test_ids_are_opaque_and_only_ours_decode() -> None:
    codec, other = IdCodec(bytes(32)), IdCodec(bytes([1]) * 32)
    first, second = codec.encode("0000000000000000001"), codec.encode("0000000000000000002")
    assert len(first) == len(second) == 22 and first[:8] != second[:8]
    assert codec.decode(first) == "0000000000000000001" and codec.decode(second) == "0000000000000000002"
    assert other.decode(first) is None  # another host's (or server's) id
    for forged in ("", "0000000000000000001", first[:-1], first + "A", "!" * 22):
        assert codec.decode(forged) is None


async def test_only_the_account_may_touch_its_archive(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    for payload, kind in ((f"<prefs xmlns='{NS_MAM}'/>", "get"), (f"<query xmlns='{NS_MAM}'/>", "set"),
                          (f"<metadata xmlns='{NS_MAM}'/>", "get"), (f"<retention xmlns='{NS_RETENTION}'/>", "get")):
        await h.send(alice, f"<iq type='{kind}' id='x' to='bob@localhost'>{payload}</iq>")
        assert error_of(alice.take_one()) == ("auth", "forbidden")  # XEP-0313 §8.1


def test_datetimes_follow_xep_0082() -> None:
    assert parse_datetime("2002-09-10T23:08:25Z") == T0
    assert parse_datetime("2002-09-10T23:08:25.500Z") == T0 + 0.5
    assert parse_datetime("2002-09-10T16:08:25-07:00") == T0
    for bad in ("2002-09-10", "2002-09-10 23:08:25Z", "2002-09-10T23:08:25+25:00", "02-09-10T23:08:25Z", "x"):
        with pytest.raises(ValueError):
            parse_datetime(bad)


async def test_a_query_without_a_form_type_field_is_accepted(h: ScenarioHarness, clock: Clock) -> None:
    bob, ids = await converse(h, clock, 1)
    inner = "<x xmlns='jabber:x:data' type='submit'><field var='with'><value>alice@localhost</value></field></x>"
    assert page(*await query(h, bob, inner))[0] == ids

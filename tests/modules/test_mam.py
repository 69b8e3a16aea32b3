"""XEP-0313 archiving and XEP-0359 stanza-ids, XML in and XML out against the real server runtime:
what is archived in each direction, stamping and stripping, resent messages archived once
(XEP-0359 origin-id), preferences (XEP-0441), retention, account deletion.  Queries and paging are in test_mam_query.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.server.harness import (
    DEFAULT_MODULES,
    FakeSession,
    ScenarioHarness,
    error_of,
    expect,
    xml,
)
from xmppcore.config import ConfigError, config_from_mapping
from xmppcore.jid import JID
from xmppcore.modules.mam import NS_MAM, NS_SID, archivable, without_claimed_ids
from xmppcore.modules.mam_ids import IdCodec
from xmppcore.modules.mam_prefs import NS_RETENTION
from xmppcore.modules.mam_resends import ORIGIN_FIELD, ResendIndex
from xmppcore.server.app import Server
from xmppcore.server.module_api import ModuleContext
from xmppcore.server.modules import load_modules
from xmppcore.storage import (
    ArchiveItem,
    ArchiveStore,
    JSONValue,
    MemoryDriver,
    SqliteDriver,
    StorageDriver,
    StorageError,
)
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_DISCO_INFO

MODULES = (*DEFAULT_MODULES, "roster", "offline", "blocking", "mam")
T0 = 1031699305.0  # 2002-09-10T23:08:25Z
STAMP0 = "2002-09-10T23:08:25.000Z"
DAY = 86400.0


# -- shared with test_mam_query.py ---------------------------------------------------------------
class Clock:
    """What ModuleContext.now() answers while a test runs."""

    def __init__(self) -> None:
        self.now = T0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    current = Clock()
    monkeypatch.setattr(ModuleContext, "now", staticmethod(lambda: current.now))
    return current


@asynccontextmanager
async def running(tmp_path: Path, *, options: Mapping[str, Any] | None = None,
                  modules: Sequence[str] = MODULES, driver: StorageDriver | None = None,
                  users: Sequence[str] = ("alice", "bob", "carol"),
                  ) -> AsyncIterator[ScenarioHarness]:
    """The harness with the mam module (``options`` are ``[modules.mam]``) and ``users`` created
    (on a ``driver`` that already holds them, none need be)."""
    data = {
        "domains": ["localhost"], "data_dir": str(tmp_path), "storage": {"driver": "memory"},
        "auth": {"scram_iterations": 4096}, "s2s": {"enabled": False},
        "modules": {"enabled": list(modules), "mam": dict(options or {})},
    }
    config = config_from_mapping(data, source="<test>", base_dir=tmp_path)
    server = Server(config, storage=driver or MemoryDriver())
    await server.open()
    for host in server.hosts.values():
        load_modules(server, host, config.modules.enabled, config.modules.options, source=config.source)
    try:
        harness = ScenarioHarness(server)
        for user in users:
            await harness.add_user(user)
        yield harness
    finally:
        await server.stop()


async def archived(h: ScenarioHarness, user: str) -> list[ArchiveItem]:
    """What the store holds for ``user``, oldest first."""
    return await h.server.storage.archive("localhost", "mam").query(user)


async def archive_ids(h: ScenarioHarness, user: str) -> list[str]:
    """The ids clients see for ``user``'s archived messages, oldest first."""
    key = await h.server.storage.keyval("localhost", "mam_id_key").get("")
    assert isinstance(key, str)
    codec = IdCodec(bytes.fromhex(key))
    return [codec.encode(item.id) for item in await archived(h, user)]


async def ask(h: ScenarioHarness, session: FakeSession, payload: str, type_: str = "get") -> Element:
    """Send an IQ to the session's own account and return the answer."""
    await h.send(session, f"<iq type='{type_}' id='ask'>{payload}</iq>")
    return session.take_one()


@pytest.fixture
async def h(tmp_path: Path, clock: Clock) -> AsyncIterator[ScenarioHarness]:
    async with running(tmp_path) as harness:
        yield harness


def stanza_id(by: str, value: str) -> str:
    return f"<stanza-id xmlns='{NS_SID}' by='{by}' id='{value}'/>"


# -- what is archivable ---------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "kept"), [
    ("<message type='chat'><body>hi</body></message>", True),
    ("<message><body>hi</body></message>", True),                       # no type: normal
    ("<message type='normal'><subject>s</subject><body>b</body></message>", True),
    ("<message type='chat'><store xmlns='urn:xmpp:hints'/><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>", True),
    ("<message type='normal'><subject>only a subject</subject></message>", False),
    ("<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>", False),
    ("<message type='chat'><received xmlns='urn:xmpp:receipts' id='x'/></message>", False),
    ("<message type='headline'><body>news</body></message>", False),
    ("<message type='groupchat'><body>room</body></message>", False),
    ("<message type='error'><body>x</body></message>", False),
    ("<message type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>", False),
    ("<message type='chat'><body>x</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>", False),
    ("<message type='chat'><body xmlns='urn:example'>not a body</body></message>", False),
])
def test_what_is_archivable(text: str, kept: bool) -> None:
    assert archivable(xml(text)) is kept


def test_only_ids_claiming_the_owner_are_removed() -> None:
    stanza = xml(f"<message><body>b</body>{stanza_id('Bob@LOCALHOST', 'forged')}{stanza_id('room@muc.example', 'r1')}"
                 f"{stanza_id('bob@localhost/pc', 'x')}<origin-id xmlns='{NS_SID}' id='o1'/></message>")
    stripped = without_claimed_ids(stanza, JID.parse("bob@localhost"))
    assert stripped == xml(f"<message><body>b</body>{stanza_id('room@muc.example', 'r1')}"
                           f"{stanza_id('bob@localhost/pc', 'x')}<origin-id xmlns='{NS_SID}' id='o1'/></message>")
    assert len(stanza.children) == 5  # the original is untouched
    assert without_claimed_ids(xml("<message><body>b</body></message>"), JID.parse("bob@localhost")) is None


@pytest.mark.parametrize("options", [{"default_policy": "sometimes"}, {"max_page": 0}, {"retention_days": -1}])
async def test_options_are_checked(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="modules.mam"):
        async with running(tmp_path, options=options):
            pass


# -- received messages: stamped, stripped, archived -------------------------------------------------
async def test_a_received_message_carries_its_archive_id(h: ScenarioHarness) -> None:
    alice, bob = await h.online("alice", "home"), await h.online("bob", "pc")
    await h.send(alice, f"<message to='bob@localhost' type='chat' id='m1'><body>hi</body>"
                        f"<origin-id xmlns='{NS_SID}' id='o1'/></message>")
    [archive_id] = await archive_ids(h, "bob")
    assert bob.take_xml() == expect(
        f"<message from='alice@localhost/home' to='bob@localhost' type='chat' id='m1'><body>hi</body>"
        f"<origin-id xmlns='{NS_SID}' id='o1'/>{stanza_id('bob@localhost', archive_id)}</message>")
    assert alice.take() == []  # XEP-0313 §3.5: the sender is not told the recipient's archive id
    [item] = await archived(h, "bob")
    assert (item.when, item.with_jid) == (T0, "alice@localhost")


async def test_forged_ids_in_our_name_are_removed_and_others_kept(h: ScenarioHarness) -> None:
    alice, bob = await h.online("alice", "home"), await h.online("bob", "pc")
    await h.send(alice, f"<message to='bob@localhost/pc' type='chat' id='m1'><body>hi</body>"
                        f"{stanza_id('bob@localhost', 'forged')}{stanza_id('room@muc.example', 'r1')}</message>")
    [archive_id] = await archive_ids(h, "bob")
    assert bob.take_xml() == expect(
        f"<message from='alice@localhost/home' to='bob@localhost/pc' type='chat' id='m1'><body>hi</body>"
        f"{stanza_id('room@muc.example', 'r1')}{stanza_id('bob@localhost', archive_id)}</message>")


async def test_forged_ids_are_removed_even_from_messages_not_archived(h: ScenarioHarness) -> None:
    alice, bob = await h.online("alice", "home"), await h.online("bob", "pc")
    await h.send(alice, f"<message to='bob@localhost' type='chat'>{stanza_id('bob@localhost', 'forged')}"
                        "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
    assert bob.take_xml() == expect("<message from='alice@localhost/home' to='bob@localhost' type='chat'>"
                                    "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
    assert await archived(h, "bob") == []


async def test_a_message_stored_offline_is_stamped_before_storage(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    await h.send(alice, "<message to='bob@localhost' type='chat' id='m1'><body>later</body></message>")
    [archive_id] = await archive_ids(h, "bob")
    bob = await h.connect("bob", "pc")
    await h.send(bob, "<presence/>")
    messages = [m for m in bob.take() if m.name == "message"]
    assert [m.find("stanza-id", NS_SID) == xml(stanza_id("bob@localhost", archive_id)) for m in messages] == [True]
    assert messages[0].findtext("body") == "later"


async def test_a_message_from_another_server_is_archived(h: ScenarioHarness) -> None:
    bob = await h.online("bob", "pc")
    romeo = JID.parse("romeo@montague.example/orchard")
    await h.server.router.route(xml("<message from='romeo@montague.example/orchard' to='bob@localhost' "
                                    "type='chat' id='r1'><body>remote</body></message>"), romeo, JID.parse("bob@localhost"))
    [archive_id] = await archive_ids(h, "bob")
    assert bob.take_xml() == expect("<message from='romeo@montague.example/orchard' to='bob@localhost' type='chat' "
                                    f"id='r1'><body>remote</body>{stanza_id('bob@localhost', archive_id)}</message>")
    assert [item.with_jid for item in await archived(h, "bob")] == ["romeo@montague.example"]


class BrokenArchiveDriver(MemoryDriver):
    """Memory storage whose MAM archive refuses every append."""

    def archive(self, host: str, store: str) -> ArchiveStore:
        inner = super().archive(host, store)
        if store != "mam":
            return inner

        class Broken:
            async def append(self, user: str, value: JSONValue, *, when: float, with_jid: str = "") -> str:
                raise StorageError("the disk is full")

            async def start_append(self, user: str, value: JSONValue, *, when: float,
                                   with_jid: str = "") -> tuple[str, asyncio.Future[None]]:
                raise StorageError("the disk is full")

            query, delete, count = inner.query, inner.delete, inner.count

        return Broken()


async def test_a_message_is_delivered_when_archiving_fails(tmp_path: Path, clock: Clock) -> None:
    async with running(tmp_path, driver=BrokenArchiveDriver()) as h:
        alice, bob = await h.online("alice", "home"), await h.online("bob", "pc")
        await h.send(alice, f"<message to='bob@localhost' type='chat' id='m1'><body>hi</body>"
                            f"{stanza_id('bob@localhost', 'forged')}</message>")
        assert alice.take() == []  # sent, although the sender's archive failed too
        assert bob.take_xml() == expect(
            "<message from='alice@localhost/home' to='bob@localhost' type='chat' id='m1'><body>hi</body></message>")


# -- sent messages -------------------------------------------------------------------------------
async def test_a_sent_message_is_in_the_senders_archive_unstamped(h: ScenarioHarness) -> None:
    alice, bob = await h.online("alice", "home"), await h.online("bob", "pc")
    await h.send(alice, f"<message to='bob@localhost' type='chat' id='m1'><body>hi</body>"
                        f"{stanza_id('alice@localhost', 'forged')}</message>")
    [item] = await archived(h, "alice")
    assert (item.with_jid, item.when) == ("bob@localhost", T0)
    assert isinstance(item.value, dict) and xml(item.value["xml"]) == xml(
        "<message from='alice@localhost/home' to='bob@localhost' type='chat' id='m1'><body>hi</body></message>")
    [bob_id] = await archive_ids(h, "bob")
    # The recipient sees what was sent (the sender's claim on its own archive is not ours to strip).
    assert bob.take_xml() == expect(
        f"<message from='alice@localhost/home' to='bob@localhost' type='chat' id='m1'><body>hi</body>"
        f"{stanza_id('alice@localhost', 'forged')}{stanza_id('bob@localhost', bob_id)}</message>")


async def test_a_message_to_another_server_is_archived_even_if_it_bounces(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    await h.send(alice, "<message to='juliet@capulet.example' type='chat' id='m1'><body>hi</body></message>")
    assert error_of(alice.take_one()) == ("cancel", "remote-server-not-found")  # no s2s in the harness
    assert [item.with_jid for item in await archived(h, "alice")] == ["juliet@capulet.example"]


async def test_a_message_to_oneself_is_archived_once(h: ScenarioHarness) -> None:
    home, phone = await h.online("alice", "home"), await h.online("alice", "phone")
    await h.send(home, "<message to='alice@localhost/phone' type='chat' id='n'><body>note</body></message>")
    [archive_id] = await archive_ids(h, "alice")
    assert phone.take_xml() == expect("<message from='alice@localhost/home' to='alice@localhost/phone' type='chat' "
                                      f"id='n'><body>note</body>{stanza_id('alice@localhost', archive_id)}</message>")
    assert [item.with_jid for item in await archived(h, "alice")] == ["alice@localhost"]


@pytest.mark.parametrize("text", [
    "<message to='bob@localhost' type='headline'><body>news</body></message>",
    "<message to='bob@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
    "<message to='bob@localhost' type='chat'><body>secret</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>",
    "<message to='bob@localhost/pc' type='groupchat'><body>room</body></message>",
])
async def test_messages_that_are_not_archived(h: ScenarioHarness, text: str) -> None:
    alice, _ = await h.online("alice", "home"), await h.online("bob", "pc")
    await h.send(alice, text)
    assert (await archived(h, "alice"), await archived(h, "bob")) == ([], [])


async def test_nothing_is_archived_for_an_account_that_does_not_exist(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    await h.send(alice, "<message to='nobody@localhost' type='chat'><body>hello?</body></message>")
    assert error_of(alice.take_one()) == ("cancel", "service-unavailable")
    assert await archived(h, "nobody") == []


async def test_a_blocked_message_is_archived_by_nobody(h: ScenarioHarness) -> None:
    alice, bob = await h.online("alice", "home"), await h.online("bob", "pc")
    await ask(h, bob, "<block xmlns='urn:xmpp:blocking'><item jid='alice@localhost'/></block>", "set")
    await h.send(alice, "<message to='bob@localhost' type='chat'><body>hi</body></message>")
    assert error_of(alice.take_one()) == ("cancel", "service-unavailable")  # XEP-0191 §3.3
    await ask(h, alice, "<block xmlns='urn:xmpp:blocking'><item jid='carol@localhost'/></block>", "set")
    await h.send(alice, "<message to='carol@localhost' type='chat'><body>hi</body></message>")
    assert await archived(h, "bob") == []
    assert [item.with_jid for item in await archived(h, "alice")] == ["bob@localhost"]  # sent, then refused


# -- preferences (XEP-0441) -------------------------------------------------------------------------
async def test_default_preferences(h: ScenarioHarness) -> None:
    bob = await h.online("bob", "pc")
    assert (await ask(h, bob, f"<prefs xmlns='{NS_MAM}'/>")) == xml(
        f"<iq type='result' id='ask' to='bob@localhost/pc'><prefs xmlns='{NS_MAM}' default='always'>"
        "<always/><never/></prefs></iq>")


async def test_preferences_decide_per_partner(h: ScenarioHarness) -> None:
    alice, bob = await h.online("alice", "home"), await h.online("bob", "pc")
    prefs = (f"<prefs xmlns='{NS_MAM}' default='never'><always><jid>alice@localhost</jid><jid>alice@localhost</jid>"
             "</always><never><jid>carol@localhost/desk</jid></never></prefs>")
    applied = await ask(h, bob, prefs, "set")
    assert applied == xml(f"<iq type='result' id='ask' to='bob@localhost/pc'><prefs xmlns='{NS_MAM}' default='never'>"
                          "<always><jid>alice@localhost</jid></always><never><jid>carol@localhost/desk</jid></never>"
                          "</prefs></iq>")
    carol_desk, carol_phone = await h.online("carol", "desk"), await h.online("carol", "phone")
    for sender in (alice, carol_desk, carol_phone):
        await h.send(sender, "<message to='bob@localhost' type='chat'><body>x</body></message>")
    await h.send(bob, "<message to='carol@localhost' type='chat'><body>x</body></message>")
    await h.send(bob, "<message to='alice@localhost/home' type='chat'><body>x</body></message>")
    assert [item.with_jid for item in await archived(h, "bob")] == ["alice@localhost", "alice@localhost"]
    h.clear()
    assert (await ask(h, bob, f"<prefs xmlns='{NS_MAM}'/>")) == applied


async def test_changed_preferences_apply_to_the_next_message(h: ScenarioHarness) -> None:
    # The preferences are cached per account (read for every message): a change must not wait.
    alice, bob = await h.online("alice", "home"), await h.online("bob", "pc")
    await h.send(alice, "<message to='bob@localhost' type='chat'><body>kept</body></message>")
    h.clear()
    await ask(h, bob, f"<prefs xmlns='{NS_MAM}' default='never'/>", "set")
    await h.send(alice, "<message to='bob@localhost' type='chat'><body>not kept</body></message>")
    h.clear()
    await ask(h, bob, f"<prefs xmlns='{NS_MAM}' default='always'/>", "set")
    await h.send(alice, "<message to='bob@localhost' type='chat'><body>kept again</body></message>")
    assert len(await archived(h, "bob")) == 2


async def test_roster_policy_archives_contacts_only(h: ScenarioHarness) -> None:
    alice, bob, carol = await h.online("alice", "home"), await h.online("bob", "pc"), await h.online("carol", "c")
    await ask(h, bob, "<query xmlns='jabber:iq:roster'><item jid='alice@localhost'/></query>", "set")
    await ask(h, bob, f"<prefs xmlns='{NS_MAM}' default='roster'/>", "set")
    h.clear()
    for sender in (alice, carol):
        await h.send(sender, "<message to='bob@localhost' type='chat'><body>x</body></message>")
    assert [item.with_jid for item in await archived(h, "bob")] == ["alice@localhost"]


@pytest.mark.parametrize(("prefs", "condition"), [
    (f"<prefs xmlns='{NS_MAM}' default='sometimes'/>", "bad-request"),
    (f"<prefs xmlns='{NS_MAM}'/>", "bad-request"),
    (f"<prefs xmlns='{NS_MAM}' default='always'><never><jid>not a jid@</jid></never></prefs>", "bad-request"),
    (f"<prefs xmlns='{NS_MAM}' default='always'><never>{'<jid>x@y</jid>' * 3}"
     + "".join(f"<jid>u{n}@example.org</jid>" for n in range(1001)) + "</never></prefs>", "policy-violation"),
])
async def test_bad_preferences_are_refused(h: ScenarioHarness, prefs: str, condition: str) -> None:
    bob = await h.online("bob", "pc")
    assert error_of(await ask(h, bob, prefs, "set")) == ("modify", condition)


async def test_the_account_advertises_mam_and_stanza_ids(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    answer = (await ask(h, alice, f"<query xmlns='{NS_DISCO_INFO}'/>")).find("query", NS_DISCO_INFO)
    assert answer is not None
    features = {f.get("var") for f in answer.findall("feature")}
    assert {NS_MAM, "urn:xmpp:mam:2#extended", NS_SID, NS_RETENTION} <= features


# -- retention ---------------------------------------------------------------------------------------
async def test_the_servers_retention_hides_and_purges_old_messages(tmp_path: Path, clock: Clock) -> None:
    async with running(tmp_path, options={"retention_days": 1}) as h:
        alice = await h.online("alice", "home")
        await h.send(alice, "<message to='bob@localhost' type='chat' id='old'><body>old</body></message>")
        clock.now = T0 + 1.5 * DAY
        await h.send(alice, "<message to='bob@localhost' type='chat' id='new'><body>new</body></message>")
        assert [item.when for item in await archived(h, "bob")] == [T0 + 1.5 * DAY]  # purged on append
        assert [item.when for item in await archived(h, "alice")] == [T0 + 1.5 * DAY]
        bob = await h.online("bob", "pc")
        assert (await ask(h, bob, f"<retention xmlns='{NS_RETENTION}'/>")) == xml(
            f"<iq type='result' id='ask' to='bob@localhost/pc'><retention xmlns='{NS_RETENTION}' days='0' max='1'/></iq>")


async def test_an_account_may_shorten_retention_but_not_extend_it(tmp_path: Path, clock: Clock) -> None:
    async with running(tmp_path, options={"retention_days": 3}) as h:
        alice, bob = await h.online("alice", "home"), await h.online("bob", "pc")
        asked = await ask(h, bob, f"<retention xmlns='{NS_RETENTION}' days='30'/>", "set")
        assert asked.find("retention", NS_RETENTION) == xml(f"<retention xmlns='{NS_RETENTION}' days='3' max='3'/>")
        await ask(h, bob, f"<retention xmlns='{NS_RETENTION}' days='1'/>", "set")
        await h.send(alice, "<message to='bob@localhost' type='chat'><body>one</body></message>")
        clock.now = T0 + 2 * DAY
        h.clear()
        await h.send(bob, f"<iq type='set' id='q'><query xmlns='{NS_MAM}'/></iq>")
        fin = bob.take_one().find("fin", NS_MAM)
        assert fin is not None and fin.get("complete") == "true"
        assert await archived(h, "bob") == [] and len(await archived(h, "alice")) == 1  # alice keeps 3 days
        assert error_of(await ask(h, bob, f"<retention xmlns='{NS_RETENTION}' days='-1'/>", "set")) == (
            "modify", "bad-request")


# -- account deletion --------------------------------------------------------------------------------
async def test_deleting_an_account_deletes_its_archive_and_settings(h: ScenarioHarness) -> None:
    alice, bob = await h.online("alice", "home"), await h.online("bob", "pc")
    await ask(h, bob, f"<prefs xmlns='{NS_MAM}' default='roster'/>", "set")
    await ask(h, bob, f"<retention xmlns='{NS_RETENTION}' days='7'/>", "set")
    await h.send(alice, "<message to='bob@localhost' type='chat'><body>x</body></message>")
    await h.send(bob, "<message to='alice@localhost' type='chat'><body>x</body></message>")
    await h.server.accounts.delete("localhost", "bob")
    assert await archived(h, "bob") == [] and len(await archived(h, "alice")) == 2
    for store in ("mam_prefs", "mam_retention"):
        assert await h.server.storage.keyval("localhost", store).get("bob") is None


# -- resent messages (XEP-0359 origin-id) -----------------------------------------------------------
def with_origin(to: str, origin: str, ident: str = "m", body: str = "hi") -> str:
    return (f"<message to='{to}' type='chat' id='{ident}'><body>{body}</body>"
            f"<origin-id xmlns='{NS_SID}' id='{origin}'/></message>")


def stamped_ids(session: FakeSession) -> list[str | None]:
    """The recipient's archive ids on the messages ``session`` received since the last take."""
    stamps = [message.find("stanza-id", NS_SID) for message in session.take() if message.name == "message"]
    return [None if stamp is None else stamp.get("id") for stamp in stamps]


async def test_a_resent_message_is_archived_once_on_each_side(h: ScenarioHarness) -> None:
    alice, bob = await h.online("alice", "home"), await h.online("bob", "pc")
    await h.send(alice, with_origin("bob@localhost", "o1", "m1"))
    first = stamped_ids(bob)
    # The stream broke before the ack: the client sends it again, on a new stream and with a new
    # 'id' (XEP-0198 §4), the same origin-id.
    await h.disconnect(alice)
    alice = await h.online("alice", "home")
    await h.send(alice, with_origin("bob@localhost", "o1", "m1-again"))
    [bob_id] = await archive_ids(h, "bob")
    assert first + stamped_ids(bob) == [bob_id, bob_id]  # one message, one id, however often it comes
    assert [item.with_jid for item in await archived(h, "alice")] == ["bob@localhost"]
    [item] = await archived(h, "bob")
    assert isinstance(item.value, dict) and xml(item.value["xml"]).get("id") == "m1"  # the original


async def test_an_origin_id_is_its_senders_and_its_conversations(h: ScenarioHarness) -> None:
    alice, bob, carol = await h.online("alice", "home"), await h.online("bob", "pc"), await h.online("carol", "c")
    await h.send(alice, with_origin("bob@localhost", "o1"))
    await h.send(carol, with_origin("bob@localhost", "o1"))   # another sender's o1
    await h.send(alice, with_origin("carol@localhost", "o1"))  # alice's o1, to someone else
    await h.send(bob, with_origin("alice@localhost", "o1"))    # bob's o1 in the same conversation
    assert [item.with_jid for item in await archived(h, "bob")] == [
        "alice@localhost", "carol@localhost", "alice@localhost"]
    assert [item.with_jid for item in await archived(h, "alice")] == [
        "bob@localhost", "carol@localhost", "bob@localhost"]
    assert len(set(await archive_ids(h, "bob"))) == 3


async def test_messages_without_an_origin_id_are_all_archived(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    for _ in range(2):
        await h.send(alice, "<message to='bob@localhost' type='chat' id='same'><body>hi</body></message>")
    assert (len(await archived(h, "alice")), len(await archived(h, "bob"))) == (2, 2)


async def test_a_resend_after_a_restart_is_recognised(tmp_path: Path, clock: Clock) -> None:
    driver = MemoryDriver()  # outlives the first server, as a database file would
    async with running(tmp_path, driver=driver) as h:
        alice = await h.online("alice", "home")
        await h.send(alice, with_origin("bob@localhost", "o1", "m1"))
        await h.send(alice, with_origin("bob@localhost", "o2", "m2"))
        bob_ids = await archive_ids(h, "bob")
    async with running(tmp_path, driver=driver, users=()) as h:
        alice, bob = await h.online("alice", "home"), await h.online("bob", "pc")
        await h.send(alice, with_origin("bob@localhost", "o1", "m1"))
        await h.send(alice, with_origin("bob@localhost", "o3", "m3"))
        assert stamped_ids(bob) == [bob_ids[0], (await archive_ids(h, "bob"))[2]]
        assert [len(await archived(h, user)) for user in ("alice", "bob")] == [3, 3]


@pytest.mark.parametrize("purged_first", [False, True])
async def test_a_resend_of_an_expired_message_is_archived_anew(tmp_path: Path, clock: Clock,
                                                               purged_first: bool) -> None:
    async with running(tmp_path, options={"retention_days": 1}) as h:
        alice, bob = await h.online("alice", "home"), await h.online("bob", "pc")
        await h.send(alice, with_origin("bob@localhost", "o1"))
        clock.now = T0 + 1.5 * DAY  # the original is past retention: no query shows it any more
        if purged_first:
            await h.send(alice, with_origin("bob@localhost", "o2"))  # its append deletes the original
        await h.send(alice, with_origin("bob@localhost", "o1"))
        *_, fresh = await archive_ids(h, "bob")
        assert stamped_ids(bob)[-1] == fresh
        assert [item.when for item in await archived(h, "bob")] == [T0 + 1.5 * DAY] * (1 + purged_first)


async def test_a_deleted_account_keeps_no_originals(h: ScenarioHarness) -> None:
    alice = await h.online("alice", "home")
    await h.send(alice, with_origin("bob@localhost", "o1"))
    await h.server.accounts.delete("localhost", "bob")
    await h.add_user("bob")
    await h.send(alice, with_origin("bob@localhost", "o1"))
    assert len(await archived(h, "bob")) == 1


async def test_two_copies_at_once_are_archived_once(tmp_path: Path, clock: Clock) -> None:
    # SQLite, whose calls really wait, so both copies are looked up before either is appended
    # unless the module keeps them apart.
    async with running(tmp_path, driver=SqliteDriver(str(tmp_path / "db.sqlite"))) as h:
        old, new = await h.online("alice", "old"), await h.online("alice", "new")
        await asyncio.gather(h.send(old, with_origin("bob@localhost", "o1", "m1")),
                             h.send(new, with_origin("bob@localhost", "o1", "m1")))
        assert (len(await archived(h, "alice")), len(await archived(h, "bob"))) == (1, 1)


@pytest.fixture
async def store() -> AsyncIterator[ArchiveStore]:
    driver = MemoryDriver()
    await driver.open()
    yield driver.archive("localhost", "mam")
    await driver.close()


async def test_the_index_looks_back_over_the_newest_entries(store: ArchiveStore) -> None:
    index = ResendIndex(store, lookback=4)
    ids = {}
    for n in range(1, 6):
        ids[n] = await store.append("bob", {ORIGIN_FIELD: f"alice@x/o{n}"}, when=T0, with_jid="alice@x")
        await store.append("bob", {"xml": "<message/>"}, when=T0, with_jid="alice@x")  # no key, still an entry
        await store.append("bob", {ORIGIN_FIELD: f"alice@x/o{n}"}, when=T0, with_jid="carol@x")  # elsewhere
    found = [await index.original("bob", "alice@x", f"alice@x/o{n}") for n in range(1, 6)]
    assert [None if item is None else item.id for item in found] == [None, None, None, ids[4], ids[5]]
    # From the first look on, the module notes what it appends instead of reading it again.
    later = await store.append("bob", {ORIGIN_FIELD: "alice@x/o6"}, when=T0, with_jid="alice@x")
    index.appended("bob", "alice@x", "alice@x/o6", later)
    for n, storage_id in ((6, later), (5, ids[5]), (4, ids[4])):
        item = await index.original("bob", "alice@x", f"alice@x/o{n}")
        assert item is not None and item.id == storage_id
    for n in range(7, 11):
        index.appended("bob", "alice@x", f"alice@x/o{n}",
                       await store.append("bob", {ORIGIN_FIELD: f"alice@x/o{n}"}, when=T0, with_jid="alice@x"))
    assert await index.original("bob", "alice@x", "alice@x/o4") is None  # six keyed entries came after it
    assert await index.original("bob", "alice@x", "alice@x/o10") is not None


async def test_the_index_reads_a_forgotten_conversation_again(store: ArchiveStore) -> None:
    index = ResendIndex(store, lookback=2, max_held=3)  # room for one conversation
    originals = {}
    for partner in ("a@x", "b@x", "c@x"):
        originals[partner] = await store.append("bob", {ORIGIN_FIELD: f"{partner}/o1"}, when=T0, with_jid=partner)
        await store.append("bob", {ORIGIN_FIELD: f"{partner}/o2"}, when=T0, with_jid=partner)
    for _ in range(2):
        for partner in ("a@x", "b@x", "c@x"):
            found = await index.original("bob", partner, f"{partner}/o1")
            assert found is not None and found.id == originals[partner]
            assert await index.original("bob", partner, "a@x/o3") is None
    assert await index.original("bob", "b@x", "a@x/o1") is None  # another conversation's key
    # Written by someone else: only a conversation read again from storage can know of it.
    written = await store.append("bob", {ORIGIN_FIELD: "a@x/o3"}, when=T0, with_jid="a@x")
    found = await index.original("bob", "a@x", "a@x/o3")  # a@x was forgotten for b@x and c@x
    assert found is not None and found.id == written

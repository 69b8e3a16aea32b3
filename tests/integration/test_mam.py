"""XEP-0313 Message Archive Management through the real server on loopback, with SQLite storage.

Alice sends bob 1,000 real messages over her stream; bob receives each live with its XEP-0359
stanza-id, then pages through his archive forwards and backwards with exact RSM counts, indexes
and ``complete``; alice's archive holds the same 1,000 as sent.  The server is then stopped and
started again on the same data directory, and the archive (ids included) is still there.  A
slixmpp client's own XEP-0313 plugin pages through an archive too.

Raw clients (:mod:`.rawclient`) say exactly what goes over the wire.  Nothing sleeps: every wait
is for a stanza, with a timeout.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from xmppcore.config import Config
from xmppcore.stanza.rsm import NS_RSM, RsmPage, parse_page
from xmppcore.xml.element import Element

from .clients import SlixPool
from .conftest import PASSWORD, RunningServer, make_config, start_server
from .rawclient import RawClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

MAM = "urn:xmpp:mam:2"
SID = "urn:xmpp:sid:0"
FORWARD = "urn:xmpp:forward:0"
COUNT = 1000

_ids = (f"q{n}" for n in itertools.count(1))


def mam_config(tmp_path: Path) -> Config:
    config = make_config(tmp_path)  # SQLite in tmp_path
    return dataclasses.replace(config, modules=dataclasses.replace(
        config.modules, enabled=(*config.modules.enabled, "mam")))


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[RunningServer]:
    server = await start_server(config)
    try:
        yield server
    finally:
        await server.server.stop()


async def login(server: RunningServer, user: str, resource: str) -> RawClient:
    return await RawClient.login(server.host, server.starttls_port, server.cafile, user, PASSWORD, resource)


async def next_stanza(client: RawClient, name: str) -> Element:
    """The next stanza called ``name``, skipping others (presence echoes and the like)."""
    return await client.wait_for(lambda el: el.name == name)


async def query(client: RawClient, rsm: str) -> tuple[list[Element], RsmPage, str | None]:
    """One archive query of the client's own account: its results (in arrival order), the RSM
    description of the page and fin's 'complete'.  Results must all arrive before the IQ result."""
    query_id = next(_ids)
    await client.send(f"<iq type='set' id='{query_id}'><query xmlns='{MAM}' queryid='{query_id}'>"
                      f"<set xmlns='{NS_RSM}'>{rsm}</set></query></iq>")
    results: list[Element] = []
    while True:
        stanza = await client.wait_for(lambda el: el.name in ("message", "iq"))
        if stanza.name == "iq":
            break
        result = stanza.find("result", MAM)
        assert result is not None and result.get("queryid") == query_id, stanza
        results.append(result)
    assert (stanza.get("id"), stanza.get("type")) == (query_id, "result"), stanza
    fin = stanza.find("fin", MAM)
    set_el = None if fin is None else fin.find("set", NS_RSM)
    assert fin is not None and set_el is not None, stanza
    return results, parse_page(set_el), fin.get("complete")


def ids_and_bodies(results: list[Element]) -> list[tuple[str, str | None]]:
    found = []
    for result in results:
        forwarded = result.find("forwarded", FORWARD)
        message = None if forwarded is None else forwarded.find("message", "jabber:client")
        assert message is not None, result
        found.append((result.get("id") or "", message.findtext("body")))
    return found


def expected(ids: list[str], start: int, stop: int) -> list[tuple[str, str | None]]:
    return [(ids[n], str(n)) for n in range(start, stop)]


def page_of(ids: list[str], start: int, stop: int) -> RsmPage:
    return RsmPage(first=ids[start], first_index=start, last=ids[stop - 1], count=COUNT, exact=True)


async def converse(server: RunningServer) -> list[str]:
    """Alice sends bob COUNT messages in one burst; the stanza-ids bob received them with."""
    alice, bob = await login(server, "alice", "home"), await login(server, "bob", "pc")
    await bob.send("<presence/>")
    await next_stanza(bob, "presence")  # his own presence, echoed: he is available
    burst = "".join(f"<message to='bob@localhost' type='chat' id='m{n}'><body>{n}</body></message>"
                    for n in range(COUNT))
    await alice.send(burst)
    received = []
    for n in range(COUNT):
        message = await next_stanza(bob, "message")
        stanza_id = message.find("stanza-id", SID)
        assert message.findtext("body") == str(n) and stanza_id is not None and stanza_id.get("by") == "bob@localhost"
        received.append(stanza_id.get("id") or "")
    assert len(set(received)) == COUNT
    _, sent, complete = await query(alice, "<max>0</max>")  # XEP-0059 §2.7: just the count
    assert (sent, complete) == (RsmPage(count=COUNT, exact=True), "false")
    alice.close()
    bob.close()
    return received


async def test_paging_over_a_thousand_messages_both_ways_and_across_a_restart(tmp_path: Path) -> None:
    config = mam_config(tmp_path)
    async with running(config) as server:
        await server.add_user("alice")
        await server.add_user("bob")
        ids = await converse(server)
        bob = await login(server, "bob", "phone")
        for start in range(0, COUNT, 250):  # forwards, the server's largest page
            after = "" if start == 0 else f"<after>{ids[start - 1]}</after>"
            results, rsm, complete = await query(bob, f"<max>250</max>{after}")
            assert ids_and_bodies(results) == expected(ids, start, start + 250)
            assert (rsm, complete) == (page_of(ids, start, start + 250), "true" if start == 750 else "false")
        before = ""
        for stop in (1000, 750, 500, 250):  # backwards from the last page; 300 is capped to 250
            start = stop - 250
            results, rsm, complete = await query(bob, f"<max>300</max><before>{before}</before>")
            assert ids_and_bodies(results) == expected(ids, start, stop)
            assert (rsm, complete) == (page_of(ids, start, stop), "true" if start == 0 else "false")
            before = ids[start]
        bob.close()

    async with running(config) as server:  # the same SQLite file, a new process state
        bob = await login(server, "bob", "pc")
        results, rsm, complete = await query(bob, "<max>10</max><before/>")
        assert (ids_and_bodies(results), rsm, complete) == (expected(ids, 990, 1000), page_of(ids, 990, 1000), "false")
        results, rsm, complete = await query(bob, f"<max>2</max><after>{ids[499]}</after>")
        assert (ids_and_bodies(results), rsm, complete) == (expected(ids, 500, 502), page_of(ids, 500, 502), "false")
        bob.close()


async def test_slixmpp_pages_through_the_archive_with_its_own_plugin(tmp_path: Path) -> None:
    async with running(mam_config(tmp_path)) as server, SlixPool(server) as pool:
        await server.add_user("alice")
        await server.add_user("bob")
        alice = await pool.login("alice", "home")
        bob = await pool.login("bob", "pc", plugins=("xep_0359", "xep_0313"))
        await bob.announce()
        for n in range(25):
            alice.send_message("bob@localhost", str(n))
        live = [(await bob.receive(str(n)))["stanza_id"]["id"] for n in range(25)]
        # Three pages of at most ten; slixmpp stops when first index + page size reaches <count/>.
        archived = [(m["mam_result"]["id"], m["mam_result"]["forwarded"]["stanza"]["body"])
                    async for m in bob.xmpp.plugin["xep_0313"].iterate(rsm={"max": 10})]
        assert archived == [(live[n], str(n)) for n in range(25)]

"""Durable acknowledgement (XEP-0198 §4, issue 7): what the server acknowledged survives SIGKILL.

The real server runs as a subprocess (``python -m xmppcore.cli serve``) on SQLite in a
temporary directory.  Four clients of alice, each with stream management enabled, send bob —
who is offline — 10,000 chat messages between them, each with a unique id and an XEP-0359
``<origin-id/>``, asking for an acknowledgement every :data:`ACK_EVERY` messages.  At 3 to 5
points chosen by a seeded random generator the server is killed with SIGKILL and started again;
every client then logs in afresh (no resumption) and sends again everything after the last 'h'
it was told: messages sent but not acknowledged are resent, some of which the server had already
stored.  Once every message is acknowledged the server is killed once more and restarted, bob
logs in, and:

- every acknowledged message reaches him from offline storage, none twice (ids counted and
  compared; the resent copies were recognised by their origin-id, see
  docs/decisions/0003-durability.md);
- every one of them is in his XEP-0313 archive exactly once, paged through with XEP-0059, and so
  in alice's: no origin-id twice in either (modules/mam_resends.py recognises the resent copies);
- the XEP-0359 stanza-id each message reached him with is its id in his archive, also for a
  message resent after it was archived.

The seed is printed on failure; ``XMPPCORE_CRASH_SEED=<n>`` replays a run.  Nothing sleeps:
kills are triggered by the number of messages sent, and every wait is for the server.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pytest

from xmppcore.stanza.rsm import NS_RSM, parse_page
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT

from .conftest import PASSWORD
from .rawclient import RawClient
from .smclient import SmSender

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

TOTAL = 10_000
SENDERS = 4
ACK_EVERY = 50      # an <r/> after this many messages
WINDOW = 600        # messages a sender lets go unacknowledged before it waits
SERVER_WAIT = 30.0  # seconds for the server to start, acknowledge or answer
MAM = "urn:xmpp:mam:2"
FORWARD = "urn:xmpp:forward:0"
SID = "urn:xmpp:sid:0"
_COMMAND = (sys.executable, "-m", "xmppcore.cli")
_LISTENING = re.compile(r"c2s \(STARTTLS\) on (?P<address>\S+):(?P<port>\d+)$")


# -- the server process ----------------------------------------------------------------------------
CONFIG = """\
domains = ["localhost"]
data_dir = "{data}"
log_level = "warning"

[c2s]
bind = ["127.0.0.1"]
port = 0
direct_tls_port = -1

[s2s]
enabled = false
port = -1
direct_tls_port = -1

[auth]
scram_iterations = 4096
failure_delay = 0.0
failure_delay_max = 0.0

[modules.offline]
max_messages = {max_messages}
"""


class ServerProcess:
    """``xmppcore serve`` as a child process that can be killed and started again."""

    def __init__(self, tmp_path: Path) -> None:
        self.data = tmp_path / "data"
        self.config = tmp_path / "xmppcore.toml"
        self.config.write_text(CONFIG.format(data=self.data, max_messages=2 * TOTAL), encoding="utf-8")
        self.log = tmp_path / "serve.log"
        self.cafile = self.data / "cert.pem"
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0
        self.generation = 0           # how many times it was started
        self.up = asyncio.Event()     # set while a started process is serving
        self._changed = asyncio.Event()

    def xmppcore(self, *args: str) -> None:
        """Run an account command of the CLI against the data directory."""
        done = subprocess.run([*_COMMAND, *args, "--config", str(self.config)], capture_output=True,
                              text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr

    def _open_log(self) -> BinaryIO:
        return open(self.log, "ab")  # closed by the caller's with

    async def start(self) -> None:
        with self._open_log() as log:
            self.process = await asyncio.create_subprocess_exec(
                *_COMMAND, "serve", "--config", str(self.config),
                stdout=asyncio.subprocess.PIPE, stderr=log)
        assert self.process.stdout is not None
        while True:
            line = (await asyncio.wait_for(self.process.stdout.readline(), SERVER_WAIT)).decode().strip()
            assert line, f"serve exited before it was ready; see {self.log}"
            if match := _LISTENING.search(line):
                self.port = int(match["port"])
            elif line.startswith("xmppcore: serving "):
                break
        self.generation += 1
        self.up.set()
        self._changed.set()

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no goodbye."""
        assert self.process is not None
        self.up.clear()
        self.process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.process.wait(), SERVER_WAIT)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def started_since(self, generation: int) -> None:
        """Wait until a start later than ``generation`` is serving."""
        async def changed() -> None:
            while self.generation <= generation or not self.up.is_set():
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(changed(), SERVER_WAIT)

    def alive(self, generation: int) -> bool:
        return self.generation == generation and self.up.is_set()


class Crasher:
    """Kills and restarts the server when the messages sent pass the planned points."""

    def __init__(self, server: ServerProcess, points: list[int]) -> None:
        self.server = server
        self.points = collections.deque(points)
        self.sent = 0
        self.kills = 0
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def counted(self) -> None:
        """One more message written to a live server's socket."""
        if not self.server.up.is_set():
            return
        self.sent += 1
        if self.points and self.sent >= self.points[0]:
            self.points.popleft()
            task = asyncio.ensure_future(self.crash())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def crash(self) -> None:
        async with self._lock:
            await self.server.kill()
            self.kills += 1
            await self.server.start()

    async def settled(self) -> None:
        for task in list(self._tasks):
            await task


# -- the senders -----------------------------------------------------------------------------------
@dataclass
class Sender:
    """One of alice's clients and its share of the messages."""

    resource: str
    ids: list[str]
    acked: int = 0       # ids[:acked] were acknowledged by the server
    highest_sent: int = 0
    resent: int = 0      # messages written again after a crash
    sessions: int = 0
    violations: list[str] = field(default_factory=list)

    def message(self, n: int) -> Element:
        ident = self.ids[n]
        stanza = Element("message", NS_CLIENT, {"to": "bob@localhost", "type": "chat", "id": ident})
        stanza.add("body", text=f"body of {ident}")
        stanza.add("origin-id", SID, {"id": f"origin-{ident}"})
        return stanza


async def run_sender(sender: Sender, server: ServerProcess, crasher: Crasher) -> None:
    """Send every message until acknowledged, logging in again after each crash."""
    while sender.acked < len(sender.ids):
        await server.up.wait()
        generation = server.generation
        try:
            sm = await SmSender.login("127.0.0.1", server.port, server.cafile, "alice", PASSWORD, sender.resource)
        except (TimeoutError, OSError, AssertionError):
            if server.alive(generation) and server.process is not None and server.process.returncode is None:
                raise  # the server is up: a real failure
            await server.started_since(generation)
            continue
        sender.sessions += 1
        base = sender.acked
        try:
            await send_from(sm, sender, base, crasher)
        finally:
            sender.acked = max(sender.acked, base + sm.acked)
            sender.violations += sm.violations
            sm.close()


async def send_from(sm: SmSender, sender: Sender, base: int, crasher: Crasher) -> None:
    """Send ``sender``'s messages from ``base`` on one stream until done or the stream ends."""
    n = base
    while n < len(sender.ids) and not sm.ended.is_set():
        if n < sender.highest_sent:
            sender.resent += 1
        await sm.send(sender.message(n))
        n += 1
        sender.highest_sent = max(sender.highest_sent, n)
        crasher.counted()
        if (n - base) % ACK_EVERY == 0:
            await sm.request_ack()
        if sm.sent - sm.acked >= WINDOW:
            await sm.wait_acked(sm.sent - WINDOW // 2, SERVER_WAIT)
    if not sm.ended.is_set():
        await sm.request_ack()
        await sm.wait_acked(sm.sent, SERVER_WAIT)


# -- the recipient ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Archived:
    """One result of an archive query."""

    ident: str            # the message's 'id'
    origin: str | None    # its XEP-0359 origin-id
    archive_id: str       # the result's id: the message's id in the archive (XEP-0313 §4.2)


async def receive_offline(server: ServerProcess) -> dict[str, list[str | None]]:
    """Bob logs in and takes his offline messages: per id, the stanza-ids (by bob) it came with,
    once per arrival.

    The end is a message alice sends once delivery has begun: a live message waits for the
    stored ones (modules/offline.py), so it arrives after the last of them.
    """
    bob = await RawClient.login("127.0.0.1", server.port, server.cafile, "bob", PASSWORD, "inbox")
    await bob.send("<presence/>")
    received: dict[str, list[str | None]] = collections.defaultdict(list)
    first = await bob.wait_for(lambda el: el.name == "message", SERVER_WAIT)
    alice = await RawClient.login("127.0.0.1", server.port, server.cafile, "alice", PASSWORD, "last")
    await alice.send("<message to='bob@localhost' type='chat' id='the-end'><body>that was all</body></message>")
    message = first
    while message.get("id") != "the-end":
        ident = message.get("id") or ""
        origin = message.find("origin-id", SID)
        assert message.findtext("body") == f"body of {ident}", message
        assert origin is not None and origin.get("id") == f"origin-{ident}", message
        stamps = [el.get("id") for el in message.findall("stanza-id", SID) if el.get("by") == "bob@localhost"]
        assert len(stamps) == 1, message  # XEP-0359 §3: at most one per 'by'
        received[ident].append(stamps[0])
        message = await bob.wait_for(lambda el: el.name == "message", SERVER_WAIT)
    bob.close()
    alice.close()
    return received


async def archived(server: ServerProcess, user: str) -> list[Archived]:
    """What ``user``'s archive holds, oldest first, paged through with RSM (XEP-0059 §2.2)."""
    client = await RawClient.login("127.0.0.1", server.port, server.cafile, user, PASSWORD, "archive")
    found: list[Archived] = []
    after = ""
    for page in range(1, 2 * TOTAL):
        rsm = "<max>250</max>" + (f"<after>{after}</after>" if after else "")
        await client.send(f"<iq type='set' id='p{page}'><query xmlns='{MAM}' queryid='p{page}'>"
                          f"<set xmlns='{NS_RSM}'>{rsm}</set></query></iq>")
        while (stanza := await client.wait_for(lambda el: el.name in ("message", "iq"), SERVER_WAIT)).name == "message":
            result = stanza.find("result", MAM)
            inner = None if result is None else result.find("forwarded", FORWARD)
            original = None if inner is None else inner.find("message", NS_CLIENT)
            assert result is not None and original is not None, stanza
            origin = original.find("origin-id", SID)
            found.append(Archived(original.get("id") or "", None if origin is None else origin.get("id"),
                                  result.get("id") or ""))
        assert stanza.get("type") == "result", stanza
        fin = stanza.find("fin", MAM)
        set_el = None if fin is None else fin.find("set", NS_RSM)
        assert fin is not None and set_el is not None, stanza
        if fin.get("complete") == "true":
            break
        after = parse_page(set_el).last or ""
    client.close()
    return found


def repeated(values: list[str]) -> list[str]:
    return sorted(value for value, times in collections.Counter(values).items() if times > 1)


# -- the test --------------------------------------------------------------------------------------
def message_ids() -> Iterator[list[str]]:
    for s in range(SENDERS):
        yield [f"s{s}-m{n}" for n in range(s, TOTAL, SENDERS)]


async def test_every_acknowledged_message_survives_sigkill_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("XMPPCORE_CRASH_SEED") or random.SystemRandom().randrange(1 << 32))
    rng = random.Random(seed)
    points = sorted(rng.sample(range(200, TOTAL - 200), rng.randint(3, 5)))
    server = ServerProcess(tmp_path)
    try:
        await crash_and_check(server, points, seed)
    except BaseException:
        print(f"crash test seed {seed} (kills after {points} messages sent); "
              f"replay with XMPPCORE_CRASH_SEED={seed}; server log: {server.log}")
        raise
    finally:
        await server.stop()


async def crash_and_check(server: ServerProcess, points: list[int], seed: int) -> None:
    began = time.monotonic()
    for user in ("alice", "bob"):
        password = server.config.parent / "password"
        password.write_text(PASSWORD + "\n", encoding="utf-8")
        await asyncio.to_thread(server.xmppcore, "adduser", f"{user}@localhost", "--password-file", str(password))
    await server.start()
    crasher = Crasher(server, points)
    senders = [Sender(f"s{s}", ids) for s, ids in enumerate(message_ids())]
    await asyncio.gather(*(run_sender(sender, server, crasher) for sender in senders))
    await crasher.settled()
    await crasher.crash()  # and once more, with everything acknowledged
    sent = time.monotonic()

    acknowledged = [ident for sender in senders for ident in sender.ids[:sender.acked]]
    received = await receive_offline(server)
    arrivals = sum(len(stamps) for stamps in received.values())
    delivered = time.monotonic()
    archives = {user: await archived(server, user) for user in ("bob", "alice")}
    duplicates = sorted(ident for ident, stamps in received.items() if len(stamps) > 1)
    copies = {user: repeated([entry.ident for entry in entries]) for user, entries in archives.items()}
    origins = {user: repeated([entry.origin for entry in entries if entry.origin is not None])
               for user, entries in archives.items()}
    print(f"\ncrash test (seed {seed}): {crasher.kills} kills after {points} messages sent; "
          f"{len(acknowledged)} acknowledged, {sum(s.resent for s in senders)} resent, "
          f"{sum(s.sessions for s in senders)} sessions; {arrivals} received offline, "
          f"{len(duplicates)} duplicates; archive entries: bob {len(archives['bob'])}, alice "
          f"{len(archives['alice'])} ({len(copies['bob'])}/{len(copies['alice'])} messages twice, "
          f"{len(origins['bob'])}/{len(origins['alice'])} origin-ids twice); {sent - began:.1f} s sending, "
          f"{delivered - sent:.1f} s delivering, {time.monotonic() - delivered:.1f} s paging both archives")

    assert [v for s in senders for v in s.violations] == []
    assert crasher.kills == len(points) + 1
    assert len(acknowledged) == TOTAL
    assert duplicates == []
    assert set(acknowledged) - set(received) == set(), "acknowledged but never delivered"
    assert set(received) - set(acknowledged) == set(), "delivered but never sent"
    assert arrivals == TOTAL
    # Each acknowledged message once in each archive (and "the-end", which has no origin-id).
    for user, entries in archives.items():
        assert origins[user] == [], f"origin-ids archived twice for {user}"
        assert copies[user] == [], f"messages archived twice for {user}"
        assert {entry.ident for entry in entries} == {*acknowledged, "the-end"}, f"{user}'s archive"
    archive_ids = {entry.ident: entry.archive_id for entry in archives["bob"]}
    assert {ident: stamps[0] for ident, stamps in received.items()} == {
        ident: archive_ids[ident] for ident in received}, "delivered with another id than archived"

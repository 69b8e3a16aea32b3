"""Accounts and rosters for the benchmark, made over XMPP itself (for ejabberd and Prosody).

Starting one ``ejabberdctl``/``prosodyctl`` process per account takes about a second each, far
too slow for the 10,000 accounts of the ``idle`` scenario, so:

- ``register_accounts``: XEP-0077 In-Band Registration (§3.1) before authentication, a few
  streams at once, each pipelining a batch of ``<iq type='set'>`` registrations and waiting for
  their answers; an account that exists already (``<conflict/>``) counts as made.  STARTTLS
  first when the target asks for it (§10: the password travels in the clear otherwise).
- ``provision_rosters``: the ``presence`` scenario's ring of mutual subscriptions made the way a
  client makes them (RFC 6121 §3): every user logs in, sends ``subscribe`` to each of its
  contacts and answers every ``subscribe`` it receives with ``subscribed``; once every approval
  arrived, a roster get per user (§2.1.3) checks that each contact is there with subscription
  ``both`` and nothing else is.

Both run on loopback only (``Target`` refuses anything else) and are bounded in time.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Sequence

from bench.loadgen import Client, Target, login_all
from bench.scenarios_presence import PresenceParams, contacts_of
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT
from xmppcore.xml.parser import StreamFooter, StreamParser
from xmppcore.xml.serializer import escape_attr, escape_text

__all__ = ["ProvisionError", "provision_rosters", "register_accounts"]

NS_REGISTER = "jabber:iq:register"
NS_ROSTER = "jabber:iq:roster"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"


class ProvisionError(Exception):
    """Accounts or rosters could not be made as asked (the reason is the message)."""


class _RawStream:
    """A client stream before authentication on asyncio streams, parsed by our stream parser."""

    def __init__(self, target: Target, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._target = target
        self._reader = reader
        self._writer = writer
        self._parser = StreamParser()
        self._pending: list[Element] = []

    @classmethod
    async def open(cls, target: Target, timeout: float) -> _RawStream:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(target.host, target.port), timeout)
        stream = cls(target, reader, writer)
        features = await stream._restart(timeout)
        if features.find("starttls", NS_TLS) is not None and target.starttls:
            stream.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            if (await stream.stanza(timeout)).name != "proceed":
                raise ProvisionError(f"{target.host}:{target.port} refused STARTTLS")
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # loopback only
            await writer.start_tls(context, server_hostname=target.domain)
            stream._parser = StreamParser()
            await stream._restart(timeout)
        return stream

    async def _restart(self, timeout: float) -> Element:
        """Send our stream header (RFC 6120 §4.2); return the server's stream features."""
        self.send(f"<?xml version='1.0'?><stream:stream to='{escape_attr(self._target.domain)}' version='1.0' "
                  "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
        features = await self.stanza(timeout)
        if features.name != "features":
            raise ProvisionError(f"expected stream features, got <{features.name}>")
        return features

    def send(self, text: str) -> None:
        self._writer.write(text.encode())

    async def stanza(self, timeout: float) -> Element:
        """The next top-level element the server sends."""
        while not self._pending:
            data = await asyncio.wait_for(self._reader.read(65536), timeout)
            if not data:
                raise ProvisionError("the server closed the stream")
            for event in self._parser.feed(data):
                if isinstance(event, Element):
                    self._pending.append(event)
                elif isinstance(event, StreamFooter):
                    raise ProvisionError("the server ended the stream")
        return self._pending.pop(0)

    async def close(self) -> None:
        self._writer.write(b"</stream:stream>")
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), 5)
        except (OSError, TimeoutError):
            pass  # closing anyway


def _registration(target: Target, index: int) -> str:
    username = escape_text(f"{target.user_prefix}{index}")
    return (f"<iq type='set' id='reg{index}'><query xmlns='{NS_REGISTER}'><username>{username}</username>"
            f"<password>{escape_text(target.password)}</password></query></iq>")


async def _register_batch(target: Target, indices: Sequence[int], timeout: float) -> int:
    """Register ``indices`` pipelined on one new stream; how many were new (not conflicts).
    A stream per batch: servers end streams that take long to authenticate (ejabberd: 30 s)."""
    stream, made = await _RawStream.open(target, timeout), 0
    try:
        stream.send("".join(_registration(target, i) for i in indices))
        waiting = {f"reg{i}" for i in indices}
        while waiting:
            reply = await stream.stanza(timeout)
            if reply.name != "iq" or reply.get("id") not in waiting:
                continue
            waiting.discard(reply.get("id") or "")
            if reply.get("type") == "result":
                made += 1
                continue
            error = reply.find("error", NS_CLIENT)
            if error is None or error.find("conflict", NS_STANZAS) is None:
                raise ProvisionError(f"registering {reply.get('id')} on {target.domain} failed: "
                                     f"{[e.name for e in error.elements()] if error is not None else reply.get('type')}")
    finally:
        await stream.close()
    return made


async def register_accounts(target: Target, indices: Sequence[int], *, streams: int = 4, batch: int = 50,
                            timeout: float = 60.0) -> int:
    """XEP-0077 registration of ``target.jid(i)`` for each index with ``target.password``, on at
    most ``streams`` streams at once; returns how many accounts were new."""
    gate = asyncio.Semaphore(streams)

    async def one(chunk: Sequence[int]) -> int:
        async with gate:
            return await _register_batch(target, chunk, timeout)
    batches = [indices[k:k + batch] for k in range(0, len(indices), batch)]
    return sum(await asyncio.gather(*(one(chunk) for chunk in batches)))


# -- rosters ------------------------------------------------------------------------------------
def _bare(jid: str | None) -> str:
    return (jid or "").partition("/")[0]


class _Subscriber:
    """One user's side of the subscription exchange: answers requests, collects approvals."""

    def __init__(self, client: Client, on_approval: Callable[[], None]) -> None:
        self.client = client
        self.approved_by: set[str] = set()
        self.roster: dict[str, str] | None = None  # contact -> subscription, from the last roster get
        self.roster_answered = asyncio.Event()
        self._on_approval = on_approval
        client.on_stanza = self.handle

    def handle(self, stanza: Element) -> None:
        core, kind = self.client.core, stanza.get("type")
        if stanza.name == "presence" and kind == "subscribe":  # RFC 6121 §3.1.4: approve
            core.send_stanza(Element("presence", NS_CLIENT, {"to": _bare(stanza.get("from")), "type": "subscribed"}))
        elif stanza.name == "presence" and kind == "subscribed":
            contact = _bare(stanza.get("from"))
            if contact not in self.approved_by:
                self.approved_by.add(contact)
                self._on_approval()
        elif stanza.name == "iq" and kind == "set" and stanza.find("query", NS_ROSTER) is not None:
            core.send_stanza(Element("iq", NS_CLIENT, {"type": "result", "id": stanza.get("id") or ""}))  # §2.1.6
        elif stanza.name == "iq" and stanza.get("id") == "roster-check":
            query = stanza.find("query", NS_ROSTER)
            items = query.findall("item", NS_ROSTER) if query is not None else []
            self.roster = {item.get("jid") or "": f"{item.get('subscription')}{' ask' if item.get('ask') else ''}"
                           for item in items}
            self.roster_answered.set()

    def send(self, stanza: Element) -> None:
        self.client.core.send_stanza(stanza)
        self.client.write(self.client.core.data_to_send())

    async def fetch_roster(self, timeout: float) -> dict[str, str]:
        self.roster_answered.clear()
        request = Element("iq", NS_CLIENT, {"type": "get", "id": "roster-check"})
        request.add("query", NS_ROSTER)
        self.send(request)
        await asyncio.wait_for(self.roster_answered.wait(), timeout)
        assert self.roster is not None
        return self.roster


async def provision_rosters(target: Target, params: PresenceParams, *, timeout: float = 600.0) -> None:
    """Make each of users 1..``params.users`` subscribed both ways with its ``contacts_of``; check it."""
    deadline = time.monotonic() + timeout
    clients = await login_all(target, range(1, params.users + 1), params.concurrency)
    try:
        expected = params.users * params.contacts
        approvals, all_approved = [0], asyncio.Event()

        def approved() -> None:
            approvals[0] += 1
            if approvals[0] >= expected:
                all_approved.set()
        users = [_Subscriber(client, approved) for client in clients]
        # Only resources that asked for the roster get subscription requests (RFC 6121 §3.1.3;
        # Prosody keeps to that): every user asks first.
        gate = asyncio.Semaphore(params.concurrency)

        async def interested(user: _Subscriber) -> None:
            async with gate:
                await user.fetch_roster(max(deadline - time.monotonic(), 0.1))
        await asyncio.gather(*(interested(user) for user in users))
        for index, user in enumerate(users, 1):
            for contact in contacts_of(index, params):
                user.client.core.send_stanza(Element("presence", NS_CLIENT, {"to": target.jid(contact), "type": "subscribe"}))
            user.client.write(user.client.core.data_to_send())
        try:
            await asyncio.wait_for(all_approved.wait(), max(deadline - time.monotonic(), 0.1))
        except TimeoutError:
            raise ProvisionError(f"{approvals[0]} of {expected} subscriptions approved in {timeout:g} s") from None
        await _check_rosters(target, params, users, deadline)
    finally:
        for client in clients:
            client.close()


async def _check_rosters(target: Target, params: PresenceParams, users: list[_Subscriber], deadline: float) -> None:
    """A roster get per user: every contact with subscription ``both``, no pending ask, no one else."""
    gate = asyncio.Semaphore(params.concurrency)

    async def wrong(index: int, user: _Subscriber) -> str | None:
        want = {target.jid(c): "both" for c in contacts_of(index, params)}
        async with gate:
            roster = await user.fetch_roster(max(deadline - time.monotonic(), 0.1))
        return None if roster == want else f"{target.jid(index)} has {sorted(roster.items())[:4]}..."

    problems = [p for p in await asyncio.gather(*(wrong(i, u) for i, u in enumerate(users, 1))) if p]
    if problems:
        raise ProvisionError(f"{len(problems)} of {len(users)} rosters incomplete; first: {problems[0]}")

"""RFC 6120 §3.2, RFC 2782 and XEP-0368 target discovery, against a real DNS server on loopback."""

from __future__ import annotations

import asyncio
import math
import random
import typing
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

import dns.message
import dns.rcode
import dns.rrset
import pytest

from xmppcore.transport.resolver import ServerResolver, Target

DOMAIN = "example.org"
XMPP = f"_xmpp-server._tcp.{DOMAIN}."
XMPPS = f"_xmpps-server._tcp.{DOMAIN}."


class DnsServer(asyncio.DatagramProtocol):
    """Answers SRV questions from ``zone``: name -> SRV rdata texts ([] = no data); other
    names get NXDOMAIN. ``hold`` names are answered only once a question for every one of
    them has arrived; ``silent`` answers nothing at all."""

    def __init__(self, zone: Mapping[str, Sequence[str]], *, silent: bool = False,
                 hold: frozenset[str] = frozenset()) -> None:
        self.zone = zone
        self.silent = silent
        self.hold = hold
        self.questions: list[str] = []
        self._held: list[tuple[dns.message.Message, tuple[str, int]]] = []
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = typing.cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        name = query.question[0].name.to_text().lower()
        self.questions.append(name)
        if self.silent:
            return
        if name in self.hold:
            self._held.append((query, addr))
            if self.hold.issubset(self.questions):
                for held_query, held_addr in self._held:
                    self._answer(held_query, held_addr)
            return
        self._answer(query, addr)

    def _answer(self, query: dns.message.Message, addr: tuple[str, int]) -> None:
        assert self._transport is not None
        question = query.question[0]
        response = dns.message.make_response(query)
        records = self.zone.get(question.name.to_text().lower())
        if records is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif records:
            response.answer.append(dns.rrset.from_text(question.name, 300, "IN", "SRV", *records))
        self._transport.sendto(response.to_wire(), addr)


StartDns = Callable[..., Awaitable[tuple[DnsServer, int]]]


@pytest.fixture
async def dns_server() -> AsyncIterator[StartDns]:
    """Starts DNS servers on 127.0.0.1, ephemeral UDP ports; returns (server, port)."""
    transports: list[asyncio.BaseTransport] = []

    async def start(zone: Mapping[str, Sequence[str]], *, silent: bool = False,
                    hold: frozenset[str] = frozenset()) -> tuple[DnsServer, int]:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: DnsServer(zone, silent=silent, hold=hold), local_addr=("127.0.0.1", 0))
        transports.append(transport)
        return protocol, int(transport.get_extra_info("sockname")[1])

    yield start
    for transport in transports:
        transport.close()


async def resolver_for(
    dns_server: StartDns, zone: Mapping[str, Sequence[str]], *, timeout: float = 2.0, seed: int = 1,
    direct_tls: bool = True, silent: bool = False, hold: frozenset[str] = frozenset(),
) -> tuple[ServerResolver, DnsServer]:
    server, port = await dns_server(zone, silent=silent, hold=hold)
    resolver = ServerResolver(nameservers=["127.0.0.1"], port=port, timeout=timeout,
                              direct_tls=direct_tls, rng=random.Random(seed))
    return resolver, server


# ------------------------------------------------------------------ SRV ordering


async def test_targets_follow_priority_lowest_first(dns_server: StartDns) -> None:
    resolver, _ = await resolver_for(dns_server, {XMPP: [
        "20 0 5270 c.example.net.", "10 0 5269 A.Example.NET.", "30 0 5271 d.example.net."]})
    assert await resolver.targets(DOMAIN) == [
        Target("a.example.net", 5269, False),
        Target("c.example.net", 5270, False),
        Target("d.example.net", 5271, False),
    ]


async def test_direct_tls_and_starttls_records_merge_by_priority(dns_server: StartDns) -> None:
    resolver, _ = await resolver_for(dns_server, {
        XMPPS: ["5 0 5223 tls.example.net.", "20 0 443 tls2.example.net."],
        XMPP: ["10 0 5269 plain.example.net."],
    })
    assert await resolver.targets(DOMAIN) == [
        Target("tls.example.net", 5223, True),
        Target("plain.example.net", 5269, False),
        Target("tls2.example.net", 443, True),
    ]


def _within(count: int, trials: int, probability: float) -> bool:
    spread = 5 * math.sqrt(trials * probability * (1 - probability))
    return abs(count - trials * probability) <= spread


async def test_weights_decide_order_within_a_priority(dns_server: StartDns) -> None:
    resolver, _ = await resolver_for(dns_server, {XMPP: [
        "10 60 5269 a.example.net.", "10 30 5269 b.example.net.", "10 10 5269 c.example.net.",
        "10 0 5269 zero.example.net.", "5 0 5269 first.example.net."]})
    trials = 1500
    second: Counter[str] = Counter()
    for _ in range(trials):
        targets = await resolver.targets(DOMAIN)
        hosts = [target.host for target in targets]
        assert hosts[0] == "first.example.net"  # priority 5 always ahead
        assert sorted(hosts[1:]) == ["a.example.net", "b.example.net", "c.example.net", "zero.example.net"]
        second[hosts[1]] += 1
    # RFC 2782: a number in [0, 100] picks the first running sum >= it; weight 0 sits
    # first and wins only on 0.
    for host, weight in (("a", 60), ("b", 30), ("c", 10), ("zero", 1)):
        assert _within(second[f"{host}.example.net"], trials, weight / 101), second


async def test_equal_priority_mixes_direct_tls_and_starttls_by_weight(dns_server: StartDns) -> None:
    resolver, _ = await resolver_for(dns_server, {
        XMPPS: ["10 90 5223 tls.example.net."], XMPP: ["10 10 5269 plain.example.net."]})
    trials = 1000
    first: Counter[bool] = Counter()
    for _ in range(trials):
        targets = await resolver.targets(DOMAIN)
        assert {target.host for target in targets} == {"tls.example.net", "plain.example.net"}
        first[targets[0].direct_tls] += 1
    assert _within(first[True], trials, 91 / 101), first


async def test_same_seed_same_order(dns_server: StartDns) -> None:
    zone = {XMPP: [f"10 10 5269 h{i}.example.net." for i in range(6)]}
    first, _ = await resolver_for(dns_server, zone, seed=7)
    again, _ = await resolver_for(dns_server, zone, seed=7)
    assert [await first.targets(DOMAIN) for _ in range(5)] == [await again.targets(DOMAIN) for _ in range(5)]


# ------------------------------------------------------------------ "." and fallback


async def test_dot_target_means_no_server_service(dns_server: StartDns) -> None:
    resolver, _ = await resolver_for(dns_server, {XMPP: ["0 0 0 ."]})
    assert await resolver.targets(DOMAIN) == []


async def test_dot_direct_tls_leaves_starttls_records(dns_server: StartDns) -> None:
    resolver, _ = await resolver_for(dns_server, {XMPPS: ["0 0 0 ."], XMPP: ["10 0 5269 plain.example.net."]})
    assert await resolver.targets(DOMAIN) == [Target("plain.example.net", 5269, False)]


async def test_dot_direct_tls_without_starttls_records_gives_no_fallback(dns_server: StartDns) -> None:
    # XEP-0368 §5: the SRV protocol is evidently in use, so no A/AAAA fallback.
    resolver, _ = await resolver_for(dns_server, {XMPPS: ["0 0 0 ."]})
    assert await resolver.targets(DOMAIN) == []


async def test_nxdomain_falls_back_to_domain_and_5269(dns_server: StartDns) -> None:
    resolver, server = await resolver_for(dns_server, {})
    assert await resolver.targets(DOMAIN) == [Target(DOMAIN, 5269, False)]
    assert sorted(server.questions) == sorted([XMPP, XMPPS])


async def test_no_srv_data_falls_back(dns_server: StartDns) -> None:
    resolver, _ = await resolver_for(dns_server, {XMPP: [], XMPPS: []})
    assert await resolver.targets(DOMAIN) == [Target(DOMAIN, 5269, False)]


async def test_unanswered_lookups_time_out_and_fall_back(dns_server: StartDns) -> None:
    resolver, server = await resolver_for(dns_server, {XMPP: ["10 0 5269 plain.example.net."]},
                                          timeout=0.3, silent=True)
    assert await resolver.targets(DOMAIN) == [Target(DOMAIN, 5269, False)]
    assert set(server.questions) == {XMPP, XMPPS}


async def test_both_lookups_are_in_flight_together(dns_server: StartDns) -> None:
    # The server answers neither question until it has both: sequential lookups would
    # time out on the first one and end in the fallback.
    resolver, _ = await resolver_for(dns_server, {
        XMPPS: ["10 0 5223 tls.example.net."], XMPP: ["20 0 5269 plain.example.net."]},
        timeout=1.0, hold=frozenset({XMPP, XMPPS}))
    assert await resolver.targets(DOMAIN) == [
        Target("tls.example.net", 5223, True), Target("plain.example.net", 5269, False)]


async def test_direct_tls_disabled_asks_only_for_starttls(dns_server: StartDns) -> None:
    resolver, server = await resolver_for(dns_server, {
        XMPPS: ["5 0 5223 tls.example.net."], XMPP: ["10 0 5269 plain.example.net."]}, direct_tls=False)
    assert await resolver.targets(DOMAIN) == [Target("plain.example.net", 5269, False)]
    assert server.questions == [XMPP]


async def test_internationalised_domain_is_asked_in_a_labels(dns_server: StartDns) -> None:
    resolver, server = await resolver_for(dns_server, {})
    assert await resolver.targets("Bücher.example") == [Target("xn--bcher-kva.example", 5269, False)]
    assert "_xmpp-server._tcp.xn--bcher-kva.example." in server.questions


async def test_ip_domain_needs_no_lookup(dns_server: StartDns) -> None:
    resolver, server = await resolver_for(dns_server, {})
    assert await resolver.targets("192.0.2.7") == [Target("192.0.2.7", 5269, False)]
    assert await resolver.targets("[2001:DB8::1]") == [Target("2001:db8::1", 5269, False)]
    assert server.questions == []


# ------------------------------------------------------------------ static routes


async def test_static_route_wins_over_dns(dns_server: StartDns) -> None:
    server, port = await dns_server({XMPP: ["10 0 5269 plain.example.net."]})
    resolver = ServerResolver(static={"Example.ORG.": "Relay.example.net:5299", "v6.example": "[::1]:5270"},
                              nameservers=["127.0.0.1"], port=port, timeout=2.0)
    assert await resolver.targets(DOMAIN) == [Target("relay.example.net", 5299, False)]
    assert await resolver.targets("v6.example") == [Target("::1", 5270, False)]
    assert server.questions == []


@pytest.mark.parametrize("entry", [
    "relay.example.net", "relay.example.net:", ":5269", "relay:0", "relay:65536", "relay:http",
    "::1:5269", "[::1]5269", "[::1]", "[relay]:5269", "bad host:5269", "a..b:5269", "-a.example:5269",
])
def test_bad_static_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="example.org"):
        ServerResolver(static={DOMAIN: entry})


def test_bad_static_domain_is_refused() -> None:
    with pytest.raises(ValueError, match="not a valid domain"):
        ServerResolver(static={"": "relay.example.net:5269"})


@pytest.mark.parametrize(("text", "parsed"), [
    ("Relay.Example.NET:5269", ("relay.example.net", 5269)),
    ("192.0.2.1:5222", ("192.0.2.1", 5222)),
    ("[2001:DB8::1]:5269", ("2001:db8::1", 5269)),
    ("bücher.example:443", ("xn--bcher-kva.example", 443)),
    (" relay.example.net:5269 ", ("relay.example.net", 5269)),
])
def test_parse_host_port(text: str, parsed: tuple[str, int]) -> None:
    assert ServerResolver.parse_host_port(text) == parsed


def test_bad_nameserver_is_refused() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        ServerResolver(nameservers=["dns.example"])

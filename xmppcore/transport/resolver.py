"""RFC 6120 §3.2, RFC 2782 and XEP-0368 — where to connect for a remote XMPP server domain.

``ServerResolver.targets(domain)`` answers the first question of an outgoing server-to-server
connection: which hosts and ports to try, in which order, and whether each one speaks
direct TLS (XEP-0368) or STARTTLS. It asks DNS for ``_xmpps-server._tcp.<domain>`` and
``_xmpp-server._tcp.<domain>`` SRV records at the same time, mixes the two sets into one
RFC 2782 ordering, and falls back to ``<domain>:5269`` when the domain publishes none
(RFC 6120 §3.2.2). An operator's static table overrides DNS (RFC 6120 §3.2.3).

Hostnames are not resolved to addresses here: the connect step hands them to
``getaddrinfo``, which also reads ``/etc/hosts``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
import idna

__all__ = ["DEFAULT_SERVER_PORT", "ServerResolver", "Target"]

log = logging.getLogger(__name__)

DEFAULT_SERVER_PORT = 5269  # RFC 6120 §3.2.2 / §14.7: the registered xmpp-server port
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_SERVICES = (("_xmpps-server", True), ("_xmpp-server", False))


@dataclass(frozen=True, slots=True)
class Target:
    """One place to connect to: ``host`` (a name or an IP literal), ``port``, and whether
    TLS starts immediately (XEP-0368 direct TLS) rather than after ``<starttls/>``."""

    host: str
    port: int
    direct_tls: bool


@dataclass(frozen=True, slots=True)
class _SrvRecord:
    priority: int
    weight: int
    target: Target


class ServerResolver:
    """Finds the connection targets of remote server domains.

    ``static`` maps domains to ``"host:port"`` or ``"[v6address]:port"`` (validated here:
    ValueError names the bad entry). ``nameservers`` (with ``port``) replaces the system's
    resolver configuration; empty means ``/etc/resolv.conf``. ``timeout`` bounds each
    lookup. ``direct_tls=False`` skips the ``_xmpps-server`` lookup. ``rng`` orders
    records of equal priority; tests pass a seeded one.
    """

    def __init__(
        self, *, static: Mapping[str, str] | None = None, nameservers: Sequence[str] = (),
        port: int = 53, timeout: float = 5.0, direct_tls: bool = True, rng: random.Random | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"DNS timeout must be positive, not {timeout!r}")
        if isinstance(nameservers, str):
            raise TypeError("nameservers must be a sequence of addresses, not a single string")
        self._static = _parse_static(static or {})
        self._timeout = timeout
        self._direct_tls = direct_tls
        self._rng = rng if rng is not None else random.Random()
        self._resolver = _make_resolver(list(nameservers), port)

    @staticmethod
    def parse_host_port(text: str) -> tuple[str, int]:
        """``"host:port"`` or ``"[v6address]:port"`` -> ``(host, port)``; ValueError if malformed.

        The host comes back lower-cased, internationalised names as A-labels, IPv6
        addresses without brackets.
        """
        text = text.strip()
        if text.startswith("["):
            address, bracket, rest = text[1:].partition("]")
            if not bracket or not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected [IPv6 address]:port")
            try:
                host = str(ipaddress.IPv6Address(address))
            except ValueError:
                raise ValueError(f"{text!r}: {address!r} is not an IPv6 address") from None
            return host, _parse_port(rest[1:], text)
        host_text, colon, port_text = text.rpartition(":")
        if not colon or not host_text:
            raise ValueError(f"{text!r}: expected host:port")
        if ":" in host_text:
            raise ValueError(f"{text!r}: write IPv6 addresses in brackets, as [address]:port")
        return _normalise_host(host_text, text), _parse_port(port_text, text)

    async def targets(self, domain: str) -> list[Target]:
        """Where to connect for ``domain``, best first; ``[]`` when the domain says it has
        no XMPP server service (RFC 2782 target ``"."``).

        Raises ValueError when ``domain`` cannot be a DNS name.
        """
        name = _domain_name(domain)
        static = self._static.get(name)
        if static is not None:
            return [static]
        literal = _ip_literal(name)
        if literal is not None:  # an IP domainpart (RFC 7622 §3.2): nothing to look up
            return [Target(literal, DEFAULT_SERVER_PORT, False)]
        services = [(label, tls) for label, tls in _SERVICES if tls is False or self._direct_tls]
        answers = await asyncio.gather(*(self._lookup(f"{label}._tcp.{name}.", tls) for label, tls in services))
        if all(answer is None for answer in answers):
            # RFC 6120 §3.2.2: no SRV records at all -> the domain itself, default port.
            return [Target(name, DEFAULT_SERVER_PORT, False)]
        # XEP-0368 §3: xmpps- and xmpp- records are one set for RFC 2782 ordering, their
        # priorities and weights mixed; a "." answer (XEP-0368 §5) only removes its own
        # service, and the A/AAAA fallback no longer applies.
        records = [record for answer in answers if answer for record in answer]
        return [record.target for record in _rfc2782_order(records, self._rng)]

    async def _lookup(self, qname: str, direct_tls: bool) -> list[_SrvRecord] | None:
        """The usable SRV records at ``qname``; ``[]`` for "decidedly not available";
        ``None`` when there are none (NXDOMAIN, no data, no answer in time, no resolver)."""
        if self._resolver is None:
            return None
        try:
            answer = await self._resolver.resolve(qname, dns.rdatatype.SRV, search=False, lifetime=self._timeout)
        except (dns.exception.DNSException, OSError) as exc:
            log.debug("no SRV records at %s: %s", qname, exc)
            return None
        records: list[_SrvRecord] = []
        for rdata in answer:
            host = rdata.target.to_text(omit_final_dot=True)
            # RFC 2782: a target of "." means the service is decidedly not available.
            if rdata.target == dns.name.root or not host:
                continue
            records.append(_SrvRecord(rdata.priority, rdata.weight, Target(host.lower(), rdata.port, direct_tls)))
        return records


def _rfc2782_order(records: Sequence[_SrvRecord], rng: random.Random) -> list[_SrvRecord]:
    """RFC 2782 "Usage rules": lowest priority first; within a priority, repeatedly pick
    by weight among the records not yet ordered."""
    ordered: list[_SrvRecord] = []
    for priority in sorted({record.priority for record in records}):
        # "Any order, except that all those with weight 0 are placed at the beginning": they
        # win only when the random number is exactly 0, "a very small chance". The rest by
        # name, so that a seeded generator gives one order whatever order DNS answered in.
        pending = sorted((r for r in records if r.priority == priority), key=_arrangement)
        while pending:
            # RFC 2782: a uniform random number between 0 and the sum, inclusive; the first
            # record whose running sum is >= that number is next.
            chosen = rng.randint(0, sum(record.weight for record in pending))
            running = 0
            for index, record in enumerate(pending):
                running += record.weight
                if running >= chosen:
                    ordered.append(pending.pop(index))
                    break
    return ordered


def _arrangement(record: _SrvRecord) -> tuple[bool, str, int, bool]:
    return record.weight != 0, record.target.host, record.target.port, record.target.direct_tls


def _make_resolver(nameservers: list[str], port: int) -> dns.asyncresolver.Resolver | None:
    if not 0 < port < 65536:
        raise ValueError(f"DNS port {port!r} is out of range")
    for address in nameservers:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ValueError(f"DNS nameserver {address!r} is not an IP address") from None
    try:
        resolver = dns.asyncresolver.Resolver(configure=not nameservers)
    except dns.resolver.NoResolverConfiguration as exc:
        log.warning("no DNS resolver configuration (%s): every remote domain falls back to port %d",
                    exc, DEFAULT_SERVER_PORT)
        return None
    if nameservers:
        resolver.nameservers = nameservers
        resolver.port = port
    return resolver


def _parse_static(table: Mapping[str, str]) -> dict[str, Target]:
    parsed: dict[str, Target] = {}
    for domain, where in table.items():
        if not isinstance(where, str):  # a configuration error, reported like the others
            raise ValueError(  # noqa: TRY004
                f"static route for {domain!r} must be a \"host:port\" string, not {where!r}"
            )
        try:
            name = _domain_name(domain)
            host, port = ServerResolver.parse_host_port(where)
        except ValueError as exc:
            raise ValueError(f"static route {domain!r} = {where!r}: {exc}") from None
        parsed[name] = Target(host, port, False)
    return parsed


def _parse_port(text: str, whole: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"{whole!r}: port {text!r} is not a number")
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(f"{whole!r}: port {port} is out of range")
    return port


def _normalise_host(host: str, whole: str) -> str:
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    try:
        return _domain_name(host)
    except ValueError as exc:
        raise ValueError(f"{whole!r}: {exc}") from None


def _domain_name(text: str) -> str:
    """``text`` as a lower-case DNS name in A-labels, without the final dot."""
    name = text.strip().removesuffix(".")
    if name.startswith("[") and name.endswith("]"):  # IPv6 domainpart (RFC 7622 §3.2)
        return name.lower()
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"{text!r} is not a valid domain name: {exc}") from None
    name = name.lower()
    labels = name.split(".")
    if len(name) > 253 or not all(_LDH_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{text!r} is not a valid domain name")
    return name


def _ip_literal(name: str) -> str | None:
    if name.startswith("[") and name.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(name[1:-1]))
        except ValueError:
            raise ValueError(f"{name!r} is not a valid IPv6 domain") from None
    try:
        return str(ipaddress.IPv4Address(name))
    except ValueError:
        return None

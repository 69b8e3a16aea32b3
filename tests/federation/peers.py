"""RFC 6120 §13 federation peers for the tests: the reference ejabberd and Prosody on loopback.

Each reference server runs from Debian's package on its own loopback address, on the standard
ports (c2s 5222 with STARTTLS, s2s 5269), started and stopped by its script
(``ejabberd-config/ejabberd.sh``, ``prosody-config/prosody.sh``).  The domains ejabberd.test,
prosody.test and xmppcore.test reach each other through ``/etc/hosts``
(``federation-config/hosts.sh``): the servers find no SRV record and fall back to the domain's
address on port 5269 (RFC 6120 §3.2.2).  Their certificates are self-signed, so they
authenticate each other with Server Dialback (XEP-0220) after STARTTLS.

A peer that cannot run here (package not installed, names not mapped) makes the tests that need
it skip, or fail when ``XMPPCORE_REQUIRE_PEERS=1``.  A :class:`PeerPool` stops, at the end, only
the peers it started (``XMPPCORE_KEEP_PEERS=1`` leaves them running for the next run).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Self

import pytest
import slixmpp
from slixmpp.stanza import Iq

from ..integration.clients import Endpoint, SlixClient

__all__ = [
    "EJABBERD", "HOSTS_SCRIPT", "KEEP_PEERS_ENV", "PEERS", "PROSODY", "REQUIRE_PEERS_ENV", "S2S_TIMEOUT",
    "XMPPCORE_ADDRESS", "XMPPCORE_DOMAIN", "PeerClients", "PeerPool", "PeerServer", "PeerUnavailable",
    "RunningPeer", "login", "ping", "require_peer",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
HOSTS_SCRIPT = REPO_ROOT / "federation-config" / "hosts.sh"
REQUIRE_PEERS_ENV = "XMPPCORE_REQUIRE_PEERS"
KEEP_PEERS_ENV = "XMPPCORE_KEEP_PEERS"
# The first stanza to a domain waits for TCP, STARTTLS on both streams and a dialback round trip
# over a second connection (XEP-0220 §2.1-2.4): about 0.1 s on loopback, more on a busy machine.
S2S_TIMEOUT = 15.0
# Where an xmppcore under test serves its federation: s2s on XMPPCORE_ADDRESS:5269.
XMPPCORE_DOMAIN = "xmppcore.test"
XMPPCORE_ADDRESS = "127.0.0.4"


@dataclass(frozen=True, slots=True)
class PeerServer:
    """A reference server: its domain and address, how to start it, who may log in."""

    name: str
    domain: str
    address: str            # c2s and s2s listen here
    package: str            # the Debian package
    control: str            # the package's control command: absent means not installed
    script: Path            # install|start|stop|status|certfile
    users: tuple[str, ...]
    password: str           # every account's
    mechanism: str          # a SASL mechanism its stored credentials allow
    c2s_port: int = 5222    # STARTTLS required
    s2s_port: int = 5269

    @property
    def accounts(self) -> Mapping[str, str]:
        """username -> password."""
        return MappingProxyType({user: self.password for user in self.users})

    def jid(self, user: str) -> str:
        """The bare JID of one of its accounts."""
        return f"{user}@{self.domain}"


EJABBERD = PeerServer(
    name="ejabberd", domain="ejabberd.test", address="127.0.0.2", package="ejabberd",
    control="ejabberdctl", script=REPO_ROOT / "ejabberd-config" / "ejabberd.sh",
    users=("alice", "bob", "carol"), password="conformance-secret", mechanism="SCRAM-SHA-256")
# Prosody 0.12 stores SCRAM-SHA-1 credentials only.
PROSODY = PeerServer(
    name="prosody", domain="prosody.test", address="127.0.0.3", package="prosody",
    control="prosodyctl", script=REPO_ROOT / "prosody-config" / "prosody.sh",
    users=("alice", "bob"), password="federation-secret", mechanism="SCRAM-SHA-1")
PEERS: Mapping[str, PeerServer] = MappingProxyType({peer.name: peer for peer in (EJABBERD, PROSODY)})


class PeerUnavailable(Exception):
    """The peer cannot run here; the message says what is missing and how to provide it."""


@dataclass(frozen=True, slots=True)
class RunningPeer:
    """A started reference server and the certificate that verifies its TLS."""

    server: PeerServer
    cafile: Path

    @property
    def endpoint(self) -> Endpoint:
        """Its client listener (STARTTLS), for :class:`SlixClient`."""
        return Endpoint(self.server.address, self.server.c2s_port, False, self.cafile)


def _run_script(script: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def check_available(server: PeerServer) -> None:
    """Raise :class:`PeerUnavailable` unless the package is installed and the names are mapped."""
    if shutil.which(server.control) is None:
        raise PeerUnavailable(f"{server.name} is not installed ({server.control} not found): "
                              f"apt-get install -y {server.package}, or bash {server.script} install")
    hosts = _run_script(HOSTS_SCRIPT, "check")
    if hosts.returncode != 0:
        raise PeerUnavailable(f"the federation test domains are not in /etc/hosts: {hosts.stderr.strip()}")


class PeerPool:
    """Starts each peer on first use; :meth:`close` stops the ones this pool started."""

    def __init__(self) -> None:
        self._running: dict[str, RunningPeer] = {}
        self._started_here: list[PeerServer] = []
        self._unusable: dict[str, Exception] = {}  # every later use fails the same way

    def get(self, name: str) -> RunningPeer:
        """The running peer; :class:`PeerUnavailable` to skip, RuntimeError when it broke."""
        if name in self._unusable:
            raise self._unusable[name]
        if name not in self._running:
            try:
                self._running[name] = self._start(PEERS[name])
            except (PeerUnavailable, RuntimeError) as exc:
                self._unusable[name] = exc
                raise
        return self._running[name]

    def _start(self, server: PeerServer) -> RunningPeer:
        check_available(server)
        if _run_script(server.script, "status").returncode != 0:
            started = _run_script(server.script, "start", timeout=180)
            if started.returncode != 0:
                _run_script(server.script, "stop")  # whatever part of it did start
                raise RuntimeError(f"{server.script} start exited {started.returncode}:\n"
                                   f"{started.stdout}{started.stderr}")
            self._started_here.append(server)
        cafile = Path(_run_script(server.script, "certfile").stdout.strip())
        if not cafile.is_file():
            raise RuntimeError(f"{server.script} certfile printed {cafile}, which is not a file")
        return RunningPeer(server, cafile)

    def close(self) -> None:
        if os.environ.get(KEEP_PEERS_ENV) != "1":
            for server in self._started_here:
                _run_script(server.script, "stop")
        self._started_here.clear()
        self._running.clear()


def require_peer(pool: PeerPool, name: str) -> RunningPeer:
    """``pool.get(name)`` for a fixture: skip when the peer cannot run here, or fail when
    ``XMPPCORE_REQUIRE_PEERS=1`` says it must."""
    try:
        return pool.get(name)
    except PeerUnavailable as exc:
        if os.environ.get(REQUIRE_PEERS_ENV) == "1":
            pytest.fail(f"{REQUIRE_PEERS_ENV}=1 but {name} cannot run: {exc}")
        pytest.skip(str(exc))


async def login(peer: RunningPeer, user: str, resource: str, *, plugins: Sequence[str] = ()) -> SlixClient:
    """A slixmpp client logged into ``user@<peer domain>/resource`` over STARTTLS, verifying the
    peer's certificate; LoginFailed (from the integration helpers) otherwise."""
    server = peer.server
    client = SlixClient(f"{server.jid(user)}/{resource}", server.password, peer.endpoint,
                        mechanism=server.mechanism, plugins=plugins)
    return await client.connect()


async def ping(client: SlixClient, target: str, timeout: float = S2S_TIMEOUT) -> Iq:
    """XEP-0199 ping from ``client`` to ``target``; the result, or slixmpp's IqError/IqTimeout.

    The client must have been logged in with the ``xep_0199`` plugin.
    """
    reply: Iq = await client.xmpp.plugin["xep_0199"].send_ping(slixmpp.JID(target), timeout=timeout)
    return reply


class PeerClients:
    """Logs slixmpp clients into peers for one test and disconnects them all at the end."""

    def __init__(self) -> None:
        self._clients: list[SlixClient] = []

    async def login(self, peer: RunningPeer, user: str, resource: str, *,
                    plugins: Sequence[str] = ()) -> SlixClient:
        client = await login(peer, user, resource, plugins=plugins)
        self._clients.append(client)
        return client

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await asyncio.gather(*(client.disconnect() for client in self._clients), return_exceptions=True)

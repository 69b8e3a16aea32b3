"""xmppcore nodes that federate on loopback: configuration, start/stop, clients, waiting.

Each node serves one domain, listens for clients on an ephemeral port and for servers on a port
the test chooses, and reaches the other nodes through ``s2s.routes`` (no DNS).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xmppcore.config import config_from_mapping
from xmppcore.server.app import Server

from ..integration.clients import Endpoint, SlixClient

PASSWORD = "federation-secret"
WAIT = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the node binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Node:
    """A started xmppcore serving ``domain``."""

    server: Server
    domain: str
    c2s: tuple[str, int]
    s2s: tuple[str, int]
    cafile: Path   # what clients verify the node's certificate against

    async def add_user(self, username: str, password: str = PASSWORD) -> str:
        await self.server.accounts.create(self.domain, username, password)
        return f"{username}@{self.domain}"

    async def login(self, username: str, resource: str = "test", password: str = PASSWORD) -> SlixClient:
        endpoint = Endpoint(self.c2s[0], self.c2s[1], False, self.cafile)
        client = SlixClient(f"{username}@{self.domain}/{resource}", password, endpoint, plugins=("xep_0199",))
        client.xmpp.auto_authorize = None
        client.xmpp.auto_subscribe = False
        return await client.connect()

    def links(self) -> list[tuple[str, str, str, str, bool]]:
        return self.server.federation.links()


def node_config(tmp: Path, domain: str, *, host: str = "127.0.0.1", s2s_port: int,
                routes: Mapping[str, str], certificate: tuple[Path, Path] | None = None,
                ca_file: Path | None = None, **s2s: Any) -> Any:
    data: dict[str, Any] = {
        "domains": [domain],
        "data_dir": str(tmp / domain),
        "c2s": {"bind": [host], "port": 0, "direct_tls_port": -1},
        "s2s": {"bind": [host], "port": s2s_port, "direct_tls_port": -1, "routes": dict(routes),
                "connect_timeout": 5.0, **s2s},
        "auth": {"scram_iterations": 4096, "failure_delay": 0.0, "failure_delay_max": 0.0},
        "storage": {"driver": "memory"},
    }
    if certificate is not None:
        data["tls"] = {"certificate": str(certificate[0]), "key": str(certificate[1])}
    if ca_file is not None:
        data["s2s"]["ca_file"] = str(ca_file)
    return config_from_mapping(data, source="<federation test>", base_dir=tmp)


@asynccontextmanager
async def running_node(config: Any, *, cafile: Path | None = None) -> AsyncIterator[Node]:
    server = Server(config)
    await server.start()
    domain = config.domains[0]
    own_cert = server.certificate_files[0]
    assert own_cert is not None
    node = Node(server, domain, server.c2s_addresses[0], server.federation.addresses[0]
                if server.federation.addresses else ("", -1), cafile or own_cert)
    try:
        yield node
    finally:
        await server.stop()


async def until_links(nodes: list[Node], check: Callable[[], bool], timeout: float = WAIT) -> None:
    """Wait until ``check()`` holds, re-checking each time one of ``nodes`` ends a server stream."""
    ended = asyncio.Event()
    for node in nodes:
        federation = node.server.federation
        original = federation.stream_ended

        def stream_ended(stream: Any, original: Callable[[Any], None] = original) -> None:
            original(stream)
            ended.set()

        federation.stream_ended = stream_ended  # type: ignore[method-assign]
    async with asyncio.timeout(timeout):
        while not check():
            await ended.wait()
            ended.clear()

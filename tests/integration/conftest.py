"""Fixtures that start the real server on ephemeral loopback ports (no mocks)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from xmppcore.config import Config, config_from_mapping
from xmppcore.server.app import Server

PASSWORD = "correct horse battery staple"


@dataclass
class RunningServer:
    """A started server and what a test needs to reach it."""

    server: Server
    host: str
    starttls_port: int
    direct_tls_port: int
    cafile: Path
    domain: str = "localhost"

    async def add_user(self, username: str, password: str = PASSWORD) -> str:
        """Create an account; returns its bare JID."""
        await self.server.accounts.create(self.domain, username, password)
        return f"{username}@{self.domain}"


def make_config(tmp_path: Path, **c2s: object) -> Config:
    """A test configuration: loopback, ephemeral ports, fast SCRAM, no auth slow-down."""
    data = {
        "domains": ["localhost"],
        "data_dir": str(tmp_path / "data"),
        "c2s": {"bind": ["127.0.0.1"], "port": 0, "direct_tls_port": 0, **c2s},
        "s2s": {"port": -1, "direct_tls_port": -1},  # federation tests listen on their own
        "auth": {"scram_iterations": 4096, "failure_delay": 0.0, "failure_delay_max": 0.0},
        "storage": {"driver": "sqlite"},
    }
    return config_from_mapping(data, source="<test>", base_dir=tmp_path)


async def start_server(config: Config) -> RunningServer:
    server = Server(config)
    await server.start()
    return RunningServer(
        server=server,
        host="127.0.0.1",
        starttls_port=server.c2s_addresses[0][1],
        direct_tls_port=server.direct_tls_addresses[0][1],
        cafile=Path(config.data_dir) / "cert.pem",
    )


@pytest.fixture
async def xmpp_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """The real server with default options on 127.0.0.1 (STARTTLS and direct TLS ports)."""
    running = await start_server(make_config(tmp_path))
    try:
        yield running
    finally:
        await running.server.stop()


__all__ = ["PASSWORD", "RunningServer", "make_config", "start_server"]

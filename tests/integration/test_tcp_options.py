"""Socket options of accepted connections: TCP_NODELAY, which the event loop sets (asyncio since
Python 3.7, uvloop always) and the server relies on (transport/tcp.py), on both loops."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from .conftest import make_config, start_server
from .rawclient import RawClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


async def _accepted_socket_has_nodelay(tmp_path: Path) -> None:
    running = await start_server(make_config(tmp_path))
    try:
        client = await RawClient.connect(running.host, running.starttls_port)
        await client.open_stream()  # the server has accepted and answered
        [connection] = list(running.server._connections)
        transport = connection._transport._transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        client.close()
    finally:
        await running.server.stop()


async def test_accepted_connections_have_nodelay_on_asyncio(tmp_path: Path) -> None:
    assert "uvloop" not in type(asyncio.get_running_loop()).__module__
    await _accepted_socket_has_nodelay(tmp_path)


def test_accepted_connections_have_nodelay_on_uvloop(tmp_path: Path) -> None:
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed here")
    uvloop.run(_accepted_socket_has_nodelay(tmp_path))

"""The notifier's local webhook (RFC 9112 subset): bodies accepted, everything else refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bots.webhook import MAX_BODY, serve_webhook

from ..integration.clients import TIMEOUT


async def http(address: tuple[str, int], request: bytes) -> tuple[int, str]:
    """Send a raw request; the final status and body of the response (read until the server
    closes), after any interim ``100 Continue``."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(request)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    while response.startswith(b"HTTP/1.1 100 "):
        response = response.partition(b"\r\n\r\n")[2]
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode()


def post(body: bytes, *extra: str) -> bytes:
    headers = "".join(f"{line}\r\n" for line in extra)
    return f"POST /hook HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body


@pytest.fixture
async def hook() -> AsyncIterator[tuple[tuple[str, int], list[str]]]:
    received: list[str] = []

    def accept(text: str) -> bool:
        if text == "full":
            return False
        received.append(text)
        return True

    server = await serve_webhook("127.0.0.1", 0, accept)
    async with server:
        yield server.sockets[0].getsockname()[:2], received


async def test_a_post_body_is_accepted(hook: tuple[tuple[str, int], list[str]]) -> None:
    address, received = hook
    assert await http(address, post("déploiement fini\nligne 2".encode())) == (202, "queued\n")
    assert await http(address, post(b"again", "Expect: 100-continue")) == (202, "queued\n")
    assert received == ["déploiement fini\nligne 2", "again"]


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", 411),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411),
    (post(b"   \n"), 400),
    (post(b"\xff\xfe"), 400),
    (post(b"full"), 503),
    (f"POST / HTTP/1.1\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode(), 413),
    (b"POST / HTTP/1.1\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n", 431),
])
async def test_what_is_refused(hook: tuple[tuple[str, int], list[str]], request_bytes: bytes, status: int) -> None:
    address, received = hook
    assert (await http(address, request_bytes))[0] == status
    assert received == []

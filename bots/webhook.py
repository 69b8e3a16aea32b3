"""A minimal local webhook: HTTP/1.1 ``POST`` requests whose text body is handed to a callback.

Just enough of RFC 9112 for ``curl -d 'text' http://127.0.0.1:8080/``: one request per
connection, a ``Content-Length`` body (no chunked encoding), then ``Connection: close``.
Everything a caller controls is bounded: header size, body size, and the time to send them.
It is meant for loopback: there is no authentication and no TLS.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

__all__ = ["MAX_BODY", "serve_webhook"]

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
MAX_HEADERS = 8 * 1024
REQUEST_TIMEOUT = 10.0
_REASONS = {202: "Accepted", 400: "Bad Request", 405: "Method Not Allowed",
            408: "Request Timeout", 411: "Length Required", 413: "Content Too Large",
            431: "Request Header Fields Too Large", 503: "Service Unavailable"}


class _Refused(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


async def serve_webhook(host: str, port: int, accept: Callable[[str], bool]) -> asyncio.Server:
    """Listen on ``host:port`` (0: any free port); ``accept(text)`` gets each non-empty body and
    returns ``False`` when it cannot take more now (the client gets 503)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            text = await asyncio.wait_for(_read_request(reader, writer), REQUEST_TIMEOUT)
            if not text.strip():
                raise _Refused(400, "empty body")
            if not accept(text):
                raise _Refused(503, "queue full, try again later")
            status, answer = 202, "queued"
        except _Refused as refused:
            status, answer = refused.status, str(refused)
        except TimeoutError:
            status, answer = 408, "request took too long"
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        log.debug("webhook: %d %s", status, answer)
        body = (answer + "\n").encode()
        writer.write(f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: text/plain; "
                     f"charset=utf-8\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                     .encode() + body)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port, limit=MAX_HEADERS)


async def _read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise _Refused(431, "headers too large") from None
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method = request_line.split(" ", 1)[0]
    if method != "POST":
        raise _Refused(405, "only POST")
    headers = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    if "transfer-encoding" in headers:
        raise _Refused(411, "send a Content-Length body, not chunked")
    length = headers.get("content-length", "")
    if not length.isdigit():
        raise _Refused(411, "Content-Length required")
    if int(length) > MAX_BODY:
        raise _Refused(413, f"at most {MAX_BODY} bytes")
    if headers.get("expect", "").lower() == "100-continue":  # curl, for larger bodies
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = await reader.readexactly(int(length))
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(400, "the body must be UTF-8 text") from None

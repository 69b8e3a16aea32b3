"""RFC 6120 §5.4.3.3: the restart header a client sends right after its TLS Finished must be read.

A regression test (found by the conformance harness, whose server runs on its own event loop): with TLS 1.3 a
client sends its Finished and, at once, the new stream header; when both arrive in one read,
the server decrypts the header before ``ClientConnection._start_tls`` has resumed and called
``tls_established``, so the core (still in TLS_PENDING, parser not reset) refuses it as
not-well-formed and writes the stream error in plaintext on the old transport.

This test makes the coincidence certain: the TLS handshake runs through memory BIOs, and the
Finished and the restart header leave in a single ``sendall``.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest

from tests.conformance.targets import Endpoint, XmppcoreTarget

pytestmark = pytest.mark.integration

_HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
           "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>").encode()


@pytest.fixture(scope="module")
def xmppcore() -> Iterator[Endpoint]:
    target = XmppcoreTarget()
    try:
        yield target.start()
    finally:
        target.stop()


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed; got {data!r}"
        data += chunk
    return data


def _handshake_keeping_finished(sock: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO,
                                outgoing: ssl.MemoryBIO) -> None:
    """Run the client handshake; leave our last flight (the Finished) unsent in ``outgoing``."""
    while True:
        try:
            tls.do_handshake()
            return
        except ssl.SSLWantReadError:
            if outgoing.pending:
                sock.sendall(outgoing.read())
            data = sock.recv(65536)
            assert data, "the server closed during the handshake"
            incoming.write(data)


def test_restart_header_in_the_same_segment_as_finished(xmppcore: Endpoint) -> None:
    sock = socket.create_connection((xmppcore.host, xmppcore.starttls_port), timeout=5)
    try:
        sock.sendall(_HEADER)
        _read_until(sock, b"</stream:features>")
        sock.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        _read_until(sock, b"<proceed")
        context = ssl.create_default_context(cafile=str(xmppcore.cafile))
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname=xmppcore.domain)
        _handshake_keeping_finished(sock, tls, incoming, outgoing)
        tls.write(_HEADER)
        sock.sendall(outgoing.read())  # Finished and the restart header together
        received = b""
        while b"</stream:features>" not in received:
            data = sock.recv(65536)
            assert data, f"the server closed the connection; decrypted so far: {received!r}"
            incoming.write(data)
            try:
                received += tls.read(65536)
            except ssl.SSLWantReadError:
                continue
            except ssl.SSLError as exc:  # e.g. a plaintext stream error on the TLS connection
                pytest.fail(f"the server broke the TLS stream ({exc}); raw bytes: {data!r}")
        assert b"<mechanisms" in received, received
    finally:
        sock.close()

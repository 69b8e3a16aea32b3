"""RFC 6120 §13.7.1.2, RFC 6125, RFC 7590, XEP-0178: s2s TLS contexts and peer certificates.

Every handshake here is real: ssl.MemoryBIO pairs, loopback sockets, and a StreamTransport
doing the initiating side of STARTTLS against an asyncio server.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from tests.testca import CA, ID_ON_DNSSRV, ID_ON_XMPPADDR, make_ca, self_signed
from xmppcore.protocol import events as ev
from xmppcore.protocol.client import C2SClient
from xmppcore.transport.s2s_tls import (
    CertificateIdentities,
    PeerCertificate,
    peer_certificate,
    peer_verification_available,
    s2s_client_context,
    s2s_server_context,
)
from xmppcore.transport.tcp import StreamTransport

LOCAL, REMOTE = "local.example", "remote.example"

pytestmark = pytest.mark.skipif(
    not peer_verification_available(), reason="this interpreter has no ctypes route to OpenSSL")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("certs")


@pytest.fixture(scope="module")
def server_context(ca: CA, certs: Path) -> ssl.SSLContext:
    """The receiving server, REMOTE, trusting only the test CA."""
    cert, key = ca.issue([REMOTE], certs)
    return s2s_server_context(cert, key, cafile=ca.cert_path)


def client_context(ca: CA, cert_and_key: tuple[Path, Path] | None = None, **options: object) -> ssl.SSLContext:
    certfile, keyfile = cert_and_key if cert_and_key is not None else (None, None)
    return s2s_client_context(certfile, keyfile, cafile=ca.cert_path, **options)  # type: ignore[arg-type]


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, sni: str = REMOTE) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """A complete TLS handshake over memory BIOs: (server side, client side)."""
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    ends = [
        (client.wrap_bio(c_in, c_out, server_side=False, server_hostname=sni), c_out, s_in),
        (server.wrap_bio(s_in, s_out, server_side=True), s_out, c_in),
    ]
    done = [False, False]
    for _ in range(10):
        for index, (obj, outgoing, peer_incoming) in enumerate(ends):
            if not done[index]:
                try:
                    obj.do_handshake()
                    done[index] = True
                except ssl.SSLWantReadError:
                    pass
            peer_incoming.write(outgoing.read())
        if all(done) and not s_in.pending and not c_in.pending:
            break
    assert all(done), "handshake did not complete"
    return ends[1][0], ends[0][0]


def seen_by_server(server: ssl.SSLContext, client: ssl.SSLContext) -> PeerCertificate:
    return peer_certificate(handshake(server, client)[0])


# ------------------------------------------------------------------ verdicts


def test_trusted_client_certificate_is_valid_for_its_domain_only(
        ca: CA, certs: Path, server_context: ssl.SSLContext) -> None:
    seen = seen_by_server(server_context, client_context(ca, ca.issue([LOCAL], certs)))
    assert seen.verified and seen.reason == "ok"
    assert seen.identities.dns_names == (LOCAL,)
    assert seen.valid_for(LOCAL)
    assert seen.valid_for("LOCAL.Example.")
    assert not seen.valid_for(REMOTE)
    assert not seen.valid_for("sub." + LOCAL)


def test_client_sees_the_servers_certificate(ca: CA, certs: Path, server_context: ssl.SSLContext) -> None:
    server_obj, client_obj = handshake(server_context, client_context(ca))
    seen = peer_certificate(client_obj)
    assert seen.verified and seen.valid_for(REMOTE) and not seen.valid_for(LOCAL)
    assert peer_certificate(server_obj).reason == "no certificate"


def test_self_signed_client_completes_handshake_unverified(
        certs: Path, ca: CA, server_context: ssl.SSLContext) -> None:
    seen = seen_by_server(server_context, client_context(ca, self_signed(LOCAL, certs)))
    assert not seen.verified
    assert "self" in seen.reason and "signed" in seen.reason
    assert seen.identities.dns_names == (LOCAL,)  # it names the domain, but proves nothing
    assert not seen.valid_for(LOCAL)


def test_self_signed_server_is_unverified_for_the_client(ca: CA, certs: Path) -> None:
    cert, key = self_signed(REMOTE, certs)
    _, client_obj = handshake(s2s_server_context(cert, key, cafile=ca.cert_path), client_context(ca))
    seen = peer_certificate(client_obj)
    assert not seen.verified and not seen.valid_for(REMOTE)


def test_certificate_from_an_unknown_authority_is_unverified(
        tmp_path: Path, ca: CA, server_context: ssl.SSLContext) -> None:
    stranger = make_ca(tmp_path / "other-ca")
    seen = seen_by_server(server_context, client_context(ca, stranger.issue([LOCAL], tmp_path)))
    assert not seen.verified and seen.reason != "ok"
    assert not seen.valid_for(LOCAL)


def test_expired_certificate_is_unverified(ca: CA, certs: Path, server_context: ssl.SSLContext) -> None:
    now = datetime.datetime.now(datetime.UTC)
    expired = ca.issue([LOCAL], certs, not_before=now - datetime.timedelta(days=10),
                       not_after=now - datetime.timedelta(days=1))
    seen = seen_by_server(server_context, client_context(ca, expired))
    assert not seen.verified and seen.reason == "certificate has expired"
    assert not seen.valid_for(LOCAL)


def test_no_client_certificate(ca: CA, server_context: ssl.SSLContext) -> None:
    seen = seen_by_server(server_context, client_context(ca))
    assert seen == PeerCertificate(verified=False, reason="no certificate")
    assert not seen.valid_for(LOCAL)


def test_server_auth_only_certificate_is_accepted_from_a_connecting_server(
        ca: CA, certs: Path, server_context: ssl.SSLContext) -> None:
    # COMPAT: public CAs stopped issuing clientAuth; servers still present these on s2s.
    seen = seen_by_server(server_context, client_context(ca, ca.issue([LOCAL], certs, client_auth=False)))
    assert seen.verified and seen.valid_for(LOCAL)


def test_no_tls_and_unfinished_handshake(server_context: ssl.SSLContext) -> None:
    assert peer_certificate(None) == PeerCertificate(verified=False, reason="no TLS")
    unfinished = server_context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)
    assert not peer_certificate(unfinished).verified


# ------------------------------------------------------------------ identities in certificates


def test_xmpp_addr_certificate(ca: CA, certs: Path, server_context: ssl.SSLContext) -> None:
    cert = ca.issue([], certs, xmpp_addrs=[LOCAL, "admin@other.example"])
    seen = seen_by_server(server_context, client_context(ca, cert))
    assert seen.identities.xmpp_addrs == (LOCAL, "admin@other.example")
    assert seen.valid_for(LOCAL)
    assert not seen.valid_for("other.example")  # a JID with a localpart names no server
    assert not seen.valid_for("chat." + LOCAL)


def test_internationalised_xmpp_addr_matches_in_a_labels(ca: CA, certs: Path, server_context: ssl.SSLContext) -> None:
    seen = seen_by_server(server_context, client_context(ca, ca.issue([], certs, xmpp_addrs=["bücher.example"])))
    assert seen.valid_for("xn--bcher-kva.example") and seen.valid_for("Bücher.example")


def test_srv_id_certificate(ca: CA, certs: Path, server_context: ssl.SSLContext) -> None:
    cert = ca.issue([], certs, srv_names=[f"_xmpp-server.{LOCAL}", "_xmpp-client.other.example"])
    seen = seen_by_server(server_context, client_context(ca, cert))
    assert seen.identities.srv_names == (f"_xmpp-server.{LOCAL}", "_xmpp-client.other.example")
    assert seen.valid_for(LOCAL)
    assert not seen.valid_for("other.example")  # the c2s service does not vouch for s2s


def test_wildcard_certificate(ca: CA, certs: Path, server_context: ssl.SSLContext) -> None:
    seen = seen_by_server(server_context, client_context(ca, ca.issue([f"*.{LOCAL}"], certs)))
    assert seen.valid_for(f"chat.{LOCAL}")
    assert not seen.valid_for(LOCAL)
    assert not seen.valid_for(f"a.chat.{LOCAL}")


def test_common_name_counts_only_without_subject_alt_name(
        ca: CA, certs: Path, server_context: ssl.SSLContext) -> None:
    cn_only = seen_by_server(server_context, client_context(ca, ca.issue([], certs, common_name=LOCAL)))
    assert cn_only.identities.common_names == (LOCAL,)
    assert cn_only.valid_for(LOCAL)
    both = seen_by_server(server_context, client_context(ca, ca.issue(["other.example"], certs, common_name=LOCAL)))
    assert both.valid_for("other.example") and not both.valid_for(LOCAL)


LONG = f"{'a' * 60}.{'b' * 60}.example"  # over 127 octets: a long-form DER length


def _tlv(tag: int, content: bytes) -> bytes:
    assert len(content) < 0x80
    return bytes([tag, len(content)]) + content


def test_other_name_values_are_read_strictly(ca: CA, tmp_path: Path, server_context: ssl.SSLContext) -> None:
    names = [
        # The [0] EXPLICIT of RFC 5280's OtherName, as some producers leave it on the value.
        x509.OtherName(ID_ON_XMPPADDR, _tlv(0xA0, _tlv(0x0C, b"wrapped.example"))),
        x509.OtherName(ID_ON_XMPPADDR, _tlv(0x16, b"ia5.example")),  # not a UTF8String
        x509.OtherName(ID_ON_XMPPADDR, bytes([0x0C, 0x81, len(LONG)]) + LONG.encode()),  # long-form length
        x509.OtherName(ID_ON_XMPPADDR, _tlv(0x0C, "bücher.example".encode())),
        x509.OtherName(ID_ON_DNSSRV, _tlv(0x0C, b"_xmpp-server.utf8.example")),  # not an IA5String
        x509.OtherName(ID_ON_DNSSRV, _tlv(0x16, b"_xmpp-server.srv.example")),
    ]
    seen = seen_by_server(server_context, client_context(ca, ca.issue_names(names, tmp_path)))
    assert seen.identities.xmpp_addrs == ("wrapped.example", LONG, "bücher.example")
    assert seen.identities.srv_names == ("_xmpp-server.srv.example",)
    assert seen.valid_for("wrapped.example") and seen.valid_for("srv.example")
    assert not seen.valid_for("ia5.example") and not seen.valid_for("utf8.example")


@pytest.mark.parametrize(("presented", "domain", "matches"), [
    ("example.org", "example.org", True),
    ("Example.ORG.", "example.org", True),
    ("*.example.org", "chat.example.org", True),
    ("*.example.org", "CHAT.example.org", True),
    ("*.example.org", "example.org", False),
    ("*.example.org", "a.chat.example.org", False),
    ("f*.example.org", "foo.example.org", False),
    ("*oo.example.org", "foo.example.org", False),
    ("chat.*.org", "chat.example.org", False),
    ("*.*.example.org", "a.b.example.org", False),
    ("*.org", "example.org", False),
    ("*", "example", False),
    ("xn--bcher-kva.example", "bücher.example", True),
    ("*.xn--bcher-kva.example", "chat.Bücher.example", True),
    ("other.example", "example.org", False),
    ("192.0.2.1", "192.0.2.1", False),
])
def test_dns_id_rules(presented: str, domain: str, matches: bool) -> None:
    assert CertificateIdentities(dns_names=(presented,)).covers(domain) is matches
    # A CN-ID, where one counts, follows the same rules (RFC 6125 §6.4.4).
    assert CertificateIdentities(common_names=(presented,)).covers(domain) is matches


@pytest.mark.parametrize(("presented", "domain", "matches"), [
    ("_xmpp-server.example.org", "example.org", True),
    ("_XMPP-Server.Example.org", "example.org", True),
    ("_xmpp-client.example.org", "example.org", False),
    ("_xmpp-server.example.org", "chat.example.org", False),
    ("_xmpp-server", "example.org", False),
])
def test_srv_id_rules(presented: str, domain: str, matches: bool) -> None:
    assert CertificateIdentities(srv_names=(presented,)).covers(domain) is matches


def test_xmpp_addr_is_exact() -> None:
    identities = CertificateIdentities(xmpp_addrs=("*.example.org", "example.org/resource"))
    assert not identities.covers("chat.example.org")
    assert not identities.covers("example.org")


def test_unverified_certificate_is_valid_for_nothing() -> None:
    seen = PeerCertificate(verified=False, reason="self-signed certificate",
                           identities=CertificateIdentities(dns_names=(LOCAL,)))
    assert seen.identities.covers(LOCAL) and not seen.valid_for(LOCAL)


# ------------------------------------------------------------------ context construction


def test_client_context_needs_certificate_and_key_together(ca: CA, certs: Path) -> None:
    cert, _ = ca.issue([LOCAL], certs)
    with pytest.raises(ValueError, match="both"):
        s2s_client_context(cert, None)


def test_missing_ca_file_is_refused(ca: CA, certs: Path, tmp_path: Path) -> None:
    cert, key = ca.issue([REMOTE], certs)
    with pytest.raises(ValueError, match="CA file"):
        s2s_server_context(cert, key, cafile=tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="CA file"):
        s2s_client_context(cafile=tmp_path / "missing.pem")


def test_mismatched_client_key_is_explained(ca: CA, certs: Path) -> None:
    cert, _ = ca.issue([LOCAL], certs)
    _, other_key = ca.issue(["other.example"], certs)
    with pytest.raises(ValueError, match="does not match"):
        s2s_client_context(cert, other_key)


def test_contexts_follow_our_policy(ca: CA, server_context: ssl.SSLContext) -> None:
    client = client_context(ca)
    for context in (server_context, client):
        assert context.minimum_version is ssl.TLSVersion.TLSv1_2
        assert context.options & ssl.OP_NO_COMPRESSION
        assert context.verify_mode is ssl.CERT_OPTIONAL
    assert client.check_hostname is False


def test_direct_tls_negotiates_xmpp_server_alpn(ca: CA, server_context: ssl.SSLContext) -> None:
    server_obj, client_obj = handshake(server_context, client_context(ca, alpn=("xmpp-server",)))
    assert server_obj.selected_alpn_protocol() == client_obj.selected_alpn_protocol() == "xmpp-server"


# ------------------------------------------------------------------ over real sockets


async def test_loopback_both_directions(ca: CA, certs: Path, server_context: ssl.SSLContext) -> None:
    client = client_context(ca, ca.issue([LOCAL], certs))
    seen_by_remote: asyncio.Future[PeerCertificate] = asyncio.get_running_loop().create_future()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen_by_remote.set_result(peer_certificate(writer.get_extra_info("ssl_object")))
        writer.write(b"!")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(accepted, "127.0.0.1", 0, ssl=server_context)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname=REMOTE)
        seen_by_local = peer_certificate(writer.get_extra_info("ssl_object"))
        assert await reader.read(1) == b"!"
        writer.close()
        await writer.wait_closed()
    assert seen_by_local.valid_for(REMOTE) and not seen_by_local.valid_for(LOCAL)
    remote_view = await seen_by_remote
    assert remote_view.valid_for(LOCAL) and not remote_view.valid_for(REMOTE)


class _InitiatingHandler:
    """The runtime side of a StreamTransport whose core starts TLS as the client."""

    def __init__(self, transport: StreamTransport, context: ssl.SSLContext) -> None:
        self._transport = transport
        self._context = context
        self.tls: asyncio.Future[ssl.SSLObject | None] = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Task[None]] = set()
        self._core = C2SClient(jid="user@" + REMOTE, password="secret", now=asyncio.get_running_loop().time(),
                               nonce_factory=lambda: "nonce", tls_available=True)
        self._core.start()

    @property
    def core(self) -> C2SClient:
        return self._core

    def handle_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.TlsProceed):
            self._transport.pause_reading()
            task = asyncio.ensure_future(self._upgrade())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _upgrade(self) -> None:
        try:
            obj = await self._transport.start_tls(self._context, server_side=False, server_hostname=REMOTE)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            self.tls.set_exception(exc)
            return
        self._core.tls_established()
        self._transport.resume_reading()
        self._transport.pump()
        self.tls.set_result(obj)

    def transport_closed(self) -> None:
        if not self.tls.done():
            self.tls.set_exception(ConnectionError("closed before TLS"))


async def _read_until(reader: asyncio.StreamReader, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = await reader.read(4096)
        assert chunk, f"connection closed before {marker!r}; got {data!r}"
        data += chunk
    return data


async def test_stream_transport_starts_tls_as_the_client(
        ca: CA, certs: Path, server_context: ssl.SSLContext) -> None:
    """STARTTLS from the initiating side: <proceed/>, client handshake with SNI, then the
    restarted stream header travels encrypted."""
    seen_by_remote: asyncio.Future[tuple[PeerCertificate, bytes]] = asyncio.get_running_loop().create_future()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            b"xmlns:stream='http://etherx.jabber.org/streams' from='" + REMOTE.encode() + b"' id='s1' "
            b"version='1.0'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
            b"<required/></starttls></stream:features>")
        await _read_until(reader, b"<starttls")
        writer.write(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await writer.drain()
        await writer.start_tls(server_context)
        header = await _read_until(reader, b"stream:stream")
        seen_by_remote.set_result((peer_certificate(writer.get_extra_info("ssl_object")), header))
        writer.close()

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    handlers: list[_InitiatingHandler] = []

    def make_handler(transport: StreamTransport) -> _InitiatingHandler:
        handlers.append(_InitiatingHandler(transport, client_context(ca, ca.issue([LOCAL], certs))))
        return handlers[0]

    async with server:
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(lambda: StreamTransport(make_handler), "127.0.0.1", port)
        obj = await asyncio.wait_for(handlers[0].tls, 10)
        seen, header = await asyncio.wait_for(seen_by_remote, 10)
        protocol.abort()
    assert obj is not None and obj is protocol.ssl_object and not obj.server_side
    assert obj.server_hostname == REMOTE
    assert peer_certificate(obj).valid_for(REMOTE)
    assert b"user@" + REMOTE.encode() in header  # RFC 6120 §4.7.1: 'from' once protected
    assert seen.valid_for(LOCAL)


async def test_server_side_start_tls_takes_no_hostname(ca: CA) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    handlers: list[_InitiatingHandler] = []

    def make_handler(transport: StreamTransport) -> _InitiatingHandler:
        handlers.append(_InitiatingHandler(transport, client_context(ca)))
        return handlers[0]

    async with server:
        port = server.sockets[0].getsockname()[1]
        _, protocol = await asyncio.get_running_loop().create_connection(
            lambda: StreamTransport(make_handler), "127.0.0.1", port)
        with pytest.raises(ValueError, match="client side"):
            await protocol.start_tls(client_context(ca), server_hostname=REMOTE)
        protocol.abort()

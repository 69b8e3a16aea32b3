"""RFC 9266 tls-exporter, XEP-0368 ALPN and the self-signed certificate helper — loopback only."""

from __future__ import annotations

import datetime
import socket
import ssl
import stat
import sys
import sysconfig
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

from xmppcore.transport.tls import (
    CERTIFICATE_VALIDITY,
    CHANNEL_BINDING_LABEL,
    client_ssl_context,
    ensure_self_signed_certificate,
    server_ssl_context,
    tls_exporter,
    tls_exporter_available,
)

DOMAIN = "example.org"


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return ensure_self_signed_certificate(tmp_path_factory.mktemp("tls"), [DOMAIN])


def _load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _san(path: Path) -> list[str]:
    ext = _load_cert(path).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return ext.value.get_values_for_type(x509.DNSName)


# ------------------------------------------------------------------ in-memory handshakes


class _StdlibEnd:
    """One TLS end on a MemoryBIO pair."""

    def __init__(self, context: ssl.SSLContext, *, server_side: bool, hostname: str = DOMAIN) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = context.wrap_bio(
            self.incoming, self.outgoing, server_side=server_side,
            server_hostname=None if server_side else hostname,
        )
        self.done = False

    def step(self) -> None:
        if not self.done:
            try:
                self.obj.do_handshake()
                self.done = True
            except ssl.SSLWantReadError:
                pass

    def feed(self, data: bytes) -> None:
        self.incoming.write(data)

    def drain(self) -> bytes:
        return self.outgoing.read()


class _PyOpenSSLClient:
    def __init__(self) -> None:
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_3_VERSION)
        self.conn = SSL.Connection(context, None)
        self.conn.set_tlsext_host_name(DOMAIN.encode())
        self.conn.set_connect_state()
        self.done = False

    def step(self) -> None:
        if not self.done:
            try:
                self.conn.do_handshake()
                self.done = True
            except SSL.WantReadError:
                pass

    def feed(self, data: bytes) -> None:
        if data:
            self.conn.bio_write(data)

    def drain(self) -> bytes:
        try:
            return bytes(self.conn.bio_read(1 << 16))
        except SSL.WantReadError:
            return b""


def _handshake(client: _StdlibEnd | _PyOpenSSLClient, server: _StdlibEnd) -> None:
    for _ in range(10):
        client.step()
        server.feed(client.drain())
        server.step()
        client.feed(server.drain())
        if client.done and server.done:
            return
    raise AssertionError("handshake did not complete")


def _stdlib_pair(
    cert_pair: tuple[Path, Path], client_context: ssl.SSLContext | None = None, alpn: tuple[str, ...] = ()
) -> tuple[_StdlibEnd, _StdlibEnd]:
    client_context = client_context or client_ssl_context(cafile=cert_pair[0])
    server = _StdlibEnd(server_ssl_context(*cert_pair, alpn=alpn), server_side=True)
    client = _StdlibEnd(client_context, server_side=False)
    _handshake(client, server)
    return client, server


needs_exporter = pytest.mark.skipif(not tls_exporter_available(), reason="ctypes route unsupported")


# ------------------------------------------------------------------ tls-exporter


def test_exporter_available_on_known_cpython() -> None:
    known = (
        sys.implementation.name == "cpython"
        and sys.version_info[:2] in {(3, 11), (3, 12), (3, 13)}
        and not sysconfig.get_config_var("Py_GIL_DISABLED")
        and not hasattr(sys, "gettotalrefcount")
    )
    if not known:
        pytest.skip("interpreter outside the supported set")
    assert tls_exporter_available()


@needs_exporter
def test_stdlib_ends_agree_on_32_bytes(cert_pair: tuple[Path, Path]) -> None:
    client, server = _stdlib_pair(cert_pair)
    assert server.obj.version() == "TLSv1.3"
    server_binding = tls_exporter(server.obj)
    assert server_binding is not None and len(server_binding) == 32
    assert tls_exporter(client.obj) == server_binding


@needs_exporter
def test_binding_differs_between_connections(cert_pair: tuple[Path, Path]) -> None:
    first = tls_exporter(_stdlib_pair(cert_pair)[1].obj)
    second = tls_exporter(_stdlib_pair(cert_pair)[1].obj)
    assert first is not None and second is not None and first != second


@needs_exporter
def test_matches_pyopenssl_exporter(cert_pair: tuple[Path, Path]) -> None:
    server = _StdlibEnd(server_ssl_context(*cert_pair), server_side=True)
    client = _PyOpenSSLClient()
    _handshake(client, server)
    ours = tls_exporter(server.obj)
    # RFC 9266 §2: zero-length context; RFC 8446 §7.5: in TLS 1.3 "no context" is the same.
    theirs = client.conn.export_keying_material(CHANNEL_BINDING_LABEL, 32, b"")
    assert ours is not None and ours == theirs
    assert client.conn.export_keying_material(CHANNEL_BINDING_LABEL, 32, None) == ours
    assert client.conn.export_keying_material(b"EXPORTER-other", 32, b"") != ours


def test_none_before_handshake(cert_pair: tuple[Path, Path]) -> None:
    server = _StdlibEnd(server_ssl_context(*cert_pair), server_side=True)
    client = _StdlibEnd(client_ssl_context(cafile=cert_pair[0]), server_side=False)
    assert tls_exporter(client.obj) is None
    client.step()
    server.feed(client.drain())
    server.step()  # server has sent its flight but not yet seen the client's Finished
    assert not server.done
    assert tls_exporter(server.obj) is None


def test_none_for_tls_1_2(cert_pair: tuple[Path, Path]) -> None:
    context = client_ssl_context(cafile=cert_pair[0])
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    client, server = _stdlib_pair(cert_pair, context)
    assert server.obj.version() == "TLSv1.2"
    assert tls_exporter(server.obj) is None
    assert tls_exporter(client.obj) is None


def test_none_for_unconnected_socket() -> None:
    context = client_ssl_context(verify=False)
    with context.wrap_socket(socket.socket(), do_handshake_on_connect=False) as wrapped:
        assert tls_exporter(wrapped) is None


@needs_exporter
def test_sslsocket_over_socketpair(cert_pair: tuple[Path, Path]) -> None:
    left, right = socket.socketpair()
    server = server_ssl_context(*cert_pair).wrap_socket(left, server_side=True, do_handshake_on_connect=False)
    client = client_ssl_context(cafile=cert_pair[0]).wrap_socket(
        right, server_hostname=DOMAIN, do_handshake_on_connect=False
    )
    with server, client:
        server.setblocking(False)
        client.setblocking(False)
        pending = {server, client}
        for _ in range(20):
            for end in list(pending):
                try:
                    end.do_handshake()
                    pending.discard(end)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
            if not pending:
                break
        assert not pending
        binding = tls_exporter(server)
        assert binding is not None and binding == tls_exporter(client)


# ------------------------------------------------------------------ contexts


def test_alpn_xmpp_client_negotiated(cert_pair: tuple[Path, Path]) -> None:
    context = client_ssl_context(cafile=cert_pair[0])
    context.set_alpn_protocols(["xmpp-client"])
    client, server = _stdlib_pair(cert_pair, context, alpn=("xmpp-client",))
    assert server.obj.selected_alpn_protocol() == "xmpp-client"
    assert client.obj.selected_alpn_protocol() == "xmpp-client"


def test_client_without_alpn_still_connects(cert_pair: tuple[Path, Path]) -> None:
    client, server = _stdlib_pair(cert_pair, alpn=("xmpp-client",))
    assert server.obj.selected_alpn_protocol() is None


def test_certificate_verified_against_cafile(cert_pair: tuple[Path, Path], tmp_path: Path) -> None:
    other_cert, _ = ensure_self_signed_certificate(tmp_path, [DOMAIN])
    with pytest.raises(ssl.SSLCertVerificationError):
        _stdlib_pair(cert_pair, client_ssl_context(cafile=other_cert))
    server = _StdlibEnd(server_ssl_context(*cert_pair), server_side=True)
    client = _StdlibEnd(client_ssl_context(cafile=cert_pair[0]), server_side=False, hostname="other.example")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(client, server)


def test_server_context_minimum_is_tls_1_2(cert_pair: tuple[Path, Path]) -> None:
    context = server_ssl_context(*cert_pair)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION


def test_missing_certificate_file_is_named(cert_pair: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nope-cert.pem"):
        server_ssl_context(tmp_path / "nope-cert.pem", cert_pair[1])
    with pytest.raises(ValueError, match="nope-key.pem"):
        server_ssl_context(cert_pair[0], tmp_path / "nope-key.pem")


def test_garbage_certificate_is_named(cert_pair: tuple[Path, Path], tmp_path: Path) -> None:
    bad = tmp_path / "garbage.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="certificate file .*garbage.pem"):
        server_ssl_context(bad, cert_pair[1])


def test_mismatched_key_is_named(cert_pair: tuple[Path, Path], tmp_path: Path) -> None:
    _, other_key = ensure_self_signed_certificate(tmp_path, [DOMAIN])
    with pytest.raises(ValueError, match="does not match"):
        server_ssl_context(cert_pair[0], other_key)


def test_encrypted_key_refused_without_prompt(cert_pair: tuple[Path, Path], tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(cert_pair[1].read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    ))
    with pytest.raises(ValueError, match="encrypted"):
        server_ssl_context(cert_pair[0], encrypted)


def test_client_context_refuses_cafile_without_verify(cert_pair: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError):
        client_ssl_context(verify=False, cafile=cert_pair[0])


# ------------------------------------------------------------------ certificates


def test_certificate_created(tmp_path: Path) -> None:
    domains = ["Example.ORG", "conference.example.org"]
    cert_path, key_path = ensure_self_signed_certificate(tmp_path / "certs", domains)
    assert (cert_path, key_path) == (tmp_path / "certs" / "cert.pem", tmp_path / "certs" / "key.pem")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = _load_cert(cert_path)
    assert _san(cert_path) == ["example.org", "conference.example.org"]
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == "secp256r1"
    assert cert.version == x509.Version.v3
    assert cert.issuer == cert.subject
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert CERTIFICATE_VALIDITY <= lifetime <= CERTIFICATE_VALIDITY + datetime.timedelta(days=1)
    assert cert.not_valid_before_utc <= datetime.datetime.now(datetime.timezone.utc)
    assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == ["cert.pem", "key.pem"]


def test_certificate_reused(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed_certificate(tmp_path, ["a.example", "b.example"])
    before = cert_path.read_bytes(), key_path.read_bytes()
    ensure_self_signed_certificate(tmp_path, ["B.example"])  # a subset is covered
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before


def test_certificate_regenerated_when_domains_change(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed_certificate(tmp_path, ["a.example"])
    before = cert_path.read_bytes(), key_path.read_bytes()
    ensure_self_signed_certificate(tmp_path, ["a.example", "c.example"])
    assert cert_path.read_bytes() != before[0] and key_path.read_bytes() != before[1]
    assert _san(cert_path) == ["a.example", "c.example"]
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_expired_certificate_regenerated(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed_certificate(tmp_path, [DOMAIN])
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    old = _load_cert(cert_path)
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    expired = (
        x509.CertificateBuilder().subject_name(old.subject).issuer_name(old.issuer)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(past).not_valid_after(past + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(DOMAIN)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    ensure_self_signed_certificate(tmp_path, [DOMAIN])
    assert _load_cert(cert_path).not_valid_after_utc > datetime.datetime.now(datetime.timezone.utc)


def test_corrupt_files_regenerated(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed_certificate(tmp_path, [DOMAIN])
    key_path.write_text("garbage")
    ensure_self_signed_certificate(tmp_path, [DOMAIN])
    server_ssl_context(cert_path, key_path)  # loads: the pair belongs together again


def test_certificate_needs_a_domain(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ensure_self_signed_certificate(tmp_path, [])
    with pytest.raises(TypeError):
        ensure_self_signed_certificate(tmp_path, "example.org")

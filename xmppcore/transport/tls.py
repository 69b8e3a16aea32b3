"""RFC 6120 §5 (STARTTLS), XEP-0368 (direct TLS) and RFC 9266 (tls-exporter) — TLS helpers.

Three things the transports need and the standard library does not give in one piece:

* a self-signed certificate for a server that has none configured (development, tests,
  first start), created once and reused while it still covers the served domains;
* server and client :class:`ssl.SSLContext` objects with our policy (TLS 1.2 minimum, no
  compression, no renegotiation, ALPN for direct TLS);
* the RFC 9266 ``tls-exporter`` channel binding for SCRAM-*-PLUS. Python's :mod:`ssl` does
  not expose keying-material exporters, so :func:`tls_exporter` reaches the ``SSL *`` held by
  CPython's ``_ssl`` object through :mod:`ctypes`, validates it against what the interpreter
  itself reports, and calls OpenSSL's ``SSL_export_keying_material`` from the very library
  ``_ssl`` is linked to. Anything unexpected makes it return ``None`` (no channel binding,
  so no ``-PLUS`` mechanisms) rather than guess.
"""

from __future__ import annotations

import ctypes
import datetime
import functools
import logging
import os
import ssl
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import _ssl
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CERTIFICATE_VALIDITY",
    "CHANNEL_BINDING_LABEL",
    "CHANNEL_BINDING_LENGTH",
    "client_ssl_context",
    "ensure_self_signed_certificate",
    "server_ssl_context",
    "tls_exporter",
    "tls_exporter_available",
]

_log = logging.getLogger(__name__)

# 825 days: the longest lifetime CA/Browser Forum rules and Apple platforms accepted for a
# TLS server certificate when this was chosen; clients that pin a self-signed certificate
# keep working for over two years, and nobody is tempted to keep one for a decade.
CERTIFICATE_VALIDITY = datetime.timedelta(days=825)
# Replace a certificate this close to expiry at start-up rather than let a long-running
# server cross the deadline.
_RENEWAL_MARGIN = datetime.timedelta(days=30)
# Tolerate peers whose clock is a little behind ours.
_BACKDATE = datetime.timedelta(hours=1)
_CERT_NAME = "cert.pem"
_KEY_NAME = "key.pem"

# RFC 9266 §2: label "EXPORTER-Channel-Binding" (no NUL), zero-length context, 32 bytes.
CHANNEL_BINDING_LABEL = b"EXPORTER-Channel-Binding"
CHANNEL_BINDING_LENGTH = 32
_TLS1_3_VERSION = 0x0304  # OpenSSL's TLS1_3_VERSION, what SSL_version() returns

# CPython versions whose _ssl objects are known to start with
# {PyObject_HEAD; PyObject *Socket; SSL *ssl; ...} (PySSLSocket) and
# {PyObject_HEAD; SSL_CTX *ctx; ...} (PySSLContext).
_KNOWN_SSL_LAYOUTS = frozenset({(3, 11), (3, 12), (3, 13)})
_C_SSL_SOCKET: object = getattr(_ssl, "_SSLSocket", None)  # not in typeshed


# --------------------------------------------------------------------------- certificates


def ensure_self_signed_certificate(directory: Path, domains: Sequence[str]) -> tuple[Path, Path]:
    """Return ``(directory/"cert.pem", directory/"key.pem")``, creating them when needed.

    Existing files are reused when they load, belong together, name every domain in
    ``domains`` as a SAN dNSName (exact match, case-insensitive) and stay valid for more
    than 30 days. Otherwise a new EC P-256 key and a self-signed X.509 v3 certificate,
    valid for :data:`CERTIFICATE_VALIDITY` (825 days), replace them. Both files are written
    atomically (temporary file + rename); the key file has mode 0600.

    Raises ValueError when ``domains`` is empty or a domain cannot be an A-label.
    """
    names = _normalise_domains(domains)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / _CERT_NAME, directory / _KEY_NAME
    now = datetime.datetime.now(datetime.timezone.utc)
    if _existing_certificate_usable(cert_path, key_path, names, now):
        return cert_path, key_path
    _log.info("creating a self-signed certificate for %s in %s", ", ".join(names), directory)
    cert_pem, key_pem = _build_self_signed(names, now)
    # Key first: a reader that sees the new certificate then also sees its key.
    _write_atomically(key_path, key_pem, mode=0o600)
    _write_atomically(cert_path, cert_pem, mode=0o644)
    return cert_path, key_path


def _normalise_domains(domains: Sequence[str]) -> tuple[str, ...]:
    if isinstance(domains, str):
        raise TypeError("domains must be a sequence of names, not a single string")
    names: list[str] = []
    for domain in domains:
        try:
            # dNSName is an IA5String (RFC 5280 §4.2.1.6): internationalised names go in
            # as A-labels.
            name = domain.strip().rstrip(".").encode("idna").decode("ascii").lower()
        except UnicodeError as exc:
            raise ValueError(f"domain {domain!r} cannot be put in a certificate: {exc}") from None
        if not name:
            raise ValueError(f"empty domain name in {list(domains)!r}")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError("a certificate needs at least one domain")
    return tuple(names)


def _existing_certificate_usable(
    cert_path: Path, key_path: Path, names: tuple[str, ...], now: datetime.datetime
) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except FileNotFoundError:
        return False
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound) as exc:
        _log.warning("replacing unusable certificate %s or key %s: %s", cert_path, key_path, exc)
        return False
    covered = {name.lower() for name in san.get_values_for_type(x509.DNSName)}
    if not covered.issuperset(names):
        _log.info("certificate %s does not cover %s", cert_path, ", ".join(sorted(set(names) - covered)))
        return False
    if cert.not_valid_after_utc - now < _RENEWAL_MARGIN or cert.not_valid_before_utc > now:
        _log.info("certificate %s is expired, about to expire or not yet valid", cert_path)
        return False
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        _log.warning("key %s does not belong to certificate %s", key_path, cert_path)
        return False
    if key_path.stat().st_mode & 0o077:
        _log.warning("private key %s is readable by other users; chmod 600 it", key_path)
    return True


def _build_self_signed(names: tuple[str, ...], now: datetime.datetime) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "xmppcore self-signed")]
    if len(names[0]) <= 64:  # RFC 5280 ub-common-name; the SAN is what clients check anyway
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, names[0]))
    subject = x509.Name(attributes)
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CERTIFICATE_VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        # clientAuth too: on s2s links our server is the TLS client.
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    # mkstemp creates the file 0600 in the target directory, so the key is never readable
    # by others, even briefly, and os.replace is an atomic rename on one filesystem.
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as temp_file:
            temp_file.write(data)
            temp_file.flush()
            os.fsync(temp_file.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- SSL contexts


def server_ssl_context(certfile: Path, keyfile: Path, *, alpn: Sequence[str] = ()) -> ssl.SSLContext:
    """A server-side context: TLS 1.2 minimum, no compression, no renegotiation.

    ``alpn`` lists the protocols to accept (direct TLS per XEP-0368 uses ``"xmpp-client"``
    or ``"xmpp-server"``); a client offering none of them still connects, without ALPN.
    Raises ValueError naming the file when the certificate or key cannot be loaded.
    """
    for role, path in (("certificate", certfile), ("private key", keyfile)):
        if not Path(path).is_file():
            raise ValueError(f"TLS {role} file {path} does not exist or is not a regular file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _apply_policy(context)
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_SINGLE_ECDH_USE

    def refuse_password() -> bytes:
        # Without a callback OpenSSL would prompt on the terminal and hang the server.
        raise ValueError(f"TLS private key file {keyfile} is encrypted; give an unencrypted key")

    try:
        context.load_cert_chain(certfile, keyfile, password=refuse_password)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(_explain_load_failure(Path(certfile), Path(keyfile), exc)) from exc
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def client_ssl_context(*, verify: bool = True, cafile: Path | None = None) -> ssl.SSLContext:
    """A client-side context for bots and tests; verifies the server unless ``verify=False``.

    With ``cafile`` only that file's certificates are trusted (e.g. our self-signed one);
    without it, the system trust store.
    """
    if verify:
        if cafile is not None and not Path(cafile).is_file():
            raise ValueError(f"CA file {cafile} does not exist or is not a regular file")
        context = ssl.create_default_context(cafile=os.fspath(cafile) if cafile else None)
    else:
        if cafile is not None:
            raise ValueError("cafile is only meaningful with verify=True")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    _apply_policy(context)
    return context


def _apply_policy(context: ssl.SSLContext) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # CRIME: no compression. RFC 9266 §2: tls-exporter is undefined on a connection that
    # allows renegotiation (TLS 1.2 only; TLS 1.3 has none).
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION


def _explain_load_failure(certfile: Path, keyfile: Path, exc: BaseException) -> str:
    # OpenSSL's error does not say which of the two files is at fault; find out.
    try:
        cert = x509.load_pem_x509_certificate(certfile.read_bytes())
    except (OSError, ValueError) as err:
        return f"TLS certificate file {certfile} cannot be loaded: {err}"
    try:
        key = serialization.load_pem_private_key(keyfile.read_bytes(), password=None)
    except TypeError:
        return f"TLS private key file {keyfile} is encrypted; give an unencrypted key"
    except (OSError, ValueError) as err:
        return f"TLS private key file {keyfile} cannot be loaded: {err}"
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        return f"TLS private key file {keyfile} does not match certificate file {certfile}"
    return f"cannot load TLS certificate {certfile} with private key {keyfile}: {exc}"


# --------------------------------------------------------------------------- tls-exporter


@dataclass(frozen=True, slots=True)
class _LibSsl:
    """The few OpenSSL entry points we call, typed, from the library _ssl is linked to."""

    library: ctypes.PyDLL

    def ssl_ctx_of(self, ssl_ptr: int) -> int:
        return int(self.library.SSL_get_SSL_CTX(ctypes.c_void_p(ssl_ptr)) or 0)

    def handshake_finished(self, ssl_ptr: int) -> bool:
        return bool(self.library.SSL_is_init_finished(ctypes.c_void_p(ssl_ptr)) == 1)

    def protocol_version(self, ssl_ptr: int) -> int:
        return int(self.library.SSL_version(ctypes.c_void_p(ssl_ptr)))

    def export(self, ssl_ptr: int, label: bytes, context: bytes, length: int) -> bytes | None:
        out = ctypes.create_string_buffer(length)
        rc = self.library.SSL_export_keying_material(
            ctypes.c_void_p(ssl_ptr), out, length, label, len(label), context, len(context), 1
        )
        return out.raw if rc == 1 else None


def tls_exporter_available() -> bool:
    """Whether :func:`tls_exporter` can work in this interpreter (checked once)."""
    return _load_libssl() is not None


def tls_exporter(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> bytes | None:
    """The RFC 9266 ``tls-exporter`` channel binding of a TLS 1.3 connection, or ``None``.

    ``None`` means "no channel binding": the handshake is not finished, the connection is
    not TLS 1.3, or this interpreter does not support the ctypes route. It never raises.
    """
    try:
        return _export_channel_binding(ssl_object)
    except Exception:  # a missing binding only disables -PLUS; never take the connection down
        _log.warning("tls-exporter failed; offering no channel binding", exc_info=True)
        return None


def _export_channel_binding(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> bytes | None:
    lib = _load_libssl()
    if lib is None:
        return None
    # version() is None until the handshake has finished. RFC 9266 §4 and RFC 7627 §5.4:
    # a TLS 1.2 exporter is only safe with the extended master secret, which the ssl
    # module cannot tell us about, so we bind TLS 1.3 only.
    if ssl_object.version() != "TLSv1.3":
        return None
    ssl_ptr = _ssl_pointer(lib, ssl_object)
    # OpenSSL itself must agree the handshake is done and negotiated TLS 1.3.
    if ssl_ptr is None or not lib.handshake_finished(ssl_ptr) or lib.protocol_version(ssl_ptr) != _TLS1_3_VERSION:
        return None
    # RFC 9266 §2: zero-length context. In TLS 1.3 "no context" and "empty context" give
    # the same value (RFC 8446 §7.5), so peers using either interoperate.
    return lib.export(ssl_ptr, CHANNEL_BINDING_LABEL, b"", CHANNEL_BINDING_LENGTH)


def _ssl_pointer(lib: _LibSsl, ssl_object: ssl.SSLObject | ssl.SSLSocket) -> int | None:
    """The ``SSL *`` behind ``ssl_object``, or ``None`` when its layout cannot be confirmed.

    Shared with :mod:`.s2s_tls`, which reads the peer's certificate verdict the same way.
    """
    c_socket = getattr(ssl_object, "_sslobj", None)
    c_context = ssl_object.context
    if type(c_socket) is not _C_SSL_SOCKET or not isinstance(c_context, _ssl._SSLContext):
        return None
    header = object.__basicsize__  # sizeof(PyObject), whatever the build adds to it
    pointer = ctypes.sizeof(ctypes.c_void_p)
    ssl_ptr = ctypes.c_void_p.from_address(id(c_socket) + header + pointer).value
    ctx_ptr = ctypes.c_void_p.from_address(id(c_context) + header).value
    if not ssl_ptr or not ctx_ptr:
        return None
    # Two reads through two independent layouts must agree before we trust the pointer:
    # the SSL * must belong to the SSL_CTX * of the connection's own context.
    if lib.ssl_ctx_of(ssl_ptr) != ctx_ptr:
        _log.warning("_ssl object layout not as expected; OpenSSL access through ctypes disabled")
        return None
    return ssl_ptr


def _interpreter_layout_known() -> bool:
    if sys.implementation.name != "cpython" or sys.version_info[:2] not in _KNOWN_SSL_LAYOUTS:
        return False
    if sysconfig.get_config_var("Py_GIL_DISABLED"):  # free-threaded: different PyObject_HEAD
        return False
    # Debug builds (Py_DEBUG/Py_TRACE_REFS) change object headers and allocations.
    if hasattr(sys, "gettotalrefcount") or sysconfig.get_config_var("Py_TRACE_REFS"):
        return False
    return object.__basicsize__ == 2 * ctypes.sizeof(ctypes.c_void_p)


@functools.cache
def _load_libssl() -> _LibSsl | None:
    if not _interpreter_layout_known():
        _log.info("tls-exporter unavailable: unsupported interpreter %s", sys.version)
        return None
    try:
        # dlsym on _ssl's own handle searches its dependencies too, so this finds the
        # libssl/libcrypto that _ssl uses (or _ssl's own symbols if OpenSSL is linked in).
        # PyDLL keeps the GIL held: these calls take microseconds, and no Python thread can
        # drop the last reference to the connection meanwhile.
        library = ctypes.PyDLL(getattr(_ssl, "__file__", None))
        library.OpenSSL_version_num.restype = ctypes.c_ulong
        library.OpenSSL_version_num.argtypes = []
        runtime_version = library.OpenSSL_version_num()
        library.SSL_get_SSL_CTX.restype = ctypes.c_void_p
        library.SSL_get_SSL_CTX.argtypes = [ctypes.c_void_p]
        library.SSL_is_init_finished.restype = ctypes.c_int
        library.SSL_is_init_finished.argtypes = [ctypes.c_void_p]
        library.SSL_version.restype = ctypes.c_int
        library.SSL_version.argtypes = [ctypes.c_void_p]
        library.SSL_export_keying_material.restype = ctypes.c_int
        library.SSL_export_keying_material.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
            ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int,
        ]
    except (OSError, AttributeError) as exc:
        _log.info("tls-exporter unavailable: OpenSSL symbols not reachable: %s", exc)
        return None
    # The ssl module reports the runtime OpenSSL version; a different number means we
    # resolved another copy of the library, whose structures we must not touch.
    if runtime_version != ssl.OPENSSL_VERSION_NUMBER:
        _log.info("tls-exporter unavailable: resolved OpenSSL %#x, ssl uses %#x",
                  runtime_version, ssl.OPENSSL_VERSION_NUMBER)
        return None
    return _LibSsl(library)

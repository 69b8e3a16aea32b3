"""RFC 6120 §13.7.1.2, RFC 6125, RFC 7590 and XEP-0178 — TLS between servers.

Two servers authenticate each other by certificate when they can (SASL EXTERNAL, XEP-0178)
and fall back to dialback (XEP-0220) when they cannot. So a peer whose certificate is
self-signed, expired or from an unknown authority must still complete the TLS handshake:
both contexts made here ask for the peer's certificate and never fail the handshake because
of it. After the handshake :func:`peer_certificate` tells whether the chain verified, and
:meth:`PeerCertificate.valid_for` whether it also names the domain the peer speaks for.

Python's :mod:`ssl` cannot do this alone: ``CERT_OPTIONAL`` aborts the handshake on a
certificate that does not verify, and ``CERT_NONE`` on a server asks for no certificate at
all. We install an OpenSSL verify callback that always continues
(``SSL_CTX_set_verify``) and read OpenSSL's verdict afterwards (``SSL_get_verify_result``),
through the same validated ctypes route :mod:`.tls` uses for ``tls-exporter``. Where that
route is unavailable, servers request no certificate, clients do not verify, and every
peer counts as unverified: dialback still works. The names a certificate presents, and the
RFC 6125 rules for matching them, are in :mod:`.cert_names`.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cert_names import CertificateIdentities, certificate_identities
from .tls import (
    _apply_policy,
    _explain_load_failure,
    _LibSsl,
    _load_libssl,
    _ssl_pointer,
    server_ssl_context,
)

__all__ = [
    "CertificateIdentities",
    "PeerCertificate",
    "peer_certificate",
    "peer_verification_available",
    "s2s_client_context",
    "s2s_server_context",
]

_log = logging.getLogger(__name__)

_SSL_VERIFY_PEER = 0x01
_X509_V_OK = 0
_X509_PURPOSE_SSL_SERVER = 2  # OpenSSL's X509_PURPOSE_SSL_SERVER

_VerifyCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


# --------------------------------------------------------------------------- contexts


def s2s_server_context(
    certfile: Path, keyfile: Path, *, cafile: Path | None = None, alpn: Sequence[str] = ("xmpp-server",),
) -> ssl.SSLContext:
    """The receiving server's context: our TLS policy and certificate (see
    :func:`.tls.server_ssl_context`), ALPN ``xmpp-server`` for direct TLS (XEP-0368), and a
    request for the initiating server's certificate that never fails the handshake.

    The peer's chain is checked against ``cafile`` alone when given, else the system's
    trust store. Raises ValueError naming the file that cannot be loaded.
    """
    context = server_ssl_context(certfile, keyfile, alpn=alpn)
    _load_trust(context, cafile, ssl.Purpose.CLIENT_AUTH)
    _ask_for_peer_certificate(context, server_side=True)
    return context


def s2s_client_context(
    certfile: Path | None = None, keyfile: Path | None = None, *,
    cafile: Path | None = None, alpn: Sequence[str] | None = None,
) -> ssl.SSLContext:
    """The initiating server's context: our TLS policy, our certificate when given (for the
    peer's SASL EXTERNAL), and a look at the receiving server's certificate that never
    fails the handshake. Host names are not checked here (``check_hostname`` is off): the
    runtime asks :meth:`PeerCertificate.valid_for` about the domain it wants.

    Pass ``alpn=("xmpp-server",)`` for direct TLS (XEP-0368 §3) and the remote domain as
    ``server_hostname`` when connecting (SNI). Raises ValueError on unusable files.
    """
    if (certfile is None) != (keyfile is None):
        raise ValueError("give both a certificate file and a key file, or neither")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _apply_policy(context)
    context.check_hostname = False  # RFC 6125 as profiled for XMPP: see PeerCertificate
    _load_trust(context, cafile, ssl.Purpose.SERVER_AUTH)
    if certfile is not None and keyfile is not None:
        _load_identity(context, Path(certfile), Path(keyfile))
    if alpn:
        context.set_alpn_protocols(list(alpn))
    _ask_for_peer_certificate(context, server_side=False)
    return context


def peer_verification_available() -> bool:
    """Whether this interpreter can verify s2s peers' certificates (checked once)."""
    return _peer_verifier() is not None


def _load_trust(context: ssl.SSLContext, cafile: Path | None, purpose: ssl.Purpose) -> None:
    if cafile is None:
        context.load_default_certs(purpose)
        return
    if not Path(cafile).is_file():
        raise ValueError(f"CA file {cafile} does not exist or is not a regular file")
    try:
        context.load_verify_locations(cafile=os.fspath(cafile))
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"CA file {cafile} cannot be loaded: {exc}") from exc


def _load_identity(context: ssl.SSLContext, certfile: Path, keyfile: Path) -> None:
    for role, path in (("certificate", certfile), ("private key", keyfile)):
        if not path.is_file():
            raise ValueError(f"TLS {role} file {path} does not exist or is not a regular file")

    def refuse_password() -> bytes:  # never let OpenSSL prompt on the terminal
        raise ValueError(f"TLS private key file {keyfile} is encrypted; give an unencrypted key")

    try:
        context.load_cert_chain(certfile, keyfile, password=refuse_password)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(_explain_load_failure(certfile, keyfile, exc)) from exc


def _ask_for_peer_certificate(context: ssl.SSLContext, *, server_side: bool) -> None:
    verifier = _peer_verifier()
    if verifier is not None:
        # Python's setting first: CERT_OPTIONAL is SSL_VERIFY_PEER alone (no
        # FAIL_IF_NO_PEER_CERT). CPython keeps an installed callback when verify_mode is
        # set later (_ssl.c _set_verify_mode), but ours goes in last anyway.
        context.verify_mode = ssl.CERT_OPTIONAL
        if verifier.install(context, server_side=server_side):
            return
    # Without the callback a bad certificate would abort the handshake: request none
    # (server) or check none (client); peer_certificate() then reports "unverified".
    context.verify_mode = ssl.CERT_NONE


# --------------------------------------------------------------------------- OpenSSL


def _continue_handshake(preverify_ok: int, store_ctx: int | None) -> int:
    # OpenSSL keeps the chain's verdict for SSL_get_verify_result whatever we answer;
    # answering 1 lets the handshake finish so that the peer can still use dialback.
    return 1


@dataclass(frozen=True, slots=True)
class _PeerVerifier:
    """The OpenSSL calls behind peer verification, from the library ``_ssl`` uses."""

    libssl: _LibSsl
    set_verify: Callable[..., None]
    set_purpose: Callable[..., int]
    verify_result: Callable[..., int]
    error_string: Callable[..., bytes | None]
    callback: object  # the C thunk: alive for the process, as contexts point at it

    def install(self, context: ssl.SSLContext, *, server_side: bool) -> bool:
        # The SSL_CTX * is trusted only once an SSL * made from this context leads back
        # to it (tls._ssl_pointer), so build a throwaway one.
        probe = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=server_side)
        ssl_ptr = _ssl_pointer(self.libssl, probe)
        if ssl_ptr is None:
            return False
        ctx_ptr = self.libssl.ssl_ctx_of(ssl_ptr)
        self.set_verify(ctx_ptr, _SSL_VERIFY_PEER, self.callback)
        # COMPAT: Let's Encrypt and other public CAs now issue serverAuth-only
        # certificates, which servers also present as TLS clients on s2s links; OpenSSL's
        # default purpose for a client certificate would reject them. The peer is a server
        # proving its domain, so check it as one (XEP-0178 §3 server certificates).
        if server_side and self.set_purpose(ctx_ptr, _X509_PURPOSE_SSL_SERVER) != 1:
            _log.warning("cannot set the certificate purpose for s2s peers; using OpenSSL's default")
        return True

    def verdict(self, ssl_object: ssl.SSLObject | ssl.SSLSocket) -> tuple[bool, str]:
        ssl_ptr = _ssl_pointer(self.libssl, ssl_object)
        if ssl_ptr is None or not self.libssl.handshake_finished(ssl_ptr):
            return False, "verification result unavailable"
        code = int(self.verify_result(ssl_ptr))
        if code == _X509_V_OK:
            return True, "ok"
        text = self.error_string(code)
        return False, text.decode("ascii", "replace") if text else f"verification error {code}"


@functools.cache
def _peer_verifier() -> _PeerVerifier | None:
    libssl = _load_libssl()
    if libssl is None:
        _log.warning("s2s peer certificates cannot be verified in this interpreter: "
                     "every peer counts as unverified (dialback only)")
        return None
    library = libssl.library
    try:
        return _PeerVerifier(
            libssl,
            set_verify=_prototype(library, "SSL_CTX_set_verify", None, ctypes.c_void_p, ctypes.c_int, _VerifyCallback),
            set_purpose=_prototype(library, "SSL_CTX_set_purpose", ctypes.c_int, ctypes.c_void_p, ctypes.c_int),
            verify_result=_prototype(library, "SSL_get_verify_result", ctypes.c_long, ctypes.c_void_p),
            error_string=_prototype(library, "X509_verify_cert_error_string", ctypes.c_char_p, ctypes.c_long),
            callback=_VerifyCallback(_continue_handshake),
        )
    except AttributeError as exc:
        _log.warning("s2s peer certificates cannot be verified (%s): every peer counts as unverified", exc)
        return None


def _prototype(library: ctypes.PyDLL, name: str, restype: Any, *argtypes: Any) -> Callable[..., Any]:
    function = library[name]  # a fresh function object: these prototypes are ours alone
    function.restype = restype
    function.argtypes = argtypes
    return function


# --------------------------------------------------------------------------- the peer


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """The peer's certificate after the handshake.

    ``verified``: the peer presented a certificate and OpenSSL verified its chain against
    our trust store; ``reason``: OpenSSL's text for the verdict ("ok" when verified) or
    why there is none ("no certificate", ...); ``identities``: the names it presents.
    """

    verified: bool
    reason: str
    identities: CertificateIdentities = field(default_factory=CertificateIdentities)

    def valid_for(self, domain: str) -> bool:
        """Verified and naming ``domain`` (XEP-0178 §3, RFC 6120 §13.7.1.2)."""
        return self.verified and self.identities.covers(domain)


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> PeerCertificate:
    """What the peer of this finished TLS connection proved with its certificate."""
    if ssl_object is None:
        return PeerCertificate(verified=False, reason="no TLS")
    try:
        der = ssl_object.getpeercert(binary_form=True)
    except ValueError:  # the handshake has not finished
        return PeerCertificate(verified=False, reason="TLS handshake not finished")
    if not der:
        return PeerCertificate(verified=False, reason="no certificate")
    try:
        identities = certificate_identities(der)
    except ValueError as exc:  # malformed certificate or extension: it names nothing
        _log.info("cannot read the names in the peer's certificate: %s", exc)
        identities = CertificateIdentities()
    verifier = _peer_verifier()
    if verifier is None:
        return PeerCertificate(verified=False, reason="verification unavailable", identities=identities)
    verified, reason = verifier.verdict(ssl_object)
    return PeerCertificate(verified=verified, reason=reason, identities=identities)

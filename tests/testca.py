"""A throwaway certification authority for tests: EC P-256 keys, PEM files in a directory.

``make_ca(dir)`` creates the CA (its certificate at ``CA.cert_path``, to pass as
``cafile``); ``ca.issue(domains, dir, ...)`` signs server certificates naming DNS-IDs,
XmppAddrs (RFC 6120 §13.7.1.4) and SRV-IDs (RFC 4985); ``self_signed(domain, dir)`` makes
the certificate a server without a configured one presents (xmppcore's own generator).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from xmppcore.transport.tls import ensure_self_signed_certificate

__all__ = ["CA", "make_ca", "self_signed"]

ID_ON_XMPPADDR = ObjectIdentifier("1.3.6.1.5.5.7.8.5")
ID_ON_DNSSRV = ObjectIdentifier("1.3.6.1.5.5.7.8.7")
_DAY = datetime.timedelta(days=1)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False,
    )


@dataclass(frozen=True)
class CA:
    """A certification authority whose certificate is at ``cert_path``."""

    cert_path: Path
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def issue(
        self, domains: Sequence[str], directory: Path, *, xmpp_addrs: Sequence[str] = (),
        srv_names: Sequence[str] = (), common_name: str | None = None,
        not_before: datetime.datetime | None = None, not_after: datetime.datetime | None = None,
        client_auth: bool = True,
    ) -> tuple[Path, Path]:
        """Sign a new end-entity certificate; return ``(cert_path, key_path)`` in ``directory``.

        ``domains`` become SAN dNSNames, ``xmpp_addrs`` id-on-xmppAddr UTF8Strings,
        ``srv_names`` (whole names such as ``"_xmpp-server.example.org"``) id-on-dnsSRV
        IA5Strings. With none of the three the certificate has no subjectAltName, only the
        subject ``common_name``. Valid from a day ago for 30 days unless told otherwise;
        ``client_auth=False`` leaves clientAuth out of the extended key usage.
        """
        for name, value in (("domains", domains), ("xmpp_addrs", xmpp_addrs), ("srv_names", srv_names)):
            if isinstance(value, str):
                raise TypeError(f"{name} must be a sequence of names, not a single string")
        names: list[x509.GeneralName] = [x509.DNSName(domain) for domain in domains]
        names += [x509.OtherName(ID_ON_XMPPADDR, _der(0x0C, addr.encode())) for addr in xmpp_addrs]
        names += [x509.OtherName(ID_ON_DNSSRV, _der(0x16, srv.encode("ascii"))) for srv in srv_names]
        stem = [*domains, *xmpp_addrs, *srv_names, common_name or "cert"][0]
        return self.issue_names(names, directory, stem=stem, common_name=common_name, not_before=not_before,
                                not_after=not_after, client_auth=client_auth)

    def issue_names(
        self, names: Sequence[x509.GeneralName], directory: Path, *, stem: str = "cert",
        common_name: str | None = None, not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None, client_auth: bool = True,
    ) -> tuple[Path, Path]:
        """Like :meth:`issue`, with exactly these subjectAltName entries (none: no SAN)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "xmppcore tests")]
        if common_name is not None:
            attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else [])
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - _DAY)
            .not_valid_after(not_after or now + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        directory.mkdir(parents=True, exist_ok=True)
        stem = _free_stem(directory, stem)
        cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
        key_path.write_bytes(_key_pem(key))
        key_path.chmod(0o600)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert_path, key_path


def make_ca(directory: Path, name: str = "xmppcore test CA") -> CA:
    """A new CA (EC P-256, valid a year) with its certificate written to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + 365 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / f"{_free_stem(directory, 'ca')}.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return CA(cert_path=cert_path, certificate=cert, key=key)


def self_signed(domain: str, directory: Path) -> tuple[Path, Path]:
    """The self-signed certificate xmppcore creates for ``domain`` when none is configured."""
    return ensure_self_signed_certificate(directory / _free_stem(directory, f"self-{domain}"), [domain])


def _free_stem(directory: Path, name: str) -> str:
    base = re.sub(r"[^A-Za-z0-9.-]+", "_", name) or "cert"
    stem, counter = base, 1
    while any(directory.glob(f"{stem}.*")) or (directory / stem).exists():
        counter += 1
        stem = f"{base}-{counter}"
    return stem

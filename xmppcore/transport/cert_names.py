"""RFC 6125, RFC 7590 and XEP-0178 — the names in a server's certificate, and whether one is a domain.

What a certificate presents (RFC 6125 §1.8: DNS-ID, SRV-ID, XmppAddr, and CN-ID only without
a subjectAltName), read from its DER form, and the matching rules RFC 6120 §13.7.1.2 and
RFC 7590 profile for server-to-server peers: A-label comparison, ``*`` as a whole left-most
label only.  Pure: whether the chain verified is :mod:`.s2s_tls`'s business.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import idna
from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

__all__ = ["CertificateIdentities", "certificate_identities"]

# RFC 6120 §13.7.1.4 id-on-xmppAddr (UTF8String); RFC 4985 id-on-dnsSRV (IA5String).
_ID_ON_XMPPADDR = ObjectIdentifier("1.3.6.1.5.5.7.8.5")
_ID_ON_DNSSRV = ObjectIdentifier("1.3.6.1.5.5.7.8.7")
_DER_UTF8STRING = 0x0C
_DER_IA5STRING = 0x16
_DER_EXPLICIT_0 = 0xA0
_SRV_SERVICE = "_xmpp-server"  # RFC 6120 §13.7.1.2.1: the SRV-ID service for s2s


@dataclass(frozen=True, slots=True)
class CertificateIdentities:
    """The names a certificate presents (RFC 6125 §1.8), as written in it.

    ``common_names`` is filled only when the certificate has no subjectAltName at all,
    the one case where RFC 6125 §6.4.4 lets a CN stand for a DNS name.
    """

    dns_names: tuple[str, ...] = ()    # SAN dNSName (DNS-ID)
    srv_names: tuple[str, ...] = ()    # SAN otherName id-on-dnsSRV (SRV-ID), "_service.domain"
    xmpp_addrs: tuple[str, ...] = ()   # SAN otherName id-on-xmppAddr (RFC 6120 §13.7.1.4)
    common_names: tuple[str, ...] = ()  # subject CN (CN-ID)

    def covers(self, domain: str) -> bool:
        """Whether one of these names is ``domain`` for a server-to-server peer.

        RFC 6125 §6 as RFC 7590 and RFC 6120 §13.7.1.2 profile it: SRV-ID
        ``_xmpp-server.<domain>``, XmppAddr equal to the domain, or DNS-ID (CN-ID only
        without any SAN); compared in A-labels, case-insensitively; ``*`` only as the
        whole left-most label of a DNS name, standing for exactly one label.
        """
        reference = _a_label_name(domain)
        if reference is None or _is_ip_address(reference):
            return False  # RFC 6125 §1.7.2: IP addresses are out of scope
        return (
            any(_dns_name_matches(name, reference) for name in self.dns_names)
            or any(_srv_name_matches(name, reference) for name in self.srv_names)
            or any(_a_label_name(addr) == reference for addr in self.xmpp_addrs)
            or any(_dns_name_matches(name, reference) for name in self.common_names)
        )


def certificate_identities(der: bytes) -> CertificateIdentities:
    """The names the DER-encoded certificate ``der`` presents.

    Raises ValueError when the certificate or its subjectAltName extension is malformed.
    """
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return CertificateIdentities(common_names=tuple(n.value for n in names if isinstance(n.value, str)))
    srv_names: list[str] = []
    xmpp_addrs: list[str] = []
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == _ID_ON_XMPPADDR:
            xmpp_addrs += filter(None, [_der_string(other.value, _DER_UTF8STRING)])
        elif other.type_id == _ID_ON_DNSSRV:
            srv_names += filter(None, [_der_string(other.value, _DER_IA5STRING)])
    return CertificateIdentities(
        dns_names=tuple(san.get_values_for_type(x509.DNSName)),
        srv_names=tuple(srv_names),
        xmpp_addrs=tuple(xmpp_addrs),
    )


# --------------------------------------------------------------------------- DER


def _der_string(value: bytes, tag: int) -> str | None:
    """The text of an otherName value that is one DER string of type ``tag``, else None.

    cryptography hands over the value inside the ``[0] EXPLICIT`` of RFC 5280's OtherName;
    other producers include the wrapper, so it is removed when present.
    """
    element = _der_element(value)
    if element is not None and element[0] == _DER_EXPLICIT_0:
        element = _der_element(element[1])
    if element is None or element[0] != tag:
        return None
    try:
        return element[1].decode("utf-8" if tag == _DER_UTF8STRING else "ascii")
    except UnicodeDecodeError:
        return None


def _der_element(data: bytes) -> tuple[int, bytes] | None:
    """``(tag, contents)`` of the single DER element that is all of ``data``, else None."""
    if len(data) < 2 or data[0] & 0x1F == 0x1F:  # high tag numbers: not in these names
        return None
    offset, length = 2, data[1]
    if length & 0x80:
        count = length & 0x7F
        # 0x80 is BER's indefinite length, never DER; four octets are plenty for a name.
        if count == 0 or count > 4 or len(data) < 2 + count:
            return None
        length = int.from_bytes(data[2:2 + count], "big")
        offset += count
    if offset + length != len(data):
        return None
    return data[0], data[offset:]


# --------------------------------------------------------------------------- names


def _a_label_name(name: str) -> str | None:
    """``name`` in lower-case A-labels without a final dot; None if it cannot be one."""
    name = name.strip().removesuffix(".")
    if not name:
        return None
    if name.isascii():
        return name.lower()
    try:
        # RFC 6125 §6.4.2: compare internationalised names as A-labels.
        mapped = idna.uts46_remap(name, std3_rules=False, transitional=False)
        return ".".join(idna.alabel(label).decode("ascii") for label in mapped.split("."))
    except (idna.IDNAError, UnicodeError):
        return None


def _dns_name_matches(presented: str, reference: str) -> bool:
    name = _a_label_name(presented)
    if name is None:
        return False
    if "*" not in name:
        return name == reference
    # RFC 6125 §6.4.3, narrowed as RFC 9525 does: "*" only as the complete left-most
    # label, standing for exactly one label (no "im*" fragments, which XEP-0178 once
    # allowed). Our own rule on top: never directly under a top-level domain ("*.org").
    wildcard, _, rest = name.partition(".")
    if wildcard != "*" or "*" in rest or "." not in rest:
        return False
    label, _, parent = reference.partition(".")
    return bool(label) and parent == rest


def _srv_name_matches(presented: str, reference: str) -> bool:
    # RFC 6125 §6.5.1: the service name case-insensitively, the domain as a DNS-ID.
    service, dot, domain = presented.partition(".")
    return bool(dot) and service.lower() == _SRV_SERVICE and _dns_name_matches(domain, reference)


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True

"""RFC 7622: XMPP Address Format — the JID value type.

A JID is ``[localpart "@"] domainpart ["/" resourcepart]``. Each part is prepared and enforced
on the way in, so two JIDs that denote the same entity compare equal:

* localpart — PRECIS UsernameCaseMapped (RFC 8265 §3.3; width-mapped, lower-cased, NFC), minus
  the characters RFC 7622 §3.3.1 forbids (`` " & ' / : < > @ ``);
* domainpart — an IDNA2008 name held as U-labels (RFC 7622 §3.2: A-labels are converted, case,
  width and dot-like separators mapped as UTS #46 does), an IPv4 address or a bracketed IPv6
  address;
* resourcepart — PRECIS OpaqueString (RFC 8265 §4.2): case is kept, '@' and '/' are allowed.

Every part is 1 to 1023 octets of UTF-8 once prepared (RFC 7622 §3.1). ``JID.parse`` runs on
every routed stanza, so pure-ASCII parts that are already in their prepared form take a regex
fast path, domains are cached, and whole parses are cached.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, final

import idna
import precis_i18n

__all__ = ["InvalidJID", "JID"]

_MAX_PART_OCTETS: Final = 1023  # RFC 7622 §3.1, for each of the three parts
# PRECIS work is linear, but the input is a stranger's: refuse absurd parts before mapping.
# NFC composes at most four code points into one and a prepared part holds at most 1023
# code points, so no valid part has more than 4 * 1023 code points on input.
_MAX_PART_INPUT_CHARS: Final = 4 * _MAX_PART_OCTETS
_PARSE_CACHE_SIZE: Final = 65536
_DOMAIN_CACHE_SIZE: Final = 4096

_USERNAME_PROFILE: Final = precis_i18n.get_profile("UsernameCaseMapped")
_OPAQUE_PROFILE: Final = precis_i18n.get_profile("OpaqueString")

# RFC 7622 §3.3.1: allowed by the IdentifierClass, forbidden in a localpart.
_LOCALPART_FORBIDDEN: Final = frozenset("\"&'/:<>@")

# Fast paths: ASCII text that PRECIS would return unchanged. For ASCII, UsernameCaseMapped is
# lower-casing plus "printable, no space"; OpaqueString is "printable, space allowed".
# Being ASCII, characters and octets coincide, so the bound is the RFC 7622 §3.1 limit.
_LOCALPART_ASCII_RE: Final = re.compile(
    r"[\x21\x23-\x25\x28-\x2e\x30-\x39\x3b\x3d\x3f\x41-\x7e]{1,1023}"
)
_RESOURCEPART_ASCII_RE: Final = re.compile(r"[\x20-\x7e]{1,1023}")
# An NR-LDH label (RFC 5890 §2.3.1); the "--" in positions 3-4 check is done separately.
_LDH_LABEL_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class InvalidJID(ValueError):
    """The text is not a valid XMPP address (RFC 7622)."""


@final
@dataclass(frozen=True, slots=True)
class JID:
    """An XMPP address, immutable and hashable; equal JIDs denote the same entity.

    Build one with :meth:`parse` or :meth:`make`, which validate and normalise. The plain
    constructor trusts its arguments: use it only with parts taken from another JID.

    Every routed stanza reads a few JIDs' text, bare form and hash, so each JID computes its
    hash once and its text and bare form on first use (parses are cached, so a JID lives long).
    """

    local: str  # "" when absent
    domain: str
    resource: str  # "" when absent
    _hash: int = field(init=False, repr=False, compare=False, default=0)
    _text: str | None = field(init=False, repr=False, compare=False, default=None)
    _bare: JID | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.local, self.domain, self.resource)))

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True  # parses are cached: the same address is mostly the same object
        if not isinstance(other, JID):
            return NotImplemented
        return (self._hash == other._hash and self.local == other.local and self.domain == other.domain
                and self.resource == other.resource)

    def __hash__(self) -> int:
        return self._hash

    @classmethod
    def parse(cls, text: str) -> JID:
        """Parse, validate and normalise ``text``; raise :class:`InvalidJID` if it is no JID."""
        return _parse(text)

    @classmethod
    def make(cls, local: str, domain: str, resource: str = "") -> JID:
        """Build a JID from its parts ("" for an absent local or resource part)."""
        return JID(
            _prepare_localpart(local) if local else "",
            _prepare_domainpart(domain),
            _prepare_resourcepart(resource) if resource else "",
        )

    @property
    def bare(self) -> JID:
        """This JID without its resource (RFC 6120 §1.4 "bare JID")."""
        if not self.resource:
            return self
        bare = self._bare
        if bare is None:
            bare = JID(self.local, self.domain, "")
            object.__setattr__(self, "_bare", bare)
        return bare

    @property
    def is_bare(self) -> bool:
        """True when there is no resourcepart."""
        return not self.resource

    @property
    def is_domain(self) -> bool:
        """True for a bare domain: no localpart and no resourcepart (a server or service)."""
        return not self.local and not self.resource

    def with_resource(self, resource: str) -> JID:
        """This JID with ``resource`` (validated) as its resourcepart."""
        return JID(self.local, self.domain, _prepare_resourcepart(resource))

    def __str__(self) -> str:
        text: str | None = self._text
        if text is None:
            text = f"{self.local}@{self.domain}" if self.local else self.domain
            if self.resource:
                text = f"{text}/{self.resource}"
            object.__setattr__(self, "_text", text)
        return text


@lru_cache(maxsize=_PARSE_CACHE_SIZE)
def _parse(text: str) -> JID:
    # RFC 7622 §3.2: the resourcepart starts at the first '/', so it may itself hold '/' and
    # '@'; what stays before it is split at its first '@' (a localpart never holds '@').
    head, slash, resource = text.partition("/")
    local, at, domain = head.partition("@")
    if not at:
        local, domain = "", local
    # A separator with nothing after (or before) it is an empty part, not an absent one.
    return JID(
        _prepare_localpart(local) if at else "",
        _prepare_domainpart(domain),
        _prepare_resourcepart(resource) if slash else "",
    )


def _shorten(text: str) -> str:
    """The text for an error message, cut so a hostile input cannot flood a log line."""
    return repr(text if len(text) <= 64 else text[:64] + "…")


def _check_part_input(text: str, part: str) -> None:
    if not text:
        raise InvalidJID(f"empty {part}")
    if len(text) > _MAX_PART_INPUT_CHARS:
        raise InvalidJID(f"{part} longer than {_MAX_PART_OCTETS} octets")


def _check_part_length(prepared: str, part: str) -> None:
    if len(prepared.encode("utf-8")) > _MAX_PART_OCTETS:
        raise InvalidJID(f"{part} longer than {_MAX_PART_OCTETS} octets")


def _prepare_localpart(text: str) -> str:
    """RFC 7622 §3.3: UsernameCaseMapped, then the §3.3.1 exclusions."""
    if text.isascii():
        lowered = text.lower()
        if _LOCALPART_ASCII_RE.fullmatch(lowered):
            return lowered
    _check_part_input(text, "localpart")
    try:
        prepared: str = _USERNAME_PROFILE.enforce(text)
    except UnicodeError as exc:
        raise InvalidJID(f"invalid localpart {_shorten(text)}: {_reason(exc)}") from None
    # Checked after preparation: width mapping turns U+FF20 into '@', for one.
    forbidden = _LOCALPART_FORBIDDEN.intersection(prepared)
    if forbidden:
        shown = " ".join(sorted(forbidden))
        raise InvalidJID(f"invalid localpart {_shorten(text)}: forbidden character(s) {shown}")
    _check_part_length(prepared, "localpart")
    return prepared


def _prepare_resourcepart(text: str) -> str:
    """RFC 7622 §3.4: OpaqueString (keeps case; maps non-ASCII spaces to U+0020; NFC)."""
    if _RESOURCEPART_ASCII_RE.fullmatch(text):
        return text
    _check_part_input(text, "resourcepart")
    try:
        prepared: str = _OPAQUE_PROFILE.enforce(text)
    except UnicodeError as exc:
        raise InvalidJID(f"invalid resourcepart {_shorten(text)}: {_reason(exc)}") from None
    _check_part_length(prepared, "resourcepart")
    return prepared


def _reason(exc: UnicodeError) -> str:
    # precis_i18n raises UnicodeEncodeError whose reason names the rule ("DISALLOWED/spaces").
    reason = getattr(exc, "reason", None)
    return reason if isinstance(reason, str) else str(exc)


@lru_cache(maxsize=_DOMAIN_CACHE_SIZE)
def _prepare_domainpart(text: str) -> str:
    """RFC 7622 §3.2: an IP literal, an IPv4 address or an IDNA2008 name in U-labels."""
    if text.startswith("["):
        return _prepare_ip_literal(text)
    if text.isascii():
        # RFC 7622 §3.2: one final label separator is stripped before any use.
        name = text[:-1] if text.endswith(".") else text
        lowered = name.lower()
        labels = lowered.split(".")
        if len(lowered) <= _MAX_PART_OCTETS and all(map(_is_nr_ldh_label, labels)):
            return _check_numeric_name(lowered, labels)
    # Not plain LDH: non-ASCII, A-labels to decode, or an error to explain.
    return _prepare_idn(text)


def _is_nr_ldh_label(label: str) -> bool:
    # "--" in positions 3-4 marks a reserved label (RFC 5890 §2.3.1), "xn--" among them: those
    # go the slow way, where A-labels become U-labels and the others are refused.
    return _LDH_LABEL_RE.fullmatch(label) is not None and label[2:4] != "--"


def _prepare_idn(text: str) -> str:
    _check_part_input(text, "domainpart")
    try:
        # UTS #46 mapping: case, width, dot-like separators (U+3002...) and NFC, as RFC 7622
        # §3.2.2 asks; STD3 rules keep names to letters, digits and hyphens.
        mapped = idna.uts46_remap(text, std3_rules=True, transitional=False)
    except idna.IDNAError as exc:
        raise InvalidJID(f"invalid domainpart {_shorten(text)}: {exc}") from None
    name = mapped[:-1] if mapped.endswith(".") else mapped
    if not name:
        raise InvalidJID("empty domainpart")
    labels = [_to_ulabel(label, text) for label in name.split(".")]
    prepared = ".".join(labels)
    _check_part_length(prepared, "domainpart")
    return _check_numeric_name(prepared, labels)


def _to_ulabel(label: str, text: str) -> str:
    """Validate one label against IDNA2008 and return its U-label (RFC 7622 §3.2.1)."""
    if not label:
        raise InvalidJID(f"invalid domainpart {_shorten(text)}: empty label")
    try:
        ulabel = idna.ulabel(label)
        # Also enforces the 63-octet label limit (RFC 5890 §2.3.2.1), on the A-label form.
        alabel = idna.alabel(ulabel)
    except idna.IDNAError as exc:
        raise InvalidJID(f"invalid domainpart {_shorten(text)}: {exc}") from None
    # An A-label must be the canonical encoding of its U-label (RFC 5891 §5.3).
    if label.startswith("xn--") and alabel.decode("ascii") != label:
        raise InvalidJID(f"invalid domainpart {_shorten(text)}: non-canonical A-label")
    return ulabel


def _check_numeric_name(name: str, labels: list[str]) -> str:
    # An all-digit last label is no top-level domain (RFC 3696 §2): the name must be a
    # dotted-quad IPv4 address (RFC 3986 §3.2.2, no leading zeros).
    last = labels[-1]
    if last.isascii() and last.isdigit():
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            raise InvalidJID(f"invalid domainpart {_shorten(name)}: not an IPv4 address") from None
    return name


def _prepare_ip_literal(text: str) -> str:
    # RFC 7622 §3.2 takes IP-literal from RFC 3986 §3.2.2: "[" IPv6address "]". Zone ids
    # (RFC 6874) and IPvFuture name nothing routable here. The address is normalised to its
    # compressed lower-case form so that equal addresses make equal JIDs.
    inner = text[1:-1] if text.endswith("]") else ""
    if not inner or "%" in inner:
        raise InvalidJID(f"invalid domainpart {_shorten(text)}: bad IP literal")
    try:
        address = ipaddress.IPv6Address(inner)
    except ValueError:
        raise InvalidJID(f"invalid domainpart {_shorten(text)}: bad IPv6 address") from None
    return f"[{address.compressed}]"

"""RFC 7622: XMPP Address Format — tests for the JID value type."""

from __future__ import annotations

import dataclasses

import precis_i18n
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xmppcore.jid import JID, InvalidJID

_USERNAME = precis_i18n.get_profile("UsernameCaseMapped")
_OPAQUE = precis_i18n.get_profile("OpaqueString")
_RFC7622_FORBIDDEN = set("\"&'/:<>@")


# RFC 7622 §3.5, table of valid addresses (examples 1-15) with the parts we expect.
RFC7622_VALID = [
    ("juliet@example.com", ("juliet", "example.com", "")),
    ("juliet@example.com/foo", ("juliet", "example.com", "foo")),
    ("juliet@example.com/foo bar", ("juliet", "example.com", "foo bar")),
    ("juliet@example.com/foo@bar", ("juliet", "example.com", "foo@bar")),
    ("foo\\20bar@example.com", ("foo\\20bar", "example.com", "")),
    ("fussball@example.com", ("fussball", "example.com", "")),
    ("fu\u00dfball@example.com", ("fu\u00dfball", "example.com", "")),
    ("\u03c0@example.com", ("\u03c0", "example.com", "")),
    ("\u03a3@example.com/foo", ("\u03c3", "example.com", "foo")),
    ("\u03c3@example.com/foo", ("\u03c3", "example.com", "foo")),
    ("\u03c2@example.com/foo", ("\u03c2", "example.com", "foo")),
    ("king@example.com/\u265a", ("king", "example.com", "\u265a")),
    ("example.com", ("", "example.com", "")),
    ("example.com/foobar", ("", "example.com", "foobar")),
    ("a.example.com/b@example.net", ("", "a.example.com", "b@example.net")),
]

# RFC 7622 §3.5, table of invalid addresses; example 18 is tested on its own below.
RFC7622_INVALID = [
    '"juliet"@example.com',  # 16: quotation marks in the localpart (§3.3.1)
    "foo bar@example.com",  # 17: space in the localpart
    "@example.com/",  # 19: empty localpart and resourcepart
    "henry\u2163@example.com",  # 20: ROMAN NUMERAL FOUR has a compatibility decomposition
    "\u265a@example.com",  # 21: a symbol in the localpart
    "juliet@",  # 22: empty domainpart
    "/foobar",  # 23: empty domainpart
]


@pytest.mark.parametrize(("text", "parts"), RFC7622_VALID)
def test_rfc7622_valid_examples(text: str, parts: tuple[str, str, str]) -> None:
    jid = JID.parse(text)
    assert (jid.local, jid.domain, jid.resource) == parts


@pytest.mark.parametrize("text", RFC7622_INVALID)
def test_rfc7622_invalid_examples(text: str) -> None:
    with pytest.raises(InvalidJID):
        JID.parse(text)


def test_rfc7622_example_18_leading_space_in_resource_is_accepted() -> None:
    # RFC 7622 lists "juliet@example.com/ foo" as invalid, but no normative rule backs it:
    # OpaqueString (RFC 8265 §4.2) allows U+0020 anywhere. We follow the profile, as other
    # servers do, so that a resource they accept is routable here too.
    assert JID.parse("juliet@example.com/ foo").resource == " foo"


def test_invalid_jid_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        JID.parse("juliet@")


# --- case, width and normalisation -------------------------------------------------------


def test_local_and_domain_are_lower_cased_resource_keeps_case() -> None:
    jid = JID.parse("Alice@Example.COM/Res")
    assert str(jid) == "alice@example.com/Res"
    assert jid == JID.parse("alice@example.com/Res")
    assert jid != JID.parse("alice@example.com/res")


def test_case_mapping_is_lower_casing_not_case_folding() -> None:
    # RFC 8265 §3.3.2 uses toLowerCase: sharp s stays, capital sigma meets small sigma, and
    # final sigma stays a letter of its own.
    assert JID.parse("fu\u00dfball@example.com") != JID.parse("fussball@example.com")
    assert JID.parse("\u03a3@example.com") == JID.parse("\u03c3@example.com")
    assert JID.parse("\u03c2@example.com") != JID.parse("\u03c3@example.com")


def test_fullwidth_localpart_is_width_mapped() -> None:
    assert JID.parse("\uff2a\uff55\uff4c\uff49\uff45\uff54@example.com").local == "juliet"


def test_resource_is_not_width_mapped_but_spaces_are_mapped() -> None:
    # RFC 8265 §4.2.2: OpaqueString keeps fullwidth characters and maps non-ASCII spaces.
    assert JID.parse("a@example.com/\uff52\uff45\uff53").resource == "\uff52\uff45\uff53"
    assert JID.parse("a@example.com/a\u3000b").resource == "a b"


def test_localpart_is_nfc_normalised() -> None:
    decomposed = JID.parse("jose\u0301@example.com")
    assert decomposed.local == "jos\u00e9"
    assert decomposed == JID.parse("jos\u00e9@example.com")


@pytest.mark.parametrize("char", sorted(_RFC7622_FORBIDDEN))
def test_rfc7622_forbidden_localpart_characters(char: str) -> None:
    with pytest.raises(InvalidJID):
        JID.make(f"ju{char}liet", "example.com")


@pytest.mark.parametrize("char", sorted(_RFC7622_FORBIDDEN - {"/", "@"}))
def test_forbidden_localpart_characters_in_parsed_text(char: str) -> None:
    with pytest.raises(InvalidJID):
        JID.parse(f"ju{char}liet@example.com")


def test_fullwidth_at_sign_that_maps_to_at_is_refused_in_localpart() -> None:
    with pytest.raises(InvalidJID):
        JID.parse("a\uff20b@example.com")


def test_compatibility_characters_refused_in_localpart_allowed_in_resource() -> None:
    with pytest.raises(InvalidJID):
        JID.parse("\ufb01le@example.com")  # LATIN SMALL LIGATURE FI
    assert JID.parse("juliet@example.com/\ufb01").resource == "\ufb01"


@pytest.mark.parametrize(
    "text",
    ["a\x00b@example.com", "a@example.com/x\x00", "a@example.com/tab\there", "a\x7f@example.com"],
)
def test_control_characters_are_refused(text: str) -> None:
    with pytest.raises(InvalidJID):
        JID.parse(text)


# --- splitting and empty parts -----------------------------------------------------------


def test_resource_starts_at_the_first_slash() -> None:
    jid = JID.parse("juliet@example.com/foo/bar@baz")
    assert (jid.local, jid.domain, jid.resource) == ("juliet", "example.com", "foo/bar@baz")


@pytest.mark.parametrize(
    "text", ["", "@", "/", "@/", "@example.com", "juliet@example.com/", "example.com/", "a@b@c"]
)
def test_empty_or_misplaced_parts_are_invalid(text: str) -> None:
    with pytest.raises(InvalidJID):
        JID.parse(text)


# --- length limits (RFC 7622 §3.1: 1..1023 octets each, measured in UTF-8) ---------------


def test_localpart_length_limit_in_octets() -> None:
    assert len(JID.make("a" * 1023, "example.com").local) == 1023
    assert JID.make("\u00e9" * 511 + "a", "example.com").local.endswith("a")  # 1023 octets
    with pytest.raises(InvalidJID):
        JID.make("a" * 1024, "example.com")
    with pytest.raises(InvalidJID):
        JID.make("\u00e9" * 512, "example.com")  # 512 characters, 1024 octets


def test_resourcepart_length_limit_in_octets() -> None:
    assert len(JID.parse("a@example.com/" + "r" * 1023).resource) == 1023
    assert JID.parse("a@example.com/" + "\u00e9" * 511 + "r").resource.endswith("r")
    with pytest.raises(InvalidJID):
        JID.parse("a@example.com/" + "r" * 1024)
    with pytest.raises(InvalidJID):
        JID.parse("a@example.com/" + "\u00e9" * 512)


def _domain_of_length(octets: int) -> str:
    # Labels of 63 octets with a short first label making up the rest.
    full_labels, rest = divmod(octets + 1, 64)
    labels = ["x" * 63] * full_labels
    if rest:
        labels.insert(0, "a" * (rest - 1))
    return ".".join(labels)


def test_domainpart_length_limit_in_octets() -> None:
    exact, over = _domain_of_length(1023), _domain_of_length(1024)
    assert (len(exact), len(over)) == (1023, 1024)
    assert JID.parse(f"a@{exact}/r").domain == exact
    assert JID.parse(f"a@{exact}./r").domain == exact  # the stripped dot does not count
    with pytest.raises(InvalidJID):
        JID.parse(f"a@{over}/r")


def test_absurdly_long_parts_are_refused() -> None:
    with pytest.raises(InvalidJID):
        JID.parse("\u00e9" * 100_000 + "@example.com")
    with pytest.raises(InvalidJID):
        JID.parse("a@example.com/" + "\u00e9" * 100_000)


# --- domainpart ---------------------------------------------------------------------------


def test_domain_trailing_dot_is_stripped_once() -> None:
    assert JID.parse("juliet@Example.COM./r") == JID.parse("juliet@example.com/r")
    assert JID.parse("example.com.").is_domain
    for text in ("example.com..", ".", "a@."):
        with pytest.raises(InvalidJID):
            JID.parse(text)


@pytest.mark.parametrize(
    "domain",
    [
        "a..example",  # empty label
        ".example.com",  # empty first label
        "exa mple.com",  # space
        "ex_ample.com",  # underscore: not a hostname character
        "-example.com",  # leading hyphen
        "example-.com",  # trailing hyphen
        "ab--cd.example",  # reserved "--" in positions 3-4 (RFC 5890 §2.3.1)
        "x" * 64 + ".example",  # label over 63 octets
        "\u265a.example",  # symbol: not IDNA2008 PVALID
        "xn--.example",  # empty A-label
        "xn--abc-.example",  # malformed A-label
        "xn---l2w.example",  # decodes, but is not the canonical A-label of its U-label
        "192.168.1.256",  # all-digit last label that is no IPv4 address
        "1.2.3",
        "01.2.3.4",  # RFC 3986 dec-octet has no leading zero
        "[::1",  # unterminated IP literal
        "[]",
        "[::1%eth0]",  # zone identifiers are not part of RFC 3986 IP-literal
        "[192.0.2.1]",  # IPv4 belongs outside brackets
        "[v1.fe80::a]",  # IPvFuture
        "2001:db8::1",  # IPv6 must be bracketed
    ],
)
def test_invalid_domainparts(domain: str) -> None:
    with pytest.raises(InvalidJID):
        JID.make("juliet", domain)


def test_domain_label_of_63_octets_is_valid() -> None:
    label = "x" * 63
    assert JID.parse(f"{label}.example").domain == f"{label}.example"


def test_internationalised_domain_is_held_as_u_labels() -> None:
    # RFC 7622 §3.2.1: A-labels are converted to U-labels, so both spellings are one JID.
    unicode_jid = JID.parse("juliet@B\u00fccher.Example/r")
    assert unicode_jid.domain == "b\u00fccher.example"
    assert JID.parse("juliet@xn--bcher-kva.example/r") == unicode_jid
    assert JID.parse("juliet@XN--BCHER-KVA.example/r") == unicode_jid


def test_domain_width_and_dot_like_separators_are_mapped() -> None:
    fullwidth = "\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25\u3002\uff43\uff4f\uff4d"
    assert JID.parse(fullwidth).domain == "example.com"
    assert JID.parse("example\uff0ecom").domain == "example.com"


def test_ip_addresses_as_domainparts() -> None:
    assert JID.parse("juliet@192.0.2.1/r").domain == "192.0.2.1"
    assert JID.parse("juliet@[2001:DB8:0:0::1]/r").domain == "[2001:db8::1]"
    assert JID.parse("[::1]").is_domain


# --- the value type -----------------------------------------------------------------------


def test_make_validates_and_normalises_like_parse() -> None:
    assert JID.make("Juliet", "Example.COM", "Balcony") == JID.parse("juliet@example.com/Balcony")
    assert JID.make("", "example.com") == JID.parse("example.com")
    with pytest.raises(InvalidJID):
        JID.make("juliet", "")
    with pytest.raises(InvalidJID):
        JID.make("juliet", "example.com", "bad\x00")


def test_bare_and_full() -> None:
    full = JID.parse("juliet@example.com/balcony")
    assert not full.is_bare and not full.is_domain
    assert full.bare == JID.parse("juliet@example.com")
    assert full.bare.is_bare and not full.bare.is_domain
    assert str(full.bare) == "juliet@example.com"
    bare = JID.parse("juliet@example.com")
    assert bare.bare == bare


def test_is_domain() -> None:
    assert JID.parse("example.com").is_domain
    assert JID.parse("example.com").is_bare
    assert not JID.parse("example.com/res").is_domain
    assert not JID.parse("juliet@example.com").is_domain


def test_with_resource_validates_and_keeps_the_rest() -> None:
    bare = JID.parse("Juliet@Example.com")
    full = bare.with_resource("Balcony\u3000East")
    assert full == JID.parse("juliet@example.com/Balcony East")
    assert bare.is_bare  # unchanged
    assert full.with_resource("Garden") == JID.parse("juliet@example.com/Garden")
    for bad in ("", "a\x00", "r" * 1024):
        with pytest.raises(InvalidJID):
            bare.with_resource(bad)


@pytest.mark.parametrize(
    "text",
    [
        "juliet@example.com",
        "juliet@example.com/foo bar",
        "example.com",
        "example.com/a/b@c",
        "\u03c3@b\u00fccher.example/\u265a",
        "a@[2001:db8::1]/r",
    ],
)
def test_str_round_trip(text: str) -> None:
    jid = JID.parse(text)
    assert str(jid) == text
    assert JID.parse(str(jid)) == jid


def test_equality_and_hashing() -> None:
    spellings = ["Juliet@Example.com/r", "juliet@EXAMPLE.COM./r", "\uff2auliet@example.com/r"]
    jids = {JID.parse(text) for text in spellings}
    assert len(jids) == 1
    table = {JID.parse("juliet@example.com/r"): "found"}
    assert table[JID.make("JULIET", "example.com", "r")] == "found"
    assert JID.parse("juliet@example.com/r") != JID.parse("juliet@example.com/R")
    as_text: object = "juliet@example.com"
    assert JID.parse("juliet@example.com") != as_text


def test_jid_is_immutable() -> None:
    jid = JID.parse("juliet@example.com")
    with pytest.raises(dataclasses.FrozenInstanceError):
        jid.local = "romeo"  # type: ignore[misc]


def test_parse_cache_returns_equal_objects() -> None:
    first = JID.parse("cached@example.com/r")
    second = JID.parse("cached@example.com/r")
    assert first == second
    assert first is second
    assert JID.parse("Cached@Example.com/r") == first


def test_invalid_input_is_not_cached_as_valid() -> None:
    for _ in range(2):
        with pytest.raises(InvalidJID):
            JID.parse("bad user@example.com")


# --- properties: the ASCII fast paths agree with PRECIS ----------------------------------


def _reference_localpart(text: str) -> str | None:
    try:
        prepared: str = _USERNAME.enforce(text)
    except UnicodeError:
        return None
    if _RFC7622_FORBIDDEN.intersection(prepared) or len(prepared.encode()) > 1023:
        return None
    return prepared


def _reference_resourcepart(text: str) -> str | None:
    try:
        prepared: str = _OPAQUE.enforce(text)
    except UnicodeError:
        return None
    return prepared if len(prepared.encode()) <= 1023 else None


def _made_local(text: str) -> str | None:
    try:
        return JID.make(text, "example.com").local
    except InvalidJID:
        return None


def _made_resource(text: str) -> str | None:
    try:
        return JID.make("a", "example.com", text).resource
    except InvalidJID:
        return None


_ASCII = st.text(st.characters(max_codepoint=0x7F), min_size=1, max_size=40)
_ANY = st.text(min_size=1, max_size=20)


@given(st.one_of(_ASCII, _ANY))
def test_localpart_matches_precis_username_case_mapped(text: str) -> None:
    assert _made_local(text) == _reference_localpart(text)


@given(st.one_of(_ASCII, _ANY))
def test_resourcepart_matches_precis_opaque_string(text: str) -> None:
    assert _made_resource(text) == _reference_resourcepart(text)


@given(
    local=st.one_of(st.just(""), _ASCII, _ANY),
    domain=st.sampled_from(["example.com", "EXAMPLE.com.", "b\u00fccher.example", "[::1]"]),
    resource=st.one_of(st.just(""), _ASCII, _ANY),
)
def test_str_then_parse_is_identity(local: str, domain: str, resource: str) -> None:
    try:
        jid = JID.make(local, domain, resource)
    except InvalidJID:
        return
    assert JID.parse(str(jid)) == jid

"""RFC 4616 PLAIN: parsing, building, and verification against stored SCRAM credentials."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmppcore.protocol.sasl import (
    SCRAM_HASHES, PlainMessage, ScramCredentials, derive_scram_credentials, parse_plain,
    plain_client_message, verify_plain_password,
)
from xmppcore.stanza.errors import SaslCondition, SaslFailure


@functools.cache
def creds(hash_name: str, password: str = "s3cret pass") -> ScramCredentials:
    return derive_scram_credentials(password, hash_name, salt=b"salt-of-16-bytes", iterations=4096)


@pytest.mark.parametrize(("message", "parsed"), [
    (b"\x00juliet\x00secret", PlainMessage("", "juliet", "secret")),
    (b"romeo@example.org\x00juliet\x00secret", PlainMessage("romeo@example.org", "juliet", "secret")),
    ("\x00j\u00fcliet\x00p\u00e4ss w\u00f6rd".encode(), PlainMessage("", "j\u00fcliet", "p\u00e4ss w\u00f6rd")),
])
def test_parse_plain(message: bytes, parsed: PlainMessage) -> None:
    assert parse_plain(message) == parsed


@pytest.mark.parametrize("message", [
    b"", b"juliet", b"\x00juliet", b"\x00juliet\x00", b"\x00\x00secret", b"a\x00b\x00c\x00d",
    b"\x00juliet\x00" + b"x" * 17000,
])
def test_malformed_plain_is_refused(message: bytes) -> None:
    with pytest.raises(SaslFailure) as excinfo:
        parse_plain(message)
    assert excinfo.value.condition is SaslCondition.MALFORMED_REQUEST


@pytest.mark.parametrize("message", [
    b"\x00jul\xffiet\x00secret", b"\xc3\x00juliet\x00secret", b"\x00juliet\x00secr\xed\xa0\x80et",
])
def test_bad_utf8_is_incorrect_encoding(message: bytes) -> None:
    with pytest.raises(SaslFailure) as excinfo:
        parse_plain(message)
    assert excinfo.value.condition is SaslCondition.INCORRECT_ENCODING


def test_client_message_round_trips() -> None:
    message = plain_client_message("juliet", "s3cret pass", authzid="romeo@example.org")
    assert message == b"romeo@example.org\x00juliet\x00s3cret pass"
    assert parse_plain(message) == PlainMessage("romeo@example.org", "juliet", "s3cret pass")
    assert plain_client_message("juliet", "pw") == b"\x00juliet\x00pw"


@pytest.mark.parametrize(("authcid", "password", "authzid"), [
    ("", "pw", ""), ("juliet", "", ""), ("jul\x00iet", "pw", ""), ("juliet", "p\x00w", ""),
    ("juliet", "pw", "ro\x00meo"),
])
def test_client_message_refuses_bad_fields(authcid: str, password: str, authzid: str) -> None:
    with pytest.raises(ValueError):
        plain_client_message(authcid, password, authzid)


@pytest.mark.parametrize("hash_name", SCRAM_HASHES)
def test_verify_against_derived_credentials(hash_name: str) -> None:
    stored = creds(hash_name)
    assert verify_plain_password("s3cret pass", stored)
    assert verify_plain_password("s3cret\u00a0pass", stored)   # OpaqueString maps the NBSP to a space
    assert not verify_plain_password("s3cret pas", stored)
    assert not verify_plain_password("S3cret pass", stored)
    assert not verify_plain_password("bad\x07", stored)       # refused by OpaqueString: never matches


def test_verify_unknown_user_is_false() -> None:
    assert not verify_plain_password("s3cret pass", None)
    assert not verify_plain_password("", None)


def test_parsed_password_verifies_end_to_end() -> None:
    parsed = parse_plain(plain_client_message("juliet", "s3cret pass"))
    assert verify_plain_password(parsed.password, creds("sha-256"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_parse_plain_only_raises_sasl_failure(message: bytes) -> None:
    try:
        parsed = parse_plain(message)
    except SaslFailure:
        return
    assert plain_client_message(parsed.authcid, parsed.password, parsed.authzid) == message

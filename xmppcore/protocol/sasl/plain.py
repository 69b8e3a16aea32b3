"""RFC 4616: The PLAIN SASL mechanism — checked against stored SCRAM credentials.

We never store passwords, so a PLAIN password is verified by recomputing the SCRAM StoredKey
(RFC 5802 §3) with the stored salt and iteration count and comparing in constant time.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final

from ...stanza.errors import SaslCondition, SaslFailure
from .credentials import (
    DEFAULT_ITERATIONS, DEFAULT_SALT_LENGTH, ScramCredentials, _client_key, _digest_size, _hash,
    _salted_password, prepare_password,
)

__all__ = ["PlainMessage", "parse_plain", "verify_plain_password", "plain_client_message"]

# RFC 4616 §2 asks servers to accept at least 255 octets per field; 3 × 3071 (the longest JID,
# RFC 7622 §3.1) plus separators stays well inside this.
_MAX_MESSAGE_LENGTH: Final = 16 * 1024
_UNKNOWN_USER_SALT: Final = bytes(DEFAULT_SALT_LENGTH)


@dataclass(frozen=True, slots=True)
class PlainMessage:
    """The three fields of a PLAIN message; ``authzid`` is ``""`` when absent."""

    authzid: str
    authcid: str
    password: str


def parse_plain(message: bytes) -> PlainMessage:
    """Split ``[authzid] NUL authcid NUL passwd`` (RFC 4616 §2).

    Raises ``SaslFailure(INCORRECT_ENCODING)`` for bad UTF-8 and ``MALFORMED_REQUEST`` for
    anything else the grammar refuses (wrong number of fields, empty authcid or password).
    """
    if len(message) > _MAX_MESSAGE_LENGTH:
        raise SaslFailure(SaslCondition.MALFORMED_REQUEST, "message too long")
    fields = message.split(b"\x00")
    if len(fields) != 3:
        raise SaslFailure(SaslCondition.MALFORMED_REQUEST, "expected authzid NUL authcid NUL passwd")
    try:
        authzid, authcid, password = (field.decode("utf-8") for field in fields)
    except UnicodeDecodeError:
        raise SaslFailure(SaslCondition.INCORRECT_ENCODING, "not UTF-8") from None
    if not authcid or not password:  # authcid = 1*SAFE, passwd = 1*SAFE
        raise SaslFailure(SaslCondition.MALFORMED_REQUEST, "empty authcid or password")
    return PlainMessage(authzid=authzid, authcid=authcid, password=password)


def verify_plain_password(password: str, credentials: ScramCredentials | None) -> bool:
    """Whether ``password`` matches ``credentials``; ``None`` (unknown user) is ``False``.

    Every path runs one PBKDF2 so that response time does not tell unknown users or
    unpreparable passwords apart from wrong passwords.
    """
    try:
        prepared = prepare_password(password)
    except ValueError:
        prepared = None
    if credentials is None:
        hash_name, salt, iterations = "sha-256", _UNKNOWN_USER_SALT, DEFAULT_ITERATIONS
        stored_key = bytes(_digest_size(hash_name))
    else:
        hash_name, salt, iterations = credentials.hash_name, credentials.salt, credentials.iterations
        stored_key = credentials.stored_key
    salted = _salted_password(prepared or "", hash_name, salt, iterations)
    matches = hmac.compare_digest(_hash(hash_name, _client_key(hash_name, salted)), stored_key)
    return matches and prepared is not None and credentials is not None


def plain_client_message(authcid: str, password: str, authzid: str = "") -> bytes:
    """Build the client's PLAIN message; ``ValueError`` for NUL or an empty authcid/password."""
    if not authcid or not password:
        raise ValueError("authcid and password must not be empty")
    if any("\x00" in field for field in (authzid, authcid, password)):
        raise ValueError("PLAIN fields must not contain NUL")
    return f"{authzid}\x00{authcid}\x00{password}".encode("utf-8")

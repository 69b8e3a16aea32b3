"""RFC 5802 §3 and RFC 7677: SCRAM stored credentials; RFC 8265 §4.2: OpaqueString passwords.

The server never stores a password: it keeps what RFC 5802 §3 calls the authentication
information (salt, iteration count, StoredKey, ServerKey). SCRAM verifies a client proof
against it, and PLAIN (RFC 4616) recomputes StoredKey from the offered password.
Salts are passed in by the caller, so this module has no randomness.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import precis_i18n

__all__ = [
    "ScramCredentials", "prepare_password", "derive_scram_credentials", "SCRAM_HASHES",
    "DEFAULT_ITERATIONS", "DEFAULT_SALT_LENGTH",
]

SCRAM_HASHES: tuple[str, ...] = ("sha-1", "sha-256")

# RFC 7677 §4: the iteration count SHOULD be at least 4096. The salt length is ours: the
# fake salt for unknown users (scram.py) has this length too, so keep the two equal.
DEFAULT_ITERATIONS: Final = 4096
DEFAULT_SALT_LENGTH: Final = 16

# IANA "Hash Function Textual Names" (as in the mechanism name) -> hashlib name.
_HASHLIB_NAMES: Final[Mapping[str, str]] = {"sha-1": "sha1", "sha-256": "sha256"}

_OPAQUE_STRING = precis_i18n.get_profile("OpaqueString")


def _hashlib_name(hash_name: str) -> str:
    try:
        return _HASHLIB_NAMES[hash_name]
    except KeyError:
        raise ValueError(f"unsupported SCRAM hash {hash_name!r}") from None


def _digest_size(hash_name: str) -> int:
    return hashlib.new(_hashlib_name(hash_name)).digest_size


def _hash(hash_name: str, data: bytes) -> bytes:
    """RFC 5802 §2.2 H()."""
    return hashlib.new(_hashlib_name(hash_name), data).digest()


def _hmac(hash_name: str, key: bytes, message: bytes) -> bytes:
    """RFC 5802 §2.2 HMAC()."""
    return hmac.new(key, message, _hashlib_name(hash_name)).digest()


def _salted_password(prepared: str, hash_name: str, salt: bytes, iterations: int) -> bytes:
    """RFC 5802 §2.2 Hi() is PBKDF2 with HMAC as the PRF and dkLen = the hash length."""
    return hashlib.pbkdf2_hmac(_hashlib_name(hash_name), prepared.encode("utf-8"), salt, iterations)


def _client_key(hash_name: str, salted_password: bytes) -> bytes:
    return _hmac(hash_name, salted_password, b"Client Key")


def _server_key(hash_name: str, salted_password: bytes) -> bytes:
    return _hmac(hash_name, salted_password, b"Server Key")


def _xor(left: bytes, right: bytes) -> bytes:
    if len(left) != len(right):
        raise ValueError("XOR of byte strings of different lengths")
    return (int.from_bytes(left, "big") ^ int.from_bytes(right, "big")).to_bytes(len(left), "big")


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """What the server stores for one account and one hash (RFC 5802 §3)."""

    hash_name: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def __post_init__(self) -> None:
        size = _digest_size(self.hash_name)  # raises ValueError for an unknown hash
        if not self.salt:
            raise ValueError("empty salt")
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 1:
            raise ValueError(f"bad iteration count {self.iterations!r}")
        if len(self.stored_key) != size or len(self.server_key) != size:
            raise ValueError(f"keys must be {size} bytes for {self.hash_name}")

    def to_json(self) -> dict[str, str | int]:
        """A JSON-ready mapping for storage; bytes are base64."""
        return {
            "hash_name": self.hash_name,
            "salt": base64.b64encode(self.salt).decode("ascii"),
            "iterations": self.iterations,
            "stored_key": base64.b64encode(self.stored_key).decode("ascii"),
            "server_key": base64.b64encode(self.server_key).decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ScramCredentials:
        """Read what :meth:`to_json` wrote; anything else raises ``ValueError``."""
        try:
            hash_name = data["hash_name"]
            iterations = data["iterations"]
            salt, stored_key, server_key = (
                _b64_field(data[key]) for key in ("salt", "stored_key", "server_key")
            )
        except KeyError as exc:
            raise ValueError(f"missing field {exc.args[0]!r}") from None
        if not isinstance(hash_name, str) or not isinstance(iterations, int):
            raise ValueError("bad hash_name or iterations")
        return cls(hash_name, salt, iterations, stored_key, server_key)


def _b64_field(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise ValueError("bad base64") from None


def prepare_password(password: str) -> str:
    """Enforce the PRECIS OpaqueString profile (RFC 8265 §4.2), which replaces SASLprep.

    Raises ``ValueError`` for passwords the profile refuses (empty, control characters...).
    """
    try:
        prepared: str = _OPAQUE_STRING.enforce(password)
    except UnicodeEncodeError as exc:  # how precis-i18n reports a refusal
        raise ValueError(f"password refused by OpaqueString: {exc.reason}") from None
    return prepared


def derive_scram_credentials(
    password: str, hash_name: str, *, salt: bytes, iterations: int
) -> ScramCredentials:
    """Compute the stored credentials for ``password`` (RFC 5802 §3)."""
    _hashlib_name(hash_name)
    if not salt:
        raise ValueError("empty salt")
    if iterations < 1:
        raise ValueError(f"bad iteration count {iterations!r}")
    salted = _salted_password(prepare_password(password), hash_name, salt, iterations)
    return ScramCredentials(
        hash_name=hash_name,
        salt=salt,
        iterations=iterations,
        stored_key=_hash(hash_name, _client_key(hash_name, salted)),
        server_key=_server_key(hash_name, salted),
    )

"""RFC 5802: SCRAM SASL mechanisms — SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 7677), with their -PLUS
variants binding to the TLS channel (RFC 5929 tls-unique/tls-server-end-point, RFC 9266 tls-exporter).

Both ends are pure state machines: messages in, messages out, ``SaslFailure`` for anything a peer
got wrong, ``ProtocolUsageError`` when our own code calls them out of order. Nonces (and the
secret behind unknown users' fake salts) are passed in; nothing here reads a clock or a RNG.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hmac
import re
import string
from collections.abc import Mapping
from typing import Final

from ...stanza.errors import ProtocolUsageError, SaslCondition, SaslFailure
from .credentials import (
    DEFAULT_ITERATIONS, DEFAULT_SALT_LENGTH, SCRAM_HASHES, ScramCredentials, _client_key, _digest_size,
    _hash, _hmac, _salted_password, _server_key, _xor, prepare_password,
)

__all__ = ["mechanism_name", "parse_mechanism", "ScramServer", "ScramClient", "MAX_MESSAGE_LENGTH"]

# Bounds on what a stranger controls (STYLE rule 8). 3071 bytes is the longest JID (RFC 7622 §3.1);
# nonces are a few dozen characters in practice. A client refuses absurd iteration counts, which
# would otherwise let a server make it spin (RFC 5802 §9).
MAX_MESSAGE_LENGTH: Final = 16 * 1024
_MAX_NAME_BYTES: Final = 3071
_MAX_NONCE_LENGTH: Final = 1024
_MAX_ITERATIONS: Final = 10_000_000

_CB_NAME = re.compile(r"[A-Za-z0-9.\-]+")                # RFC 5802 §7 cb-name (RFC 5056 §7)
_PRINTABLE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")        # RFC 5802 §7 printable, for nonces
_SASLNAME = re.compile(r"(?:[^=,\x00]|=2C|=3D)+")        # RFC 5802 §7 saslname
_SASLNAME_ESCAPE = re.compile(r"=2C|=3D")
_POSIT_NUMBER = re.compile(r"[1-9][0-9]*")               # RFC 5802 §7 posit-number
_MECHANISM = re.compile(r"SCRAM-(SHA-1|SHA-256)(-PLUS)?")


def mechanism_name(hash_name: str, plus: bool) -> str:
    """``("sha-256", True)`` -> ``"SCRAM-SHA-256-PLUS"`` (RFC 5802 §4, RFC 7677 §2)."""
    if hash_name not in SCRAM_HASHES:
        raise ValueError(f"unsupported SCRAM hash {hash_name!r}")
    return f"SCRAM-{hash_name.upper()}{'-PLUS' if plus else ''}"


def parse_mechanism(name: str) -> tuple[str, bool] | None:
    """``"SCRAM-SHA-1"`` -> ``("sha-1", False)``; any other name -> ``None``.

    SASL mechanism names are upper case (RFC 4422 §3.1), so the match is exact.
    """
    match = _MECHANISM.fullmatch(name)
    if match is None:
        return None
    return match.group(1).lower(), match.group(2) is not None


# -- message syntax (RFC 5802 §7) ------------------------------------------------------------------

def _malformed(text: str) -> SaslFailure:
    return SaslFailure(SaslCondition.MALFORMED_REQUEST, text)


def _refused(text: str) -> SaslFailure:
    return SaslFailure(SaslCondition.NOT_AUTHORIZED, text)


def _decode_message(message: bytes) -> str:
    if len(message) > MAX_MESSAGE_LENGTH:
        raise _malformed("message too long")
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("message is not UTF-8") from None
    if "\x00" in text:  # value-safe-char excludes NUL
        raise _malformed("NUL in message")
    return text


def _attributes(text: str) -> list[tuple[str, str]]:
    """Split ``attr-val *("," attr-val)``, where ``attr-val = ALPHA "=" 1*value-char``."""
    attributes = []
    for part in text.split(","):
        if len(part) < 3 or part[1] != "=" or part[0] not in string.ascii_letters:
            raise _malformed("bad attribute")
        attributes.append((part[0], part[2:]))
    return attributes


def _expect(attributes: list[tuple[str, str]], index: int, key: str) -> str:
    if index >= len(attributes) or attributes[index][0] != key:
        raise _malformed(f"expected attribute {key!r}")
    return attributes[index][1]


def _refuse_mandatory_extension(attributes: list[tuple[str, str]]) -> None:
    # RFC 5802 §5.1: an "m" attribute MUST cause authentication failure; none is defined yet.
    if attributes and attributes[0][0] == "m":
        raise _refused("unsupported mandatory extension")


def _saslname_decode(value: str) -> str:
    # RFC 5802 §5.1: '=' not followed by "2C" or "3D" MUST fail the authentication.
    if not _SASLNAME.fullmatch(value) or len(value.encode("utf-8")) > _MAX_NAME_BYTES:
        raise _malformed("bad saslname")
    return _SASLNAME_ESCAPE.sub(lambda m: "," if m.group() == "=2C" else "=", value)


def _saslname_encode(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


def _nonce(value: str) -> str:
    if len(value) > _MAX_NONCE_LENGTH or not _PRINTABLE.fullmatch(value):
        raise _malformed("bad nonce")
    return value


def _base64(value: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise _malformed("bad base64") from None


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- server ---------------------------------------------------------------------------------------

class _ServerState(enum.Enum):
    AWAITING_CLIENT_FIRST = enum.auto()
    AWAITING_CREDENTIALS = enum.auto()
    AWAITING_CLIENT_FINAL = enum.auto()
    SUCCEEDED = enum.auto()
    FAILED = enum.auto()


class ScramServer:
    """One server-side exchange.

    ``channel_bindings`` maps binding types to their data on this connection (``{}`` without
    TLS); ``plus_advertised`` says whether any -PLUS mechanism was offered on this stream.
    Unknown users get a fake salt: HMAC(``unknown_user_key``, username), stable across exchanges
    so that probing twice reveals nothing. Pass a per-server secret as ``unknown_user_key`` (with
    the default, an attacker who knows this code can compute the fake salts offline).
    """

    def __init__(
        self,
        hash_name: str,
        *,
        plus: bool,
        server_nonce: str,
        channel_bindings: Mapping[str, bytes],
        plus_advertised: bool,
        unknown_user_key: bytes = b"",
        unknown_user_iterations: int = DEFAULT_ITERATIONS,
    ) -> None:
        if hash_name not in SCRAM_HASHES:
            raise ProtocolUsageError(f"unsupported SCRAM hash {hash_name!r}")
        if len(server_nonce) > _MAX_NONCE_LENGTH or not _PRINTABLE.fullmatch(server_nonce):
            raise ProtocolUsageError("server nonce must be printable ASCII without ','")
        if unknown_user_iterations < 1:
            raise ProtocolUsageError("unknown_user_iterations must be positive")
        self._hash_name = hash_name
        self._plus = plus
        self._server_nonce = server_nonce
        self._channel_bindings = dict(channel_bindings)
        self._plus_advertised = plus_advertised
        self._unknown_user_key = unknown_user_key
        self._unknown_user_iterations = unknown_user_iterations
        self._state = _ServerState.AWAITING_CLIENT_FIRST
        self._username: str | None = None
        self._authzid: str | None = None
        self._expected_cbind_input = b""
        self._nonce = ""
        self._auth_message_prefix = ""
        self._credentials: ScramCredentials | None = None

    def _advance(self, expected: _ServerState) -> None:
        if self._state is not expected:
            raise ProtocolUsageError(f"ScramServer is {self._state.name}, not {expected.name}")
        # Pessimistic: a peer's error leaves the exchange failed; success moves it on explicitly.
        self._state = _ServerState.FAILED

    @property
    def username(self) -> str:
        """The authentication identity, SASLname-decoded but not otherwise prepared."""
        if self._username is None:
            raise ProtocolUsageError("no client-first-message yet")
        return self._username

    @property
    def authzid(self) -> str | None:
        """The authorization identity from the GS2 header, decoded; ``None`` when absent."""
        if self._username is None:
            raise ProtocolUsageError("no client-first-message yet")
        return self._authzid

    def receive_client_first(self, message: bytes) -> str:
        """Parse ``gs2-header client-first-message-bare``; return the username."""
        self._advance(_ServerState.AWAITING_CLIENT_FIRST)
        text = _decode_message(message)
        parts = text.split(",", 2)
        if len(parts) != 3:
            raise _malformed("missing GS2 header")
        flag, authzid_field, bare = parts
        cbind_data = self._check_channel_binding_flag(flag)
        if authzid_field:
            if not authzid_field.startswith("a="):
                raise _malformed("bad authzid")
            self._authzid = _saslname_decode(authzid_field[2:])
        attributes = _attributes(bare)
        _refuse_mandatory_extension(attributes)
        username = _saslname_decode(_expect(attributes, 0, "n"))
        client_nonce = _nonce(_expect(attributes, 1, "r"))
        # RFC 5802 §5.1 c=: the GS2 header exactly as sent, then the channel's binding data.
        gs2_header = text[: len(flag) + len(authzid_field) + 2]
        self._expected_cbind_input = gs2_header.encode("utf-8") + cbind_data
        self._nonce = client_nonce + self._server_nonce
        self._auth_message_prefix = bare
        self._username = username
        self._state = _ServerState.AWAITING_CREDENTIALS
        return username

    def _check_channel_binding_flag(self, flag: str) -> bytes:
        """RFC 5802 §6: apply the gs2-cbind-flag rules; return the binding data to expect."""
        if flag in ("n", "y"):
            if self._plus:
                raise _refused("a -PLUS mechanism requires channel binding")
            # 'y': the client could bind but saw no -PLUS offer. If we offered one, someone
            # removed it on the way: a downgrade attack, and the server MUST fail.
            if flag == "y" and self._plus_advertised:
                raise _refused("channel binding was offered: possible downgrade")
            return b""
        if not flag.startswith("p=") or not _CB_NAME.fullmatch(flag[2:]):
            raise _malformed("bad gs2-cbind-flag")
        if not self._plus:
            raise _refused("channel binding requested with a non-PLUS mechanism")
        try:
            return self._channel_bindings[flag[2:]]
        except KeyError:
            raise _refused(f"unsupported channel binding type {flag[2:]!r}") from None

    def server_first(self, credentials: ScramCredentials | None) -> bytes:
        """The challenge; ``None`` means the user is unknown and will fail at client-final."""
        self._advance(_ServerState.AWAITING_CREDENTIALS)
        if credentials is None:
            salt = _hmac(self._hash_name, b"xmppcore fake SCRAM salt\x00" + self._unknown_user_key,
                         self.username.encode("utf-8"))[:DEFAULT_SALT_LENGTH]
            iterations = self._unknown_user_iterations
        else:
            if credentials.hash_name != self._hash_name:
                raise ProtocolUsageError(f"{credentials.hash_name} credentials for {self._hash_name}")
            salt, iterations = credentials.salt, credentials.iterations
        self._credentials = credentials
        server_first = f"r={self._nonce},s={_b64encode(salt)},i={iterations}"
        self._auth_message_prefix += "," + server_first
        self._state = _ServerState.AWAITING_CLIENT_FINAL
        return server_first.encode("ascii")

    def receive_client_final(self, message: bytes) -> bytes:
        """Verify binding, nonce and proof; return ``v=ServerSignature`` (RFC 5802 §3)."""
        self._advance(_ServerState.AWAITING_CLIENT_FINAL)
        text = _decode_message(message)
        attributes = _attributes(text)
        if len(attributes) < 3:
            raise _malformed("client-final-message too short")
        # channel-binding "," nonce ["," extensions] "," proof
        cbind_input = _base64(_expect(attributes, 0, "c"))
        nonce = _expect(attributes, 1, "r")
        proof = _base64(_expect(attributes, len(attributes) - 1, "p"))
        without_proof = text.rsplit(",", 1)[0]
        if not hmac.compare_digest(cbind_input, self._expected_cbind_input):
            raise _refused("channel binding mismatch")
        if not hmac.compare_digest(nonce.encode("utf-8"), self._nonce.encode("ascii")):
            raise _refused("nonce mismatch")
        auth_message = f"{self._auth_message_prefix},{without_proof}".encode("utf-8")
        server_signature = self._verify_proof(proof, auth_message)
        self._state = _ServerState.SUCCEEDED
        return b"v=" + base64.b64encode(server_signature)

    def _verify_proof(self, proof: bytes, auth_message: bytes) -> bytes:
        size = _digest_size(self._hash_name)
        credentials = self._credentials
        # An unknown user costs the same HMACs as a known one, then fails (RFC 5802 §9).
        stored_key = credentials.stored_key if credentials else bytes(size)
        client_signature = _hmac(self._hash_name, stored_key, auth_message)
        proof_ok = len(proof) == size
        client_key = _xor(proof if proof_ok else bytes(size), client_signature)
        key_ok = hmac.compare_digest(_hash(self._hash_name, client_key), stored_key)
        if credentials is None or not (proof_ok and key_ok):
            raise _refused("authentication failed")
        return _hmac(self._hash_name, credentials.server_key, auth_message)


# -- client ---------------------------------------------------------------------------------------

class _ClientState(enum.Enum):
    INITIAL = enum.auto()
    AWAITING_SERVER_FIRST = enum.auto()
    AWAITING_SERVER_FINAL = enum.auto()
    SUCCEEDED = enum.auto()
    FAILED = enum.auto()


@functools.lru_cache(maxsize=256)
def _client_salted_password(password: str, hash_name: str, salt: bytes, iterations: int) -> bytes:
    """The client's SaltedPassword, derived once per password, salt and count.

    RFC 5802 §5.1: a client MAY cache SaltedPassword for reauthentication, since the server
    advertises the same salt again; bots and the load generator log in over and over.
    """
    return _salted_password(password, hash_name, salt, iterations)


class ScramClient:
    """Client side, for our own test client and bots.

    ``plus=True`` binds to ``channel_binding`` (``p=<type>``, SCRAM-*-PLUS). Without it the flag
    is ``y`` when binding data exists but the server offered no -PLUS mechanism, else ``n``.
    Bad arguments (a password OpaqueString refuses, an empty username...) raise ``ValueError``.
    """

    def __init__(
        self,
        hash_name: str,
        *,
        username: str,
        password: str,
        client_nonce: str,
        authzid: str | None = None,
        channel_binding: tuple[str, bytes] | None = None,
        plus: bool = False,
        server_supports_plus: bool = False,
    ) -> None:
        if hash_name not in SCRAM_HASHES:
            raise ValueError(f"unsupported SCRAM hash {hash_name!r}")
        for name in (username, authzid):
            if name is not None and (not name or "\x00" in name):
                raise ValueError("username and authzid must be non-empty, without NUL")
        if len(client_nonce) > _MAX_NONCE_LENGTH or not _PRINTABLE.fullmatch(client_nonce):
            raise ValueError("client nonce must be printable ASCII without ','")
        if plus:
            if channel_binding is None or not _CB_NAME.fullmatch(channel_binding[0]):
                raise ValueError("plus=True needs a channel binding (type, data)")
            flag = f"p={channel_binding[0]}"
        else:
            flag = "y" if channel_binding is not None and not server_supports_plus else "n"
        authzid_field = f"a={_saslname_encode(authzid)}" if authzid is not None else ""
        self._hash_name = hash_name
        self._password = prepare_password(password)
        self._gs2_header = f"{flag},{authzid_field},"
        self._cbind_data = channel_binding[1] if plus and channel_binding else b""
        self._client_nonce = client_nonce
        self._bare = f"n={_saslname_encode(username)},r={client_nonce}"
        self._server_signature = b""
        self._state = _ClientState.INITIAL
        self.mechanism: Final = mechanism_name(hash_name, plus)

    def _advance(self, expected: _ClientState) -> None:
        if self._state is not expected:
            raise ProtocolUsageError(f"ScramClient is {self._state.name}, not {expected.name}")
        self._state = _ClientState.FAILED

    def client_first(self) -> bytes:
        """``gs2-header client-first-message-bare``."""
        self._advance(_ClientState.INITIAL)
        self._state = _ClientState.AWAITING_SERVER_FIRST
        return (self._gs2_header + self._bare).encode("utf-8")

    def receive_server_first(self, message: bytes) -> bytes:
        """Check the challenge and return the client-final-message with the proof."""
        self._advance(_ClientState.AWAITING_SERVER_FIRST)
        text = _decode_message(message)
        attributes = _attributes(text)
        _refuse_mandatory_extension(attributes)
        nonce = _nonce(_expect(attributes, 0, "r"))
        salt = _base64(_expect(attributes, 1, "s"))
        iterations_text = _expect(attributes, 2, "i")
        if not salt:
            raise _malformed("empty salt")
        if not nonce.startswith(self._client_nonce) or nonce == self._client_nonce:
            raise _refused("server nonce does not extend ours")  # RFC 5802 §5.1 r=
        if not _POSIT_NUMBER.fullmatch(iterations_text):
            raise _malformed("bad iteration count")
        # The length test keeps int() away from huge digit strings.
        if len(iterations_text) > 9 or int(iterations_text) > _MAX_ITERATIONS:
            raise _refused("unacceptable iteration count")
        salted = _client_salted_password(self._password, self._hash_name, salt, int(iterations_text))
        channel_binding = _b64encode(self._gs2_header.encode("utf-8") + self._cbind_data)
        without_proof = f"c={channel_binding},r={nonce}"
        auth_message = f"{self._bare},{text},{without_proof}".encode("utf-8")
        client_key = _client_key(self._hash_name, salted)
        client_signature = _hmac(self._hash_name, _hash(self._hash_name, client_key), auth_message)
        proof = _xor(client_key, client_signature)
        self._server_signature = _hmac(self._hash_name, _server_key(self._hash_name, salted), auth_message)
        self._state = _ClientState.AWAITING_SERVER_FINAL
        return f"{without_proof},p={_b64encode(proof)}".encode("ascii")

    def receive_server_final(self, message: bytes) -> None:
        """Check the server's signature: a server that does not know our key is refused."""
        self._advance(_ClientState.AWAITING_SERVER_FINAL)
        attributes = _attributes(_decode_message(message))
        if attributes[0][0] == "e":
            raise _refused(f"server error: {attributes[0][1]}")
        signature = _base64(_expect(attributes, 0, "v"))
        if not hmac.compare_digest(signature, self._server_signature):
            raise _refused("wrong server signature")
        self._state = _ClientState.SUCCEEDED

"""RFC 4422: SASL mechanisms as pure state machines — SCRAM (RFC 5802, RFC 7677) and PLAIN (RFC 4616).

Nothing here does I/O or reads a clock or RNG: nonces and salts come from the caller.
"""

from .credentials import (
    DEFAULT_ITERATIONS, DEFAULT_SALT_LENGTH, SCRAM_HASHES, ScramCredentials, derive_scram_credentials,
    prepare_password,
)
from .plain import PlainMessage, parse_plain, plain_client_message, verify_plain_password
from .scram import MAX_MESSAGE_LENGTH, ScramClient, ScramServer, mechanism_name, parse_mechanism

__all__ = [
    "ScramCredentials", "prepare_password", "derive_scram_credentials", "SCRAM_HASHES",
    "DEFAULT_ITERATIONS", "DEFAULT_SALT_LENGTH",
    "mechanism_name", "parse_mechanism", "ScramServer", "ScramClient", "MAX_MESSAGE_LENGTH",
    "PlainMessage", "parse_plain", "verify_plain_password", "plain_client_message",
]

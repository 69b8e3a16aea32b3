"""RFC 6120 error vocabulary: stream errors (§4.9), stanza errors (§8.3) and SASL failures (§6.5).

Conditions are enums, never strings; each exception knows how to become its XML element, so
one place (the core for streams, the IQ dispatcher for stanzas) turns refusals into replies.
"""

from __future__ import annotations

import enum

from ..xml.element import Element
from ..xml.namespaces import NS_SASL, NS_STANZA_ERRORS, NS_STREAM_ERRORS, NS_STREAMS

__all__ = [
    "StreamCondition", "StreamError", "Condition", "ErrorType", "StanzaError",
    "SaslCondition", "SaslFailure", "ProtocolUsageError", "DEFAULT_ERROR_TYPE",
]


class ProtocolUsageError(Exception):
    """Our own code misused a protocol object (a bug, never a peer's fault)."""


class StreamCondition(enum.Enum):
    """RFC 6120 §4.9.3 defined stream error conditions."""

    BAD_FORMAT = "bad-format"
    BAD_NAMESPACE_PREFIX = "bad-namespace-prefix"
    CONFLICT = "conflict"
    CONNECTION_TIMEOUT = "connection-timeout"
    HOST_GONE = "host-gone"
    HOST_UNKNOWN = "host-unknown"
    IMPROPER_ADDRESSING = "improper-addressing"
    INTERNAL_SERVER_ERROR = "internal-server-error"
    INVALID_FROM = "invalid-from"
    INVALID_NAMESPACE = "invalid-namespace"
    INVALID_XML = "invalid-xml"
    NOT_AUTHORIZED = "not-authorized"
    NOT_WELL_FORMED = "not-well-formed"
    POLICY_VIOLATION = "policy-violation"
    REMOTE_CONNECTION_FAILED = "remote-connection-failed"
    RESET = "reset"
    RESOURCE_CONSTRAINT = "resource-constraint"
    RESTRICTED_XML = "restricted-xml"
    SEE_OTHER_HOST = "see-other-host"
    SYSTEM_SHUTDOWN = "system-shutdown"
    UNDEFINED_CONDITION = "undefined-condition"
    UNSUPPORTED_ENCODING = "unsupported-encoding"
    UNSUPPORTED_FEATURE = "unsupported-feature"
    UNSUPPORTED_STANZA_TYPE = "unsupported-stanza-type"
    UNSUPPORTED_VERSION = "unsupported-version"


class StreamError(Exception):
    """A peer's fault that ends the stream (RFC 6120 §4.9): the core sends it and closes."""

    def __init__(self, condition: StreamCondition, text: str | None = None) -> None:
        super().__init__(f"{condition.value}: {text}" if text else condition.value)
        self.condition = condition
        self.text = text

    def to_element(self) -> Element:
        """``<stream:error>`` with the condition and optional text."""
        err = Element("error", NS_STREAMS)
        err.add(self.condition.value, NS_STREAM_ERRORS)
        if self.text:
            err.add("text", NS_STREAM_ERRORS, text=self.text)
        return err


class ErrorType(enum.Enum):
    """RFC 6120 §8.3.2 error types."""

    AUTH = "auth"
    CANCEL = "cancel"
    CONTINUE = "continue"
    MODIFY = "modify"
    WAIT = "wait"


class Condition(enum.Enum):
    """RFC 6120 §8.3.3 defined stanza error conditions."""

    BAD_REQUEST = "bad-request"
    CONFLICT = "conflict"
    FEATURE_NOT_IMPLEMENTED = "feature-not-implemented"
    FORBIDDEN = "forbidden"
    GONE = "gone"
    INTERNAL_SERVER_ERROR = "internal-server-error"
    ITEM_NOT_FOUND = "item-not-found"
    JID_MALFORMED = "jid-malformed"
    NOT_ACCEPTABLE = "not-acceptable"
    NOT_ALLOWED = "not-allowed"
    NOT_AUTHORIZED = "not-authorized"
    POLICY_VIOLATION = "policy-violation"
    RECIPIENT_UNAVAILABLE = "recipient-unavailable"
    REDIRECT = "redirect"
    REGISTRATION_REQUIRED = "registration-required"
    REMOTE_SERVER_NOT_FOUND = "remote-server-not-found"
    REMOTE_SERVER_TIMEOUT = "remote-server-timeout"
    RESOURCE_CONSTRAINT = "resource-constraint"
    SERVICE_UNAVAILABLE = "service-unavailable"
    SUBSCRIPTION_REQUIRED = "subscription-required"
    UNDEFINED_CONDITION = "undefined-condition"
    UNEXPECTED_REQUEST = "unexpected-request"


# The customary type for each condition, as the examples of RFC 6120 §8.3.3 give them.
DEFAULT_ERROR_TYPE: dict[Condition, ErrorType] = {
    Condition.BAD_REQUEST: ErrorType.MODIFY,
    Condition.CONFLICT: ErrorType.CANCEL,
    Condition.FEATURE_NOT_IMPLEMENTED: ErrorType.CANCEL,
    Condition.FORBIDDEN: ErrorType.AUTH,
    Condition.GONE: ErrorType.CANCEL,
    Condition.INTERNAL_SERVER_ERROR: ErrorType.CANCEL,
    Condition.ITEM_NOT_FOUND: ErrorType.CANCEL,
    Condition.JID_MALFORMED: ErrorType.MODIFY,
    Condition.NOT_ACCEPTABLE: ErrorType.MODIFY,
    Condition.NOT_ALLOWED: ErrorType.CANCEL,
    Condition.NOT_AUTHORIZED: ErrorType.AUTH,
    Condition.POLICY_VIOLATION: ErrorType.MODIFY,
    Condition.RECIPIENT_UNAVAILABLE: ErrorType.WAIT,
    Condition.REDIRECT: ErrorType.MODIFY,
    Condition.REGISTRATION_REQUIRED: ErrorType.AUTH,
    Condition.REMOTE_SERVER_NOT_FOUND: ErrorType.CANCEL,
    Condition.REMOTE_SERVER_TIMEOUT: ErrorType.WAIT,
    Condition.RESOURCE_CONSTRAINT: ErrorType.WAIT,
    Condition.SERVICE_UNAVAILABLE: ErrorType.CANCEL,
    Condition.SUBSCRIPTION_REQUIRED: ErrorType.AUTH,
    Condition.UNDEFINED_CONDITION: ErrorType.CANCEL,
    Condition.UNEXPECTED_REQUEST: ErrorType.WAIT,
}


class StanzaError(Exception):
    """A refusal of one stanza (RFC 6120 §8.3); the dispatcher turns it into one error reply."""

    def __init__(
        self,
        condition: Condition,
        text: str | None = None,
        *,
        type: ErrorType | None = None,  # noqa: A002 - the RFC's own word
        by: str | None = None,
    ) -> None:
        super().__init__(f"{condition.value}: {text}" if text else condition.value)
        self.condition = condition
        self.text = text
        self.type = type if type is not None else DEFAULT_ERROR_TYPE[condition]
        self.by = by

    def to_element(self, stanza_ns: str) -> Element:
        """The ``<error/>`` child, in the stanza's namespace (``jabber:client`` etc.)."""
        attrs = {"type": self.type.value}
        if self.by:
            attrs["by"] = self.by
        err = Element("error", stanza_ns, attrs)
        err.add(self.condition.value, NS_STANZA_ERRORS)
        if self.text:
            err.add("text", NS_STANZA_ERRORS, text=self.text)
        return err

    @classmethod
    def from_element(cls, error: Element) -> StanzaError:
        """Read an ``<error/>`` child; unknown conditions read as undefined-condition."""
        condition = Condition.UNDEFINED_CONDITION
        text = None
        for child in error.elements():
            if child.ns != NS_STANZA_ERRORS:
                continue
            if child.name == "text":
                text = child.text
                continue
            try:
                condition = Condition(child.name)
            except ValueError:
                pass
        try:
            etype: ErrorType | None = ErrorType(error.get("type", ""))
        except ValueError:
            etype = None
        return cls(condition, text, type=etype, by=error.get("by"))


class SaslCondition(enum.Enum):
    """RFC 6120 §6.5 SASL failure conditions."""

    ABORTED = "aborted"
    ACCOUNT_DISABLED = "account-disabled"
    CREDENTIALS_EXPIRED = "credentials-expired"
    ENCRYPTION_REQUIRED = "encryption-required"
    INCORRECT_ENCODING = "incorrect-encoding"
    INVALID_AUTHZID = "invalid-authzid"
    INVALID_MECHANISM = "invalid-mechanism"
    MALFORMED_REQUEST = "malformed-request"
    MECHANISM_TOO_WEAK = "mechanism-too-weak"
    NOT_AUTHORIZED = "not-authorized"
    TEMPORARY_AUTH_FAILURE = "temporary-auth-failure"


class SaslFailure(Exception):
    """A SASL exchange ended in failure (RFC 6120 §6.4.5); the stream itself goes on."""

    def __init__(self, condition: SaslCondition, text: str | None = None) -> None:
        super().__init__(f"{condition.value}: {text}" if text else condition.value)
        self.condition = condition
        self.text = text

    def to_element(self) -> Element:
        """``<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>`` with the condition."""
        failure = Element("failure", NS_SASL)
        failure.add(self.condition.value)
        if self.text:
            failure.add("text", text=self.text)
        return failure

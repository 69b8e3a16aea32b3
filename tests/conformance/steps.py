"""RFC 6120 §4–§8 from a client's side: the steps a conformance scenario is made of.

Each step is a frozen value naming the client it acts on; the loader (``model.py``) builds
them from TOML and the runner (``runner.py``) performs them.  ``STEP_KINDS`` maps each TOML
action key to the modifier keys that step accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from xmppcore.stanza.errors import SaslCondition, StreamCondition

__all__ = [
    "STEP_KINDS", "Step", "Send", "Expect", "ExpectNothing", "ExpectStreamError", "ExpectSaslFailure",
    "ExpectClosed", "ExpectFeatures", "ExpectHeader", "OpenStream", "StartTls", "Authenticate", "Bind",
]

STEP_KINDS: dict[str, tuple[str, ...]] = {
    "send": (),
    "send_raw": (),
    "expect": ("skip_others", "exact", "timeout"),
    "expect_nothing": ("timeout",),
    "expect_stream_error": ("timeout",),
    "expect_sasl_failure": ("timeout",),
    "expect_closed": ("timeout",),
    "expect_features": ("exact", "timeout"),
    "expect_header": ("timeout",),
    "open_stream": ("timeout",),
    "starttls": ("timeout",),
    "authenticate": ("expect_sasl_failure", "timeout"),
    "bind": ("timeout",),
}


@dataclass(frozen=True, slots=True)
class Step:
    """What every step has: its 1-based position in the scenario and the client it acts on."""

    DEFAULT_TIMEOUT: ClassVar[float] = 5.0
    KIND: ClassVar[str] = ""

    index: int
    client: str

    def describe(self) -> str:
        return f"step {self.index} ({self.client}: {self.KIND})"


@dataclass(frozen=True, slots=True)
class Send(Step):
    """Write XML (``send``, checked to be well-formed at load) or any bytes (``send_raw``)."""

    KIND: ClassVar[str] = "send"

    text: str
    raw: bool = False


@dataclass(frozen=True, slots=True)
class Expect(Step):
    """The next elements must match these patterns, in any order (see ``runner.py`` for what
    may arrive in between)."""

    KIND: ClassVar[str] = "expect"

    patterns: tuple[str, ...]
    skip_others: bool = False
    exact: bool = False
    timeout: float = Step.DEFAULT_TIMEOUT


@dataclass(frozen=True, slots=True)
class ExpectNothing(Step):
    """Nothing arrives: proven with a round trip to the server on every bound client."""

    KIND: ClassVar[str] = "expect_nothing"

    timeout: float = Step.DEFAULT_TIMEOUT


@dataclass(frozen=True, slots=True)
class ExpectStreamError(Step):
    """RFC 6120 §4.9: this stream error, then the stream and the connection close."""

    KIND: ClassVar[str] = "expect_stream_error"

    condition: StreamCondition
    timeout: float = Step.DEFAULT_TIMEOUT


@dataclass(frozen=True, slots=True)
class ExpectSaslFailure(Step):
    """RFC 6120 §6.5: the next element is a SASL ``<failure/>`` with this condition."""

    KIND: ClassVar[str] = "expect_sasl_failure"

    condition: SaslCondition
    timeout: float = Step.DEFAULT_TIMEOUT


@dataclass(frozen=True, slots=True)
class ExpectClosed(Step):
    """RFC 6120 §4.4: the server closes the stream (and then the TCP connection)."""

    KIND: ClassVar[str] = "expect_closed"

    timeout: float = Step.DEFAULT_TIMEOUT


@dataclass(frozen=True, slots=True)
class ExpectFeatures(Step):
    """RFC 6120 §4.3.2: the features that followed the latest server header match a pattern."""

    KIND: ClassVar[str] = "expect_features"

    pattern: str
    exact: bool = False
    timeout: float = Step.DEFAULT_TIMEOUT


@dataclass(frozen=True, slots=True)
class ExpectHeader(Step):
    """RFC 6120 §4.7: the latest server stream header carries these attributes (``*`` wildcards)."""

    KIND: ClassVar[str] = "expect_header"

    attrs: tuple[tuple[str, str], ...]
    timeout: float = Step.DEFAULT_TIMEOUT


@dataclass(frozen=True, slots=True)
class OpenStream(Step):
    """RFC 6120 §4.2, §4.3.3: send an initial or restart header; the answer is read lazily."""

    KIND: ClassVar[str] = "open_stream"
    KEYS: ClassVar[tuple[str, ...]] = ("to", "from", "version", "lang", "ns", "stream_ns")

    attrs: tuple[tuple[str, str], ...]
    timeout: float = Step.DEFAULT_TIMEOUT


@dataclass(frozen=True, slots=True)
class StartTls(Step):
    """RFC 6120 §5.4: ``<starttls/>``, ``<proceed/>``, the TLS handshake and the stream restart."""

    KIND: ClassVar[str] = "starttls"

    timeout: float = Step.DEFAULT_TIMEOUT


@dataclass(frozen=True, slots=True)
class Authenticate(Step):
    """RFC 6120 §6.4: one SASL exchange; on success the stream restarts (§6.4.6)."""

    KIND: ClassVar[str] = "authenticate"
    BEST: ClassVar[str] = "best"  # the strongest SCRAM the server offers

    mechanism: str
    username: str
    password: str
    authzid: str | None = None
    failure: SaslCondition | None = None  # the failure the server must answer with; None: success
    timeout: float = Step.DEFAULT_TIMEOUT


@dataclass(frozen=True, slots=True)
class Bind(Step):
    """RFC 6120 §7: bind this resource ("" lets the server choose); must succeed."""

    KIND: ClassVar[str] = "bind"

    resource: str
    timeout: float = Step.DEFAULT_TIMEOUT

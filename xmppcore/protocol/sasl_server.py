"""RFC 6120 §6: the receiving side of SASL negotiation, independent of the stream role.

Handles ``<auth/>``, ``<response/>`` and ``<abort/>``, drives one mechanism at a time
(SCRAM-SHA-1/-256 with their -PLUS variants, PLAIN), and says what to send back.  It never
touches storage: the stream core turns :class:`NeedCredentials` into a ``CredentialsNeeded``
event and feeds the answer back through :meth:`SaslNegotiator.provide_credentials`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..stanza.errors import SaslCondition, SaslFailure
from ..xml.element import Element
from ..xml.namespaces import NS_SASL, NS_SASL_CB
from .sasl import (
    PlainMessage, ScramCredentials, ScramServer, parse_mechanism, parse_plain,
    verify_plain_password,
)

__all__ = ["SaslNegotiator", "NeedCredentials", "Reply", "Success", "Failure", "SaslStep"]

PLAIN = "PLAIN"
_MAX_PAYLOAD = 16384  # base64 text of one SASL message; SCRAM messages are far smaller


@dataclass(frozen=True, slots=True)
class NeedCredentials:
    """Ask the runtime for ``username``'s stored credentials for ``hash_name``."""

    username: str
    hash_name: str


@dataclass(frozen=True, slots=True)
class Reply:
    """Send this element (a challenge) and wait for the client's response."""

    element: Element


@dataclass(frozen=True, slots=True)
class Success:
    """Authentication succeeded for ``username``; send ``element`` and restart the stream."""

    username: str
    element: Element


@dataclass(frozen=True, slots=True)
class Failure:
    """The attempt failed with ``condition``; send ``element`` (the stream goes on)."""

    username: str | None
    condition: SaslCondition
    element: Element


SaslStep = NeedCredentials | Reply | Success | Failure


def _b64(data: bytes) -> str:
    # RFC 6120 §6.4.2: an empty payload is sent as a single '='.
    return base64.b64encode(data).decode("ascii") if data else "="


def _unb64(text: str) -> bytes:
    text = "".join(text.split())
    if text == "=" or not text:
        return b""
    if len(text) > _MAX_PAYLOAD:
        raise SaslFailure(SaslCondition.MALFORMED_REQUEST, "SASL message too long")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SaslFailure(SaslCondition.INCORRECT_ENCODING) from exc


class SaslNegotiator:
    """One stream's SASL state: at most one exchange in progress at a time."""

    def __init__(
        self,
        *,
        domain: str,
        offered: Sequence[str],
        withheld_without_tls: Sequence[str] = (),
        channel_bindings: Mapping[str, bytes],
        nonce_factory: Callable[[], str],
        normalize_username: Callable[[str], str | None],
        unknown_user_key: bytes = b"",
        unknown_user_iterations: int = 4096,
    ) -> None:
        self._domain = domain
        self._offered = tuple(offered)
        self._withheld = frozenset(withheld_without_tls)
        self._bindings = dict(channel_bindings)
        self._nonce = nonce_factory
        self._normalize = normalize_username
        self._mechanism = ""
        self._scram: ScramServer | None = None
        self._plain: PlainMessage | None = None
        self._username: str | None = None
        self._awaiting_initial = ""  # mechanism whose initial response we asked for
        # Unknown accounts get a stable fake salt, so probing cannot tell them apart.
        self._unknown_key = unknown_user_key
        self._unknown_iterations = unknown_user_iterations

    @property
    def mechanism(self) -> str:
        """The mechanism of the current (or last) exchange."""
        return self._mechanism

    @property
    def in_progress(self) -> bool:
        return self._scram is not None or self._plain is not None or bool(self._awaiting_initial)

    @property
    def offered(self) -> tuple[str, ...]:
        """The mechanisms offered, in order of preference."""
        return self._offered

    def features(self) -> list[Element]:
        """``<mechanisms/>`` plus the XEP-0440 channel-binding list, when any are offered."""
        if not self._offered:
            return []
        mechanisms = Element("mechanisms", NS_SASL)
        for name in self._offered:
            mechanisms.add("mechanism", text=name)
        out = [mechanisms]
        if self._bindings and any(m.endswith("-PLUS") for m in self._offered):
            cb = Element("sasl-channel-binding", NS_SASL_CB)
            for kind in self._bindings:
                cb.add("channel-binding", attrs={"type": kind})
            out.append(cb)
        return out

    # -- input ---------------------------------------------------------------------------------
    def handle(self, element: Element) -> SaslStep:
        """Process ``<auth/>``, ``<response/>`` or ``<abort/>`` (RFC 6120 §6.4)."""
        try:
            if element.name == "auth":
                return self._start(element)
            if element.name == "response" and self._awaiting_initial:
                name, self._awaiting_initial = self._awaiting_initial, ""
                return self._begin(name, _unb64(element.text))
            if element.name == "response" and self._scram is not None:
                return self._finish_scram(_unb64(element.text))
            if element.name == "abort":
                self._reset()
                return self._failure(SaslFailure(SaslCondition.ABORTED))
            raise SaslFailure(SaslCondition.MALFORMED_REQUEST, f"unexpected <{element.name}/>")
        except SaslFailure as failure:
            self._reset()
            return self._failure(failure)

    def provide_credentials(self, credentials: ScramCredentials | None) -> SaslStep:
        """The runtime's answer to :class:`NeedCredentials` (None: no such account)."""
        try:
            if self._scram is not None:
                return Reply(Element("challenge", NS_SASL, text=_b64(self._scram.server_first(credentials))))
            if self._plain is not None:
                plain, self._plain = self._plain, None
                if not verify_plain_password(plain.password, credentials):
                    raise SaslFailure(SaslCondition.NOT_AUTHORIZED)
                return self._success(b"")
            raise SaslFailure(SaslCondition.MALFORMED_REQUEST, "no exchange in progress")
        except SaslFailure as failure:
            self._reset()
            return self._failure(failure)

    def credentials_unavailable(self) -> SaslStep:
        """Storage could not answer: a temporary failure (RFC 6120 §6.5.12)."""
        self._reset()
        return self._failure(SaslFailure(SaslCondition.TEMPORARY_AUTH_FAILURE))

    # -- steps -------------------------------------------------------------------------------
    def _start(self, auth: Element) -> SaslStep:
        if self.in_progress:
            raise SaslFailure(SaslCondition.MALFORMED_REQUEST, "an exchange is already in progress")
        name = auth.get("mechanism", "") or ""
        self._mechanism = name
        if name not in self._offered:
            if name in self._withheld:
                # RFC 6120 §6.5.4: usable only once the stream is protected by TLS.
                raise SaslFailure(SaslCondition.ENCRYPTION_REQUIRED)
            raise SaslFailure(SaslCondition.INVALID_MECHANISM)
        if not auth.text.strip():
            # RFC 6120 §6.4.2 / RFC 4422 §5: no initial response (an empty initial response
            # would be '='), so an empty challenge asks for it.
            self._awaiting_initial = name
            return Reply(Element("challenge", NS_SASL, text="="))
        return self._begin(name, _unb64(auth.text))

    def _begin(self, name: str, initial: bytes) -> SaslStep:
        if name == PLAIN:
            return self._start_plain(initial)
        parsed = parse_mechanism(name)
        if parsed is None:
            raise SaslFailure(SaslCondition.INVALID_MECHANISM)
        hash_name, plus = parsed
        self._scram = ScramServer(
            hash_name, plus=plus, server_nonce=self._nonce(),
            channel_bindings=self._bindings,
            plus_advertised=any(m.endswith("-PLUS") for m in self._offered),
            unknown_user_key=self._unknown_key, unknown_user_iterations=self._unknown_iterations,
        )
        username = self._checked_username(self._scram.receive_client_first(initial))
        self._check_authzid(self._scram.authzid, username)
        return NeedCredentials(username, hash_name)

    def _start_plain(self, initial: bytes) -> SaslStep:
        message = parse_plain(initial)
        username = self._checked_username(message.authcid)
        self._check_authzid(message.authzid or None, username)
        self._plain = message
        return NeedCredentials(username, "sha-256")

    def _finish_scram(self, data: bytes) -> SaslStep:
        assert self._scram is not None
        final = self._scram.receive_client_final(data)
        self._scram = None
        return self._success(final)

    def _checked_username(self, raw: str) -> str:
        username = self._normalize(raw)
        self._username = username if username is not None else raw
        if username is None:
            raise SaslFailure(SaslCondition.NOT_AUTHORIZED)
        return username

    def _check_authzid(self, authzid: str | None, username: str) -> None:
        # RFC 6120 §6.3.8: we only let a user act as themselves.  An authzid equal to the
        # account's bare JID is harmless; anything else is refused.
        if authzid and authzid != f"{username}@{self._domain}":
            raise SaslFailure(SaslCondition.INVALID_AUTHZID)

    def _success(self, additional: bytes) -> Success:
        assert self._username is not None
        username, self._username = self._username, None
        element = Element("success", NS_SASL, text=_b64(additional) if additional else None)
        return Success(username, element)

    def _failure(self, failure: SaslFailure) -> Failure:
        username, self._username = self._username, None
        return Failure(username, failure.condition, failure.to_element())

    def _reset(self) -> None:
        self._scram = None
        self._plain = None
        self._awaiting_initial = ""

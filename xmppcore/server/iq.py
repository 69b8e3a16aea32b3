"""RFC 6120 §8.2.3 and §10.3: IQ handlers, and the one place their outcomes become replies.

Handlers are registered per (scope, namespace, element name, type): ``host`` handlers answer
IQs addressed to the server's domain, ``account`` handlers answer IQs the server handles on
behalf of an account's bare JID (RFC 6121 §8.5.1.1).  Exactly one handler per key.
A handler returns a payload (or None for an empty result) or raises ``StanzaError``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from ..jid import JID
from ..stanza.errors import Condition, ErrorType, StanzaError
from ..stanza.model import IqType, error_reply, iq_payload, result_reply
from ..storage.api import StorageError
from ..xml.element import Element

__all__ = ["IqScope", "IqRequest", "IqHandler", "IqTable", "PayloadError"]

log = logging.getLogger(__name__)


class IqScope(enum.Enum):
    """Who an IQ is addressed to."""

    HOST = "host"        # the server itself: to='example.org'
    ACCOUNT = "account"  # a user's bare JID, answered by the server on the user's behalf


class PayloadError(ValueError):
    """A handler could not decode the payload it was given: ``bad-request``."""


@dataclass(frozen=True, slots=True)
class IqRequest:
    """An IQ get/set as a handler sees it."""

    stanza: Element
    type: IqType
    sender: JID
    to: JID
    payload: Element


IqHandler = Callable[[IqRequest], Awaitable[Element | None]]



class IqTable:
    """IQ handlers of one host."""

    def __init__(self) -> None:
        self._handlers: dict[tuple[IqScope, str, str, IqType], IqHandler] = {}

    def register(
        self, scope: IqScope, ns: str, name: str, types: Iterable[IqType], handler: IqHandler,
    ) -> Callable[[], None]:
        """Add ``handler``; a duplicate key is a load error. Returns the remover."""
        keys = [(scope, ns, name, t) for t in types]
        for key in keys:
            if key in self._handlers:
                raise ValueError(f"an IQ handler for {key} is already registered")
        for key in keys:
            self._handlers[key] = handler

        def remove() -> None:
            for key in keys:
                if self._handlers.get(key) is handler:
                    del self._handlers[key]

        return remove

    async def dispatch(self, scope: IqScope, stanza: Element, sender: JID, to: JID) -> Element | None:
        """The one reply to ``stanza``, or None for a result/error (never answered)."""
        try:
            iq_type = IqType(stanza.get("type", ""))
        except ValueError:
            return error_reply(stanza, StanzaError(Condition.BAD_REQUEST, "invalid IQ type"))
        if iq_type in (IqType.RESULT, IqType.ERROR):
            return None
        payload = iq_payload(stanza)
        if payload is None:
            # RFC 6120 §8.2.3: a get or set carries exactly one payload element.
            return error_reply(stanza, StanzaError(Condition.BAD_REQUEST, "an IQ request needs exactly one child"))
        handler = self._handlers.get((scope, payload.ns, payload.name, iq_type))
        if handler is None:
            other = IqType.SET if iq_type is IqType.GET else IqType.GET
            if (scope, payload.ns, payload.name, other) in self._handlers:
                # A known service asked for what it does not do (a set to a read-only one).
                return error_reply(stanza, StanzaError(Condition.NOT_ALLOWED, f"'{iq_type.value}' is not supported here"))
            # RFC 6120 §8.4: an unknown payload namespace.
            return error_reply(stanza, StanzaError(Condition.SERVICE_UNAVAILABLE))
        return await self._run(handler, IqRequest(stanza, iq_type, sender, to, payload))

    @staticmethod
    async def _run(handler: IqHandler, request: IqRequest) -> Element:
        stanza = request.stanza
        try:
            payload = await handler(request)
        except StanzaError as err:
            return error_reply(stanza, err)
        except PayloadError as err:
            return error_reply(stanza, StanzaError(Condition.BAD_REQUEST, str(err) or None))
        except StorageError:
            log.exception("storage failed answering <%s xmlns='%s'/>", request.payload.name, request.payload.ns)
            return error_reply(stanza, StanzaError(Condition.INTERNAL_SERVER_ERROR, type=ErrorType.WAIT))
        except Exception:
            log.exception("IQ handler crashed on <%s xmlns='%s'/>", request.payload.name, request.payload.ns)
            return error_reply(stanza, StanzaError(Condition.INTERNAL_SERVER_ERROR))
        return result_reply(stanza, payload)

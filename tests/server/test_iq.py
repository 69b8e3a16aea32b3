"""RFC 6120 §8.2.3: the IQ table — one handler per key, exactly one reply per request."""

from __future__ import annotations

import logging

import pytest

from tests.server.harness import canonical, error_of, expect, xml
from xmppcore.jid import JID
from xmppcore.server.iq import IqRequest, IqScope, IqTable, PayloadError
from xmppcore.stanza.errors import Condition, ErrorType, StanzaError
from xmppcore.stanza.model import IqType
from xmppcore.storage import StorageError
from xmppcore.xml.element import Element

NS = "urn:example:test"
ALICE = JID.parse("alice@localhost/phone")
HOST = JID.parse("localhost")
GET = f"<iq from='alice@localhost/phone' to='localhost' type='get' id='q1'><query xmlns='{NS}'/></iq>"


async def dispatch(table: IqTable, text: str = GET, scope: IqScope = IqScope.HOST) -> Element | None:
    return await table.dispatch(scope, xml(text), ALICE, HOST)


def must(reply: Element | None) -> Element:
    assert reply is not None, "expected a reply"
    return reply


async def answer(request: IqRequest) -> Element:
    return Element("query", NS, {"seen": request.type.value})


async def test_a_handler_answers_with_a_result() -> None:
    table = IqTable()
    table.register(IqScope.HOST, NS, "query", (IqType.GET,), answer)
    reply = must(await dispatch(table))
    assert [canonical(reply)] == expect(
        f"<iq from='localhost' to='alice@localhost/phone' type='result' id='q1'><query xmlns='{NS}' seen='get'/></iq>")


async def test_none_is_an_empty_result() -> None:
    async def empty(request: IqRequest) -> None:
        return None

    table = IqTable()
    table.register(IqScope.HOST, NS, "query", (IqType.GET,), empty)
    reply = must(await dispatch(table))
    assert [canonical(reply)] == expect("<iq from='localhost' to='alice@localhost/phone' type='result' id='q1'/>")


async def test_handlers_are_keyed_by_scope_and_type() -> None:
    table = IqTable()
    table.register(IqScope.ACCOUNT, NS, "query", (IqType.SET,), answer)
    assert error_of(must(await dispatch(table))) == ("cancel", "service-unavailable")
    reply = must(await dispatch(table, GET.replace("'get'", "'set'"), IqScope.ACCOUNT))
    assert reply.get("type") == "result"


async def test_a_duplicate_registration_is_refused() -> None:
    table = IqTable()
    table.register(IqScope.HOST, NS, "query", (IqType.GET,), answer)
    with pytest.raises(ValueError, match="already registered"):
        table.register(IqScope.HOST, NS, "query", (IqType.SET, IqType.GET), answer)
    # Nothing of the refused registration was kept: SET is still free.
    table.register(IqScope.HOST, NS, "query", (IqType.SET,), answer)


async def test_the_remover_removes_only_its_own_handler() -> None:
    table = IqTable()
    remove = table.register(IqScope.HOST, NS, "query", (IqType.GET,), answer)
    remove()
    assert error_of(must(await dispatch(table))) == ("cancel", "service-unavailable")

    async def newer(request: IqRequest) -> Element:
        return Element("query", NS, {"by": "newer"})

    table.register(IqScope.HOST, NS, "query", (IqType.GET,), newer)
    remove()  # a stale remover must not take the newer handler away
    reply = must(await dispatch(table))
    assert reply.find("query", NS) == Element("query", NS, {"by": "newer"})


@pytest.mark.parametrize(("text", "outcome"), [
    (GET.replace("type='get'", "type='result'"), None),
    (GET.replace("type='get'", "type='error'"), None),
    (GET.replace("type='get'", "type='fetch'"), ("modify", "bad-request")),
    (GET.replace(" type='get'", ""), ("modify", "bad-request")),
    (GET.replace(f"<query xmlns='{NS}'/>", ""), ("modify", "bad-request")),
    (GET.replace(f"<query xmlns='{NS}'/>", f"<query xmlns='{NS}'/><query xmlns='{NS}'/>"), ("modify", "bad-request")),
    (GET.replace(f"xmlns='{NS}'", "xmlns='urn:other'"), ("cancel", "service-unavailable")),
])
async def test_requests_no_handler_can_take(text: str, outcome: tuple[str, str] | None) -> None:
    table = IqTable()
    table.register(IqScope.HOST, NS, "query", (IqType.GET,), answer)
    reply = await dispatch(table, text)
    assert (error_of(reply) if reply is not None else None) == outcome


async def failing(exc: Exception) -> Element:
    async def handler(request: IqRequest) -> Element:
        raise exc

    table = IqTable()
    table.register(IqScope.HOST, NS, "query", (IqType.GET,), handler)
    return must(await dispatch(table))


async def test_a_stanza_error_becomes_that_error() -> None:
    reply = await failing(StanzaError(Condition.FORBIDDEN, "not yours", type=ErrorType.AUTH))
    assert error_of(reply) == ("auth", "forbidden")
    assert reply.get("id") == "q1" and reply.get("to") == "alice@localhost/phone"
    error = reply.find("error")
    assert error is not None and error.findtext("text", "urn:ietf:params:xml:ns:xmpp-stanzas") == "not yours"


async def test_a_payload_error_is_bad_request() -> None:
    reply = await failing(PayloadError("missing <item/>"))
    assert error_of(reply) == ("modify", "bad-request")


async def test_a_storage_failure_is_internal_server_error_wait(caplog: pytest.LogCaptureFixture) -> None:
    reply = await failing(StorageError("disk on fire"))
    assert error_of(reply) == ("wait", "internal-server-error")
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1


async def test_a_crash_is_internal_server_error_and_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    reply = await failing(RuntimeError("bug"))
    assert error_of(reply) == ("cancel", "internal-server-error")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "crashed" in errors[0].getMessage()
    # The reply never leaks the exception to the client.
    assert "bug" not in canonical(reply)

"""RFC 6120 §4–§8, RFC 6121: what each scenario step does on the wire and what it accepts back.

While a step waits, presence nobody asked for is ignored (servers differ in which presence
they broadcast, RFC 6121 §4.2.2) unless the client sets ``ignore_presence = false``; anything
else that does not match fails the step unless the step says ``skip_others = true``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from xmppcore.jid import JID, InvalidJID
from xmppcore.stanza.errors import SaslCondition, StreamCondition
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_BIND, NS_CLIENT, NS_SASL, NS_STREAM_ERRORS, NS_STREAMS, NS_TLS, NS_XML
from xmppcore.xml.parser import StreamFooter

from ..integration.rawclient import ConnectionEnded, best_scram
from .client import ScenarioClient, StepFailed, describe_event
from .matcher import Mismatch, explain, match_captures, render, wildcard_equal
from .matcher import match as match_pattern
from .steps import (
    Authenticate, Bind, Expect, ExpectClosed, ExpectFeatures, ExpectHeader, ExpectNothing, ExpectSaslFailure,
    ExpectStreamError, OpenStream, Send, StartTls, Step,
)

if TYPE_CHECKING:
    from .runner import ScenarioRun

__all__ = ["perform"]

_BYTES = re.compile(r"\{bytes:([0-9a-fA-F ]+)\}")


async def perform(run: ScenarioRun, step: Step) -> None:
    """Do ``step``; raise :class:`StepFailed` with a readable reason when the server disagrees."""
    client = run.client(step.client)
    try:
        await _perform(run, client, step)
    except TimeoutError:
        timeout = getattr(step, "timeout", Step.DEFAULT_TIMEOUT)
        raise StepFailed(f"nothing (more) arrived within {timeout} s; expected {_awaited(step)}") from None


def _awaited(step: Step) -> str:
    """What a step was waiting for, for its timeout message."""
    match step:
        case ExpectStreamError(condition=condition):
            return f"<stream:error><{condition.value}/></stream:error>"
        case ExpectSaslFailure(condition=condition):
            return f"<failure xmlns='{NS_SASL}'><{condition.value}/></failure>"
        case Authenticate(failure=failure) if failure is not None:
            return f"<failure xmlns='{NS_SASL}'><{failure.value}/></failure>"
        case ExpectClosed():
            return "the server to close the stream"
        case ExpectHeader() | ExpectFeatures() | OpenStream():
            return "the server's stream header and features"
        case StartTls():
            return f"<proceed xmlns='{NS_TLS}'/>, the TLS handshake and a new stream"
        case _:
            return f"the answer to {step.KIND}"


async def _perform(run: ScenarioRun, client: ScenarioClient, step: Step) -> None:
    match step:
        case Send(text=text, raw=raw):
            await client.send(_raw_bytes(run.substitute(text)) if raw else run.substitute(text))
        case Expect():
            await _expect(run, client, step)
        case ExpectNothing(timeout=timeout):
            await _expect_nothing(run, client, timeout)
        case ExpectStreamError(condition=condition, timeout=timeout):
            await _expect_stream_error(client, condition, run.deadline(timeout))
        case ExpectSaslFailure(condition=condition, timeout=timeout):
            _check_sasl_failure(await client.next_event(run.deadline(timeout)), condition)
        case ExpectClosed(timeout=timeout):
            await _expect_closed(client, run.deadline(timeout))
        case ExpectFeatures():
            await _expect_features(run, client, step)
        case ExpectHeader():
            await _expect_header(run, client, step)
        case OpenStream(attrs=attrs):
            await client.send_header(_header(run, dict(attrs)))
        case StartTls(timeout=timeout):
            await _starttls(run, client, run.deadline(timeout))
        case Authenticate():
            await _authenticate(run, client, step)
        case Bind(resource=resource, timeout=timeout):
            await _bind(run, client, resource, run.deadline(timeout))
        case _:
            raise AssertionError(f"no runner for {step!r}")


def _raw_bytes(text: str) -> bytes:
    """UTF-8, except that ``{bytes:c3 28}`` stands for those bytes (e.g. invalid UTF-8, §11.6)."""
    parts = _BYTES.split(text)
    # re.split alternates: text, hex digits, text, ...
    return b"".join(bytes.fromhex(part) if i % 2 else part.encode() for i, part in enumerate(parts))


# -- stanzas -----------------------------------------------------------------------------------
async def _expect(run: ScenarioRun, client: ScenarioClient, step: Expect) -> None:
    """Each pattern must be matched by a distinct element, in any order; what the ``{=name}``
    captures of a matched pattern stood for becomes ``{name}`` for the steps after this one."""
    remaining = [run.pattern(p) for p in step.patterns]
    deadline = run.deadline(step.timeout)
    ignored: list[Element] = []
    while remaining:
        try:
            event = await client.next_event(deadline)
        except TimeoutError:
            raise StepFailed(_waited(remaining, ignored, step.timeout)) from None
        if not isinstance(event, Element):
            raise StepFailed(f"the stream ended ({describe_event(event)}) while waiting for\n{_list(remaining)}")
        hit = _first_match(remaining, event, step.exact)
        if hit is not None:
            pattern, captures = hit
            remaining.remove(pattern)
            for name, value in captures.items():
                client.log(f"captured {{{name}}} = {value!r}")
            run.captured.update(captures)
        elif client.ignorable(event) or step.skip_others:
            ignored.append(event)
        else:
            closest = _closest(remaining, event, step)
            raise StepFailed("an element arrived that matches no expected pattern\n" + closest)


def _first_match(patterns: list[Element], element: Element, exact: bool) -> tuple[Element, dict[str, str]] | None:
    for pattern in patterns:
        result = match_captures(pattern, element, exact=exact)
        if not isinstance(result, Mismatch):
            return pattern, result
    return None


def _closest(patterns: list[Element], element: Element, step: Expect) -> str:
    same = [p for p in patterns if (p.ns, p.name) == (element.ns, element.name)]
    best = (same or patterns)[0]
    mismatch = match_pattern(best, element, exact=step.exact)
    assert mismatch is not None
    return explain(best, element, mismatch)


def _waited(remaining: list[Element], ignored: list[Element], timeout: float) -> str:
    text = f"timed out after {timeout} s waiting for\n{_list(remaining)}"
    if ignored:
        text += "\nignored in the meantime:\n" + "\n".join(f"  {render(e)}" for e in ignored)
    return text


def _list(patterns: list[Element]) -> str:
    return "\n".join(f"  {render(p)}" for p in patterns)


async def _expect_nothing(run: ScenarioRun, client: ScenarioClient, timeout: float) -> None:
    """A ping round trip on every other bound client, then on this one, is the barrier: what was
    sent before it has been routed, so whatever was going to reach ``client`` has."""
    if client.jid is None:
        raise StepFailed("expect_nothing needs a bound client (the barrier is an IQ to the server)")
    deadline = run.deadline(timeout)
    for other in run.clients.values():
        if other is not client and other.jid is not None and not other.raw.ended:
            other.push_back(await other.round_trip(deadline, lambda e: True))
    arrived = await client.round_trip(deadline, lambda e: not client.ignorable(e))
    if arrived:
        raise StepFailed("expected nothing, but got:\n" + "\n".join(f"  {render(e)}" for e in arrived))


# -- stream level --------------------------------------------------------------------------------
async def _expect_stream_error(client: ScenarioClient, condition: StreamCondition, deadline: float) -> None:
    """RFC 6120 §4.9: exactly one defined condition, then the stream closes (§4.9.1.1)."""
    event = await client.next_event(deadline)
    while isinstance(event, Element) and client.ignorable(event):
        event = await client.next_event(deadline)
    if not isinstance(event, Element) or (event.ns, event.name) != (NS_STREAMS, "error"):
        raise StepFailed(f"expected <stream:error><{condition.value}/></stream:error>, got {describe_event(event)}")
    got = [c.name for c in event.elements() if c.ns == NS_STREAM_ERRORS and c.name != "text"]
    if got != [condition.value]:
        raise StepFailed(f"expected stream error {condition.value!r}, got {got or 'no condition'}: {render(event)}")
    await _expect_closed(client, deadline)


async def _expect_closed(client: ScenarioClient, deadline: float) -> None:
    """RFC 6120 §4.4: ``</stream:stream>`` (answered with ours) and the TCP connection ending."""
    event = await client.next_event(deadline)
    while isinstance(event, Element) and client.ignorable(event):
        event = await client.next_event(deadline)
    if isinstance(event, StreamFooter):
        await client.raw.send(b"</stream:stream>")
        event = await client.next_event(deadline)
    if not isinstance(event, ConnectionEnded):
        raise StepFailed(f"expected the server to close the stream and connection, got {describe_event(event)}")


def _header(run: ScenarioRun, given: dict[str, str]) -> str:
    """An initial or restart stream header (RFC 6120 §4.7); "" leaves an attribute out."""
    values = {"to": "{domain}", "version": "1.0", "ns": NS_CLIENT, "stream_ns": NS_STREAMS, **given}
    ns, stream_ns = values.pop("ns"), values.pop("stream_ns")
    names = {"lang": "xml:lang"}
    attrs = "".join(f" {names.get(k, k)}='{run.substitute(v)}'" for k, v in values.items() if v)
    namespaces = (f" xmlns='{ns}'" if ns else "") + (f" xmlns:stream='{stream_ns}'" if stream_ns else "")
    return f"<?xml version='1.0'?><stream:stream{namespaces}{attrs}>"


async def _expect_header(run: ScenarioRun, client: ScenarioClient, step: ExpectHeader) -> None:
    await client.settle(run.deadline(step.timeout))
    header = client.header
    if header is None:
        raise StepFailed("the server sent no stream header in answer to ours")
    for key, want in step.attrs:
        name = f"{{{NS_XML}}}lang" if key == "lang" else key
        got = header.attrs.get(name)
        if got is None or not wildcard_equal(run.substitute(want, escape=False), got):
            raise StepFailed(f"stream header attribute {key}: expected {want!r}, got {got!r} "
                             f"in {describe_event(header)}")


async def _expect_features(run: ScenarioRun, client: ScenarioClient, step: ExpectFeatures) -> None:
    await client.settle(run.deadline(step.timeout))
    if client.features is None:
        instead = client.first_pending()
        raise StepFailed("no <stream:features/> followed the server's latest stream header"
                         + (f"; instead: {describe_event(instead)}" if instead is not None else ""))
    pattern = run.pattern(step.pattern)
    mismatch = match_pattern(pattern, client.features, exact=step.exact)
    if mismatch is not None:
        raise StepFailed("the stream features do not match\n" + explain(pattern, client.features, mismatch))


async def _restart(run: ScenarioRun, client: ScenarioClient, deadline: float) -> None:
    await client.send_header(_header(run, {}))
    await client.settle(deadline)


async def _starttls(run: ScenarioRun, client: ScenarioClient, deadline: float) -> None:
    """RFC 6120 §5.4.2: ``<starttls/>``, ``<proceed/>``, handshake, then a new stream (§5.4.3.3)."""
    if client.header is None and not client.awaiting_header:
        await client.send_header(_header(run, {}))
    await client.settle(deadline)
    await client.send(f"<starttls xmlns='{NS_TLS}'/>")
    event = await client.next_event(deadline)
    if not isinstance(event, Element) or (event.ns, event.name) != (NS_TLS, "proceed"):
        raise StepFailed(f"expected <proceed xmlns='{NS_TLS}'/>, got {describe_event(event)}")
    await client.raw.tls_handshake(run.endpoint.cafile, max(deadline - run.deadline(0), 0.001))
    await _restart(run, client, deadline)


# -- SASL and binding ----------------------------------------------------------------------------
async def _authenticate(run: ScenarioRun, client: ScenarioClient, step: Authenticate) -> None:
    """RFC 6120 §6.4: one exchange; on success the stream restarts (§6.4.6) and features are read."""
    deadline = run.deadline(step.timeout)
    await client.settle(deadline)
    if client.has_pending_input():
        raise StepFailed("unread input before authenticating: add an expect step for it")
    mechanism = step.mechanism
    if mechanism == Authenticate.BEST:
        offered = best_scram(client.features) if client.features is not None else None
        if offered is None:
            raise StepFailed("the latest features offer neither SCRAM-SHA-256 nor SCRAM-SHA-1")
        mechanism = offered
    username, password = run.substitute(step.username, escape=False), run.substitute(step.password, escape=False)
    authzid = None if step.authzid is None else run.substitute(step.authzid, escape=False)
    outcome = await client.raw.authenticate(username, password, mechanism=mechanism, authzid=authzid)
    client.log(f"SASL {mechanism} as {username!r}{f' for {authzid!r}' if authzid else ''}: {render(outcome)}")
    if step.failure is None:
        if outcome.name != "success":
            raise StepFailed(f"expected SASL success, got {render(outcome)}")
        await _restart(run, client, deadline)
    else:
        _check_sasl_failure(outcome, step.failure)


def _check_sasl_failure(event: Element | StreamFooter | ConnectionEnded, condition: SaslCondition) -> None:
    """RFC 6120 §6.5: ``<failure/>`` holding exactly one defined condition."""
    if not isinstance(event, Element) or (event.ns, event.name) != (NS_SASL, "failure"):
        raise StepFailed(f"expected a SASL <failure><{condition.value}/></failure>, got {describe_event(event)}")
    got = [c.name for c in event.elements() if c.ns == NS_SASL and c.name != "text"]
    if got != [condition.value]:
        raise StepFailed(f"expected SASL failure {condition.value!r}, got {got or 'no condition'}: {render(event)}")


async def _bind(run: ScenarioRun, client: ScenarioClient, resource: str, deadline: float) -> None:
    """RFC 6120 §7.5/§7.6: bind a resource, or let the server choose one; must succeed."""
    await client.settle(deadline)
    inner = f"<resource>{run.substitute(resource)}</resource>" if resource else ""
    await client.send(f"<iq type='set' id='bind-{run.token}'><bind xmlns='{NS_BIND}'>{inner}</bind></iq>")
    reply = await client.next_event(deadline)
    bound = reply.find("bind", NS_BIND) if isinstance(reply, Element) else None
    if not isinstance(reply, Element) or reply.get("type") != "result" or bound is None:
        raise StepFailed(f"expected a bind result, got {describe_event(reply)}")
    try:
        client.jid = JID.parse(bound.findtext("jid", NS_BIND) or "")
    except InvalidJID as exc:
        raise StepFailed(f"the bind result carries no valid JID ({exc}): {render(reply)}") from None
    client.resource = client.jid.resource or ""

"""XEP-0198 Stream Management on the c2s server core, in memory: counting, acks, resumption.

The runtime is played by hand: ``stanza_handled()`` is called when the test says a stanza was
routed, and ``ResumeRequested`` is answered with a session the test built.
"""

from __future__ import annotations

import pytest

from xmppcore.jid import JID
from xmppcore.protocol import events as ev
from xmppcore.protocol.c2s import C2SState
from xmppcore.protocol.stream_management import (
    H_MODULUS,
    NS_SM,
    HandledCountTooHigh,
    SmPolicy,
    SmSession,
    parse_h,
)
from xmppcore.stanza.errors import Condition, StreamCondition
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_BIND, NS_CLIENT, NS_STANZA_ERRORS, NS_STREAMS
from xmppcore.xml.parser import ParseEvent

from .pair import DOMAIN, RawClient, elements, make_server, stream_error

SM = f"xmlns='{NS_SM}'"
JULIET = JID.make("juliet", DOMAIN, "balcony")


def sm_client(policy: SmPolicy | None = None) -> RawClient:
    return RawClient(make_server(stream_management=policy or SmPolicy()))


def bound(policy: SmPolicy | None = None, *, enable: str = f"<enable {SM} resume='true'/>") -> RawClient:
    raw = sm_client(policy)
    raw.login()
    raw.bind()
    if enable:
        (enabled,) = elements(raw.send(enable))
        assert enabled.name == "enabled", enabled
    return raw


def sm_elements(out: list[ParseEvent], name: str) -> list[Element]:
    return [e for e in elements(out) if e.ns == NS_SM and e.name == name]


def acks(out: list[ParseEvent]) -> list[int]:
    return [int(a.attrs["h"]) for a in sm_elements(out, "a")]


def failed_condition(element: Element) -> str:
    assert (element.ns, element.name) == (NS_SM, "failed"), element
    return next(c.name for c in element.elements() if c.ns == NS_STANZA_ERRORS)


def message(n: int) -> Element:
    return Element("message", NS_CLIENT, {"to": "romeo@example.org", "id": f"m{n}"},
                   [Element("body", NS_CLIENT, text=f"body {n}")])


def sent_messages(out: list[ParseEvent]) -> list[str]:
    return [e.attrs["id"] for e in elements(out) if e.name == "message"]


# -- the feature and enabling ---------------------------------------------------------------------
def test_offered_only_after_authentication() -> None:
    assert sm_client().negotiate_tls().find("sm", NS_SM) is None  # XEP-0198 §3: not before SASL
    after = sm_client().login()
    assert after.find("sm", NS_SM) is not None and after.find("bind", NS_BIND) is not None


def test_not_offered_without_a_policy() -> None:
    raw = RawClient(make_server())
    assert raw.login().find("sm", NS_SM) is None
    raw.bind()
    assert stream_error(raw.send(f"<enable {SM}/>")) == "unsupported-stanza-type"


def test_enable_before_binding_fails_and_binding_still_works() -> None:
    raw = sm_client()
    raw.login()
    (failed,) = elements(raw.send(f"<enable {SM}/>"))
    assert failed_condition(failed) == "unexpected-request"  # XEP-0198 §3: the server SHALL enforce it
    raw.bind()
    assert raw.server.state is C2SState.BOUND


def test_enable_with_resumption_grants_an_id_and_the_capped_max() -> None:
    raw = bound(SmPolicy(resume_timeout=300, max_resume_timeout=600), enable="")
    (enabled,) = elements(raw.send(f"<enable {SM} resume='true' max='100000'/>"))
    assert enabled.attrs["resume"] == "true" and enabled.attrs["max"] == "600" and enabled.attrs["id"]
    (event,) = raw.answers.of_type(ev.StreamManagementEnabled)
    assert event == ev.StreamManagementEnabled(sm_id=enabled.attrs["id"], resume_timeout=600)
    assert raw.server.sm.session is not None and raw.server.sm.session.id == enabled.attrs["id"]


@pytest.mark.parametrize(("attrs", "granted"), [("resume='1'", "300"), ("resume='true' max='60'", "60"),
                                                ("resume='true' max='soon'", "300"), ("resume='true' max='0'", "300")])
def test_the_granted_resumption_time(attrs: str, granted: str) -> None:
    raw = bound(enable="")
    (enabled,) = elements(raw.send(f"<enable {SM} {attrs}/>"))
    assert enabled.attrs["max"] == granted


def test_enable_without_resume_has_no_id() -> None:
    raw = bound(enable="")
    (enabled,) = elements(raw.send(f"<enable {SM}/>"))
    assert enabled.attrs == {}
    assert raw.answers.of_type(ev.StreamManagementEnabled) == [ev.StreamManagementEnabled(sm_id=None, resume_timeout=0)]


def test_no_resumption_when_the_server_allows_none() -> None:
    raw = bound(SmPolicy(resume_timeout=0), enable="")
    (enabled,) = elements(raw.send(f"<enable {SM} resume='true'/>"))
    assert "resume" not in enabled.attrs and "id" not in enabled.attrs


def test_enabling_twice_ends_the_stream() -> None:
    raw = bound()
    assert stream_error(raw.send(f"<enable {SM}/>")) == "policy-violation"  # XEP-0198 §3


def test_acks_before_enabling_are_not_understood() -> None:
    raw = bound(enable="")
    assert stream_error(raw.send(f"<r {SM}/>")) == "unsupported-stanza-type"


# -- inbound counting and durable acks ------------------------------------------------------------------
def test_r_is_answered_only_once_every_stanza_before_it_was_handled() -> None:
    raw = bound()
    out = raw.send("<message to='romeo@example.org'/><presence/><iq type='get' id='q'><ping xmlns='urn:xmpp:ping'/></iq>"
                   f"<r {SM}/>")
    assert acks(out) == []  # nothing routed yet: acknowledging now would promise too much
    assert len(raw.answers.of_type(ev.StanzaReceived)) == 3
    raw.server.stanza_handled()
    raw.server.stanza_handled()
    assert acks(raw.read()) == []
    raw.server.stanza_handled()
    assert acks(raw.read()) == [3]
    assert acks(raw.send(f"<r {SM}/>")) == [3]  # nothing pending: answered at once


def test_stanzas_after_a_request_do_not_delay_its_answer() -> None:
    raw = bound()
    raw.send(f"<message to='romeo@example.org'/><r {SM}/><message to='romeo@example.org'/><r {SM}/>")
    raw.server.stanza_handled()
    assert acks(raw.read()) == [1]
    raw.server.stanza_handled()
    assert acks(raw.read()) == [2]


def test_back_to_back_requests_get_one_answer() -> None:
    raw = bound()
    raw.send(f"<message to='romeo@example.org'/><r {SM}/><r {SM}/>")
    raw.server.stanza_handled()
    assert acks(raw.read()) == [1]


def test_stanzas_the_core_answers_itself_count_in_order() -> None:
    raw = bound()
    out = raw.send("<message to='romeo@example.org'/>"
                   "<iq type='set' id='s'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"
                   f"<r {SM}/>")
    assert [e.name for e in elements(out)] == ["iq"]  # the session result, but no ack yet
    raw.server.stanza_handled()
    assert acks(raw.read()) == [2]


def test_stanzas_received_before_enabling_do_not_count() -> None:
    raw = bound(enable="")
    raw.send("<message to='romeo@example.org'/>")
    raw.send(f"<enable {SM}/><message to='romeo@example.org'/><r {SM}/>")
    raw.server.stanza_handled()  # the one before <enable/>
    assert acks(raw.read()) == []
    raw.server.stanza_handled()
    assert acks(raw.read()) == [1]


def test_a_handled_report_after_the_stream_ended_still_counts() -> None:
    raw = bound()
    raw.send("<message to='romeo@example.org'/>")
    raw.server.connection_lost()
    raw.server.stanza_handled()
    session = raw.server.sm.session
    assert session is not None and session.inbound_h == 1
    assert raw.server.data_to_send() == b""


# -- outbound: the unacknowledged queue ------------------------------------------------------------------
def test_the_server_requests_acks_and_forgets_what_is_acknowledged() -> None:
    raw = bound(SmPolicy(request_every=3))
    for n in range(1, 4):
        raw.server.send_stanza(message(n))
    out = raw.read()
    assert sent_messages(out) == ["m1", "m2", "m3"] and len(sm_elements(out, "r")) == 1
    session = raw.server.sm.session
    assert session is not None and session.unacked == 3
    raw.send(f"<a {SM} h='2'/>")
    assert session.unacked == 1
    raw.send(f"<a {SM} h='3'/>")
    assert session.unacked == 0


def test_acknowledging_more_than_was_sent_ends_the_stream() -> None:
    raw = bound()
    raw.server.send_stanza(message(1))
    raw.read()
    out = raw.send(f"<a {SM} h='2'/>")
    assert stream_error(out) == "undefined-condition"  # XEP-0198 §6
    error = elements(out)[-1]
    assert (error.ns, error.name) == (NS_STREAMS, "error")
    too_high = error.find("handled-count-too-high", NS_SM)
    assert too_high is not None and too_high.attrs == {"h": "2", "send-count": "1"}


@pytest.mark.parametrize("h", ["", "-1", "4294967296", "x"])
def test_an_ack_without_a_valid_h_ends_the_stream(h: str) -> None:
    raw = bound()
    assert stream_error(raw.send(f"<a {SM} h='{h}'/>")) == "invalid-xml"


def test_too_many_unacknowledged_stanzas_end_the_stream() -> None:
    raw = bound(SmPolicy(max_unacked=10, request_every=100))
    for n in range(1, 11):
        raw.server.send_stanza(message(n))
    assert not raw.server.closed
    raw.server.send_stanza(message(11))
    assert stream_error(raw.read()) == "policy-violation"
    session = raw.server.sm.session
    assert session is not None and session.unacked == 11  # kept for the runtime to place elsewhere


def test_a_request_goes_out_on_the_timer_while_stanzas_are_unacknowledged() -> None:
    raw = bound(SmPolicy(request_every=100, request_interval=30.0))
    raw.now = 5.0
    raw.send(f"<a {SM} h='0'/>")  # input at t=5 moves the core's clock
    raw.server.send_stanza(message(1))
    raw.read()
    assert raw.server.get_timer() == 35.0
    raw.server.handle_timer(35.0)
    assert len(sm_elements(raw.read(), "r")) == 1
    raw.send(f"<a {SM} h='1'/>")
    assert raw.server.get_timer() is None  # keepalives are off in these tests; nothing to ask about


def test_stanzas_for_an_ended_stream_are_kept_not_written() -> None:
    raw = bound()
    raw.server.connection_lost()
    raw.server.send_stanza(message(1))
    assert raw.server.data_to_send() == b""
    session = raw.server.sm.session
    assert session is not None and session.unacked == 1
    assert raw.server.resumable


def test_only_a_lost_connection_is_resumable() -> None:
    closed = bound()
    closed.send("</stream:stream>")
    assert closed.server.closed and not closed.server.resumable  # XEP-0198 §7: cleanly closed
    failed = bound()
    failed.send("<unknown/>")
    assert failed.server.closed and not failed.server.resumable
    plain = bound(enable=f"<enable {SM}/>")
    plain.server.connection_lost()
    assert not plain.server.resumable


# -- resumption ---------------------------------------------------------------------------------------
def detached_session(*, handled: int = 0, acked: int = 0, stanzas: int = 0) -> SmSession:
    session = SmSession(sm_id="prev-1", resume_timeout=300, handled=handled, acked=acked)
    for n in range(1, stanzas + 1):
        session.track(message(n), transmitted=n <= stanzas - 1)  # the last one never went out
    return session


def resuming(h: int, policy: SmPolicy | None = None) -> RawClient:
    raw = sm_client(policy)
    raw.login()
    assert elements(raw.send(f"<resume {SM} previd='prev-1' h='{h}'/>")) == []
    assert raw.server.state is C2SState.RESUME_PENDING
    assert raw.answers.of_type(ev.ResumeRequested) == [ev.ResumeRequested(previd="prev-1", h=h)]
    return raw


def test_a_resumed_session_retransmits_what_the_client_did_not_handle() -> None:
    session = detached_session(handled=7, acked=10, stanzas=4)
    raw = resuming(12)  # the client handled m1 and m2
    raw.server.resume_succeeded(JULIET, session)
    out = raw.read()
    (resumed,) = sm_elements(out, "resumed")
    assert resumed.attrs == {"previd": "prev-1", "h": "7"}
    assert sent_messages(out) == ["m3", "m4"]
    assert raw.server.state is C2SState.BOUND and raw.server.jid == JULIET
    raw.send("<message to='romeo@example.org'/>")
    raw.server.stanza_handled()
    assert acks(raw.send(f"<r {SM}/>")) == [8]  # counting carries on (§5)
    raw.send(f"<a {SM} h='14'/>")
    assert session.unacked == 0


def test_counters_wrap_around_at_2_to_the_32() -> None:
    session = detached_session(handled=H_MODULUS - 1, acked=H_MODULUS - 1, stanzas=3)
    raw = resuming(H_MODULUS - 1)
    raw.server.resume_succeeded(JULIET, session)
    assert sm_elements(raw.read(), "resumed")[0].attrs["h"] == str(H_MODULUS - 1)
    raw.send("<message to='romeo@example.org'/><message to='romeo@example.org'/>")
    raw.server.stanza_handled()
    raw.server.stanza_handled()
    assert acks(raw.send(f"<r {SM}/>")) == [1]  # 2^32-1, then 0, then 1
    raw.send(f"<a {SM} h='0'/>")   # the stanzas numbered 2^32 (0) and before
    assert session.unacked == 2
    raw.send(f"<a {SM} h='2'/>")
    assert session.unacked == 0 and not raw.server.closed


def test_a_failed_resumption_names_the_condition_and_h_and_binding_follows() -> None:
    raw = resuming(0)
    raw.server.resume_failed(Condition.ITEM_NOT_FOUND, h=42)
    (failed,) = elements(raw.read())
    assert failed_condition(failed) == "item-not-found" and failed.attrs["h"] == "42"  # XEP-0198 §5
    assert raw.server.state is C2SState.WAIT_BIND
    raw.bind()


def test_a_failed_resumption_without_h() -> None:
    raw = resuming(0)
    raw.server.resume_failed()
    (failed,) = elements(raw.read())
    assert failed_condition(failed) == "item-not-found" and "h" not in failed.attrs


def test_resuming_with_an_h_beyond_what_was_sent_ends_the_stream() -> None:
    session = detached_session(stanzas=3)  # two went out, one is held
    raw = resuming(3)
    raw.server.resume_succeeded(JULIET, session)
    out = raw.read()
    assert stream_error(out) == "undefined-condition"
    assert session.unacked == 3  # nothing was dropped on the strength of a bad count


def test_stanzas_pipelined_behind_resume_wait_for_the_answer() -> None:
    raw = sm_client()
    raw.login()
    raw.send(f"<resume {SM} previd='prev-1' h='0'/><message to='romeo@example.org'/><r {SM}/>")
    assert raw.answers.of_type(ev.StanzaReceived) == []
    raw.server.resume_succeeded(JULIET, detached_session())
    assert len(raw.answers.of_type(ev.StanzaReceived)) == 0  # events are read on the next send
    assert raw.server.pop_events() == [ev.StanzaReceived(stanza=Element("message", NS_CLIENT, {"to": "romeo@example.org"}))]
    raw.server.stanza_handled()
    out = raw.read()
    assert [e.name for e in sm_elements(out, "resumed")] == ["resumed"] and acks(out) == [1]


@pytest.mark.parametrize("attrs", ["h='1'", "previd='p'", "previd='p' h='x'"])
def test_a_resumption_request_missing_its_attributes_fails(attrs: str) -> None:
    raw = sm_client()
    raw.login()
    (failed,) = elements(raw.send(f"<resume {SM} {attrs}/>"))
    assert failed_condition(failed) == "bad-request" and raw.server.state is C2SState.WAIT_BIND


def test_resumption_refused_when_the_server_allows_none() -> None:
    raw = sm_client(SmPolicy(resume_timeout=0))
    raw.login()
    (failed,) = elements(raw.send(f"<resume {SM} previd='p' h='0'/>"))
    assert failed_condition(failed) == "feature-not-implemented"


def test_a_bound_stream_cannot_resume() -> None:
    raw = bound()
    (failed,) = elements(raw.send(f"<resume {SM} previd='p' h='0'/>"))
    assert failed_condition(failed) == "unexpected-request" and raw.server.state is C2SState.BOUND


# -- the state alone ----------------------------------------------------------------------------------
def test_parse_h() -> None:
    assert [parse_h(v) for v in ("0", "4294967295", "4294967296", "-1", "", None, "１")] == [
        0, H_MODULUS - 1, None, None, None, None, None]


def test_taking_the_unacknowledged_stanzas_empties_the_queue() -> None:
    session = detached_session(stanzas=3)
    assert [m.attrs["id"] for m in session.take_unacknowledged()] == ["m1", "m2", "m3"]
    assert session.unacked == 0 and session.take_unacknowledged() == []


def test_the_too_high_error_carries_both_counts() -> None:
    session = SmSession(acked=H_MODULUS - 1)
    session.track(message(1), transmitted=True)
    with pytest.raises(HandledCountTooHigh) as info:
        session.acknowledge(1)
    assert (info.value.h, info.value.send_count, info.value.condition) == (1, 0, StreamCondition.UNDEFINED_CONDITION)

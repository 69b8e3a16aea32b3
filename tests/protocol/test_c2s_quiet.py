"""A bound client stream told it is ``quiet()`` (the pump does so after a pause in the input)
gives back its parser between stanzas and carries on exactly as before (RFC 6120 §4, §8)."""

from __future__ import annotations

import pytest

from xmppcore.protocol import events as ev
from xmppcore.protocol.c2s import C2SState
from xmppcore.xml.element import Element
from xmppcore.xml.parser import StreamFooter

from .pair import RawClient, elements, make_server, stream_error


def _bound() -> RawClient:
    raw = RawClient()
    raw.login()
    raw.bind()
    raw.answers.events.clear()
    return raw


def _stanzas(raw: RawClient) -> list[Element]:
    """The stanzas the core handed to the runtime since the last call."""
    stanzas = [e.stanza for e in raw.answers.of_type(ev.StanzaReceived)]
    raw.answers.events.clear()
    return stanzas


def test_stanzas_after_a_quiet_spell_arrive_unchanged() -> None:
    raw = _bound()
    raw.server.quiet()
    raw.send("<message to='romeo@example.com' id='m1'><body>a &amp; b</body>"
             "<x xmlns='urn:example'><y/></x></message>")
    (message,) = _stanzas(raw)
    assert message.ns == "jabber:client" and message.get("id") == "m1"
    assert message.findtext("body") == "a & b"
    assert message.find("x", "urn:example") is not None


@pytest.mark.parametrize("cut", [1, 9, 30])
def test_a_quiet_spell_inside_a_stanza_keeps_what_arrived(cut: int) -> None:
    raw = _bound()
    stanza = "<presence><show>away</show></presence>"
    raw.send(stanza[:cut])
    raw.server.quiet()  # nothing can be given back mid-stanza
    raw.send(stanza[cut:])
    (presence,) = _stanzas(raw)
    assert presence.findtext("show") == "away"


def test_quiet_again_and_again() -> None:
    raw = _bound()
    for number in range(5):
        raw.server.quiet()
        raw.send(f"<iq type='get' id='q{number}' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq> ")
        assert [s.get("id") for s in _stanzas(raw)] == [f"q{number}"]


def test_the_closing_tag_after_a_quiet_spell_closes_the_stream() -> None:
    raw = _bound()
    raw.server.quiet()
    out = raw.send("</stream:stream>")
    assert isinstance(out[-1], StreamFooter)
    assert raw.server.state is C2SState.CLOSED


def test_a_peer_stream_error_after_a_quiet_spell_is_understood() -> None:
    raw = _bound()
    raw.server.quiet()
    out = raw.send("<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>")
    assert isinstance(out[-1], StreamFooter)
    (closed,) = raw.answers.of_type(ev.StreamClosed)
    assert closed.by_peer and closed.condition is not None and closed.condition.value == "conflict"


def test_bad_input_after_a_quiet_spell_is_still_refused() -> None:
    raw = _bound()
    raw.server.quiet()
    assert stream_error(raw.send("<!-- a comment -->")) == "restricted-xml"


def test_quiet_before_binding_changes_nothing() -> None:
    raw = RawClient(make_server())
    raw.open()
    raw.server.quiet()  # not even a stanza yet
    out = raw.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    assert [e.name for e in elements(out)] == ["proceed"]

"""XEP-0352 Client State Indication on the c2s server core, in memory: the feature, the nonzas.

The feature itself comes from the runtime's post-authentication features (the ``csi`` module adds
it); the core accepts ``<active/>`` and ``<inactive/>`` only once it has offered it and the client
is bound, reports changes as events in order with stanzas, and never counts them for XEP-0198.
"""

from __future__ import annotations

import pytest

from xmppcore.protocol import events as ev
from xmppcore.protocol.c2s import NS_CSI, C2SState
from xmppcore.protocol.stream_management import NS_SM, SmPolicy
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_BIND

from .pair import RawClient, elements, make_server, stream_error

CSI = f"xmlns='{NS_CSI}'"
SM = f"xmlns='{NS_SM}'"
INACTIVE = f"<inactive {CSI}/>"
ACTIVE = f"<active {CSI}/>"


def csi_client(*, offered: bool = True, sm: bool = False) -> RawClient:
    features = (lambda: [Element("csi", NS_CSI)]) if offered else None
    return RawClient(make_server(extra_features=features, stream_management=SmPolicy() if sm else None))


def bound(*, offered: bool = True, sm: bool = False) -> RawClient:
    raw = csi_client(offered=offered, sm=sm)
    raw.login()
    raw.bind()
    if sm:
        assert [e.name for e in elements(raw.send(f"<enable {SM}/>"))] == ["enabled"]
    return raw


def states(raw: RawClient) -> list[bool]:
    return [e.active for e in raw.answers.of_type(ev.ClientStateChanged)]


def acks(raw: RawClient, text: str) -> list[str]:
    return [e.attrs["h"] for e in elements(raw.send(text)) if e.ns == NS_SM and e.name == "a"]


def test_offered_with_the_features_after_authentication_only() -> None:
    assert csi_client().negotiate_tls().find("csi", NS_CSI) is None  # §4.1: "after ... authenticated"
    features = csi_client().login()
    assert features.find("csi", NS_CSI) is not None and features.find("bind", NS_BIND) is not None


def test_a_bound_client_switches_state_without_an_answer() -> None:
    raw = bound()
    assert raw.server.client_active  # §4.2: "A stream always begins in 'active' state"
    assert raw.send(INACTIVE) == []  # §4.2: "There is no reply from the server"
    assert not raw.server.client_active
    assert raw.send(ACTIVE) == []
    assert raw.server.client_active and states(raw) == [False, True]


def test_only_changes_are_reported() -> None:
    raw = bound()
    raw.send(ACTIVE + INACTIVE + INACTIVE + ACTIVE + ACTIVE)
    assert states(raw) == [False, True]


def test_state_changes_keep_their_place_among_the_stanzas() -> None:
    # §5.1: the runtime must act on each nonza after the stanzas before it and before those after.
    raw = bound()
    raw.send(f"<message id='m1'/>{INACTIVE}<message id='m2'/>{ACTIVE}<iq type='get' id='i1'/>")
    order = [e.stanza.get("id") if isinstance(e, ev.StanzaReceived) else e.active
             for e in raw.answers.events if isinstance(e, (ev.StanzaReceived, ev.ClientStateChanged))]
    assert order == ["m1", False, "m2", True, "i1"]


@pytest.mark.parametrize("nonza", [INACTIVE, ACTIVE])
def test_before_binding_it_is_refused(nonza: str) -> None:
    raw = csi_client()
    raw.login()
    assert stream_error(raw.send(nonza)) == "unsupported-stanza-type"
    assert raw.server.state is C2SState.CLOSED and states(raw) == []


def test_not_offered_means_not_understood() -> None:
    raw = bound(offered=False)
    assert stream_error(raw.send(INACTIVE)) == "unsupported-stanza-type"
    assert states(raw) == []


def test_an_unknown_element_of_the_namespace_is_refused() -> None:
    raw = bound()
    assert stream_error(raw.send(f"<dozing {CSI}/>")) == "unsupported-stanza-type"


def test_stream_management_does_not_count_the_nonzas() -> None:
    raw = bound(sm=True)
    assert acks(raw, f"{INACTIVE}<r {SM}/>") == ["0"]  # nothing received: XEP-0198 counts stanzas only
    raw.send("<message id='m1'/>")
    raw.server.stanza_handled()  # the runtime routed it
    assert acks(raw, f"{ACTIVE}{INACTIVE}<r {SM}/>") == ["1"]
    assert states(raw) == [False, True, False]


def test_a_nonza_does_not_wait_for_the_stanzas_being_routed() -> None:
    # An <r/> behind a state change is answered as soon as the stanzas before it are routed;
    # the nonza itself is never waited for (there is no stanza_handled() for it).
    raw = bound(sm=True)
    assert acks(raw, f"<message id='m1'/>{INACTIVE}<r {SM}/>") == []
    raw.server.stanza_handled()
    assert [e.attrs["h"] for e in elements(raw.read()) if e.name == "a"] == ["1"]

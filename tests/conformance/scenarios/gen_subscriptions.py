"""RFC 6121 Appendix A: writes subscriptions.toml, one conformance scenario per row of A.2.

    python3 tests/conformance/scenarios/gen_subscriptions.py > tests/conformance/scenarios/subscriptions.toml

alice is the user, bob the contact, both on the server under test.  Every row of Appendix A.2
(the user's server handling an outbound subscribe / unsubscribe / subscribed / unsubscribed)
becomes one scenario: alice's item for bob is brought to the row's starting state over the wire,
alice sends the row's stanza, and the scenario checks alice's roster push, whether bob receives
the stanza, bob's roster push, and both rosters afterwards.  Between two local accounts bob's item
is always in the mirror state of alice's ("To" for alice is "From" for bob), so when the stanza is
routed the same scenario also checks the matching row of Appendix A.3 on bob's side.

The generator's tables are typed in from the RFC, not taken from xmppcore: the conformance
suite must not assume what it checks.  A state's item is pushed or listed with the
'subscription' and 'ask' attributes of §2.1.2; items in "None + Pending In" are not checked
(A.1: the contact's server SHOULD NOT push or list them), and neither is a push that leaves both
attributes as they were.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

# -- Appendix A.1: the states, and what the roster shows of each (§2.1.2.1, §2.1.2.5) -------------
NONE, NONE_PO, NONE_PI, NONE_POI = "None", "None + Pending Out", "None + Pending In", "None + Pending Out/In"
TO, TO_PI, FROM, FROM_PO, BOTH = "To", "To + Pending In", "From", "From + Pending Out", "Both"
STATES = (NONE, NONE_PO, NONE_PI, NONE_POI, TO, TO_PI, FROM, FROM_PO, BOTH)

_SHOWN = {  # (subscription, ask) of the item; None: not shown (A.1 note on "None + Pending In")
    NONE: ("none", None), NONE_PO: ("none", "subscribe"), NONE_PI: None,
    NONE_POI: ("none", "subscribe"), TO: ("to", None), TO_PI: ("to", None),
    FROM: ("from", None), FROM_PO: ("from", "subscribe"), BOTH: ("both", None),
}
# The contact's state when the user's is the key (both accounts on one server).
MIRROR = {NONE: NONE, NONE_PO: NONE_PI, NONE_PI: NONE_PO, NONE_POI: NONE_POI, TO: FROM,
          TO_PI: FROM_PO, FROM: TO, FROM_PO: TO_PI, BOTH: BOTH}
SUBSCRIBED_TO = {TO, TO_PI, BOTH}          # receives the other's presence
SUBSCRIBED_FROM = {FROM, FROM_PO, BOTH}    # the other receives its presence


def _table(*rows: tuple[bool, str | None]) -> dict[str, tuple[bool, str]]:
    """(forward, new state or None for "no state change") in the RFC's row order."""
    return {old: (forward, new or old) for old, (forward, new) in zip(STATES, rows)}


Y, N = True, False
# A.2: ROUTE? (A.2.1 and A.2.2 have no such column: the stanza is always routed) and NEW STATE.
OUTBOUND = {
    "subscribe": _table((Y, NONE_PO), (Y, None), (Y, NONE_POI), (Y, None), (Y, None), (Y, None),
                        (Y, FROM_PO), (Y, None), (Y, None)),
    "unsubscribe": _table((Y, None), (Y, NONE), (Y, None), (Y, NONE_PI), (Y, NONE), (Y, NONE_PI),
                          (Y, None), (Y, FROM), (Y, FROM)),
    "subscribed": _table((N, None), (N, None), (Y, FROM), (Y, FROM_PO), (N, None), (Y, BOTH),
                         (N, None), (N, None), (N, None)),
    "unsubscribed": _table((N, None), (N, None), (Y, NONE), (Y, NONE_PO), (N, None), (Y, TO),
                           (Y, NONE), (Y, NONE_PO), (Y, TO)),
}
# A.3: DELIVER? and NEW STATE.
INBOUND = {
    "subscribe": _table((Y, NONE_PI), (Y, NONE_POI), (N, None), (N, None), (Y, TO_PI), (N, None),
                        (N, None), (N, None), (N, None)),
    "unsubscribe": _table((N, None), (N, None), (Y, NONE), (Y, NONE_PO), (N, None), (Y, TO),
                          (Y, NONE), (Y, NONE_PO), (Y, TO)),
    "subscribed": _table((N, None), (Y, TO), (N, None), (Y, TO_PI), (N, None), (N, None),
                         (N, None), (Y, BOTH), (N, None)),
    "unsubscribed": _table((N, None), (Y, NONE), (N, None), (Y, NONE_PI), (Y, NONE), (Y, NONE_PI),
                           (N, None), (Y, FROM), (Y, FROM)),
}
SECTION = {"subscribe": "1", "unsubscribe": "2", "subscribed": "3", "unsubscribed": "4"}

# How alice's item reaches each state: (sender, type) of each subscription stanza, in order.
SETUP = {
    NONE: [],
    NONE_PO: [("alice", "subscribe")],
    NONE_PI: [("bob", "subscribe")],
    NONE_POI: [("alice", "subscribe"), ("bob", "subscribe")],
    TO: [("alice", "subscribe"), ("bob", "subscribed")],
    TO_PI: [("alice", "subscribe"), ("bob", "subscribed"), ("bob", "subscribe")],
    FROM: [("bob", "subscribe"), ("alice", "subscribed")],
    FROM_PO: [("bob", "subscribe"), ("alice", "subscribed"), ("alice", "subscribe")],
    BOTH: [("alice", "subscribe"), ("bob", "subscribed"), ("bob", "subscribe"), ("alice", "subscribed")],
}

# Rows where a server is known to differ, with the reason shown in the report.
DIFFERS: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("unsubscribe", NONE_PO): [("ejabberd", """
ejabberd 23.01 does not deliver an unsubscribe that cancels a pending request: RFC 6121
Appendix A.3.2, row "None + Pending In": DELIVER? "yes", NEW STATE "None".""")],
    ("subscribed", TO): [("ejabberd", """
ejabberd 23.01 routes an unsolicited subscribed from a user whose item is "To" and makes the
subscription "both" on both sides, so the contact gets the user's presence without having
asked: RFC 6121 Appendix A.2.3, row "To": ROUTE? "no", NEW STATE "no state change".""")],
}

OTHER = {"alice": "bob", "bob": "alice"}
ROSTER = "jabber:iq:roster"


def _slug(state: str) -> str:
    return state.lower().replace(" + ", "-").replace(" ", "-").replace("/", "-")


def _item(contact: str, state: str) -> str | None:
    shown = _SHOWN[state]
    if shown is None:
        return None
    subscription, ask = shown
    ask_attr = f" ask='{ask}'" if ask else ""
    return f"<item jid='{{{contact}}}' subscription='{subscription}'{ask_attr}/>"


def _push(contact: str, state: str) -> str | None:
    item = _item(contact, state)
    return None if item is None else f"<iq type='set'><query xmlns='{ROSTER}'>{item}</query></iq>"


def _q(text: str) -> str:
    """A TOML basic string (the XML here uses single quotes only)."""
    assert '"' not in text and "\\" not in text and "\n" not in text
    return f'"{text}"'


class _Steps:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def send(self, client: str, xml: str) -> None:
        self.lines.append(f"  {{ client = {_q(client)}, send = {_q(xml)} }},")

    def expect(self, client: str, *patterns: str) -> None:
        value = _q(patterns[0]) if len(patterns) == 1 else "[" + ", ".join(_q(p) for p in patterns) + "]"
        self.lines.append(f"  {{ client = {_q(client)}, expect = {value}, skip_others = true }},")

    def nothing(self, client: str) -> None:
        self.lines.append(f"  {{ client = {_q(client)}, expect_nothing = true }},")

    def comment(self, text: str) -> None:
        self.lines.append(f"  # {text}")

    def remove(self, client: str, tag: str) -> None:
        """Remove the other's item; a result, or item-not-found when there is none (§2.5.3)."""
        self.send(client, f"<iq type='set' id='{tag}-{{run}}'><query xmlns='{ROSTER}'>"
                          f"<item jid='{{{OTHER[client]}}}' subscription='remove'/></query></iq>")
        self.expect(client, f"<iq id='{tag}-{{run}}'/>")

    def roster(self, client: str, tag: str, item: str | None = None) -> None:
        self.send(client, f"<iq type='get' id='{tag}-{{run}}'><query xmlns='{ROSTER}'/></iq>")
        query = f"<query xmlns='{ROSTER}'>{item}</query>" if item else f"<query xmlns='{ROSTER}'/>"
        self.expect(client, f"<iq type='result' id='{tag}-{{run}}'>{query}</iq>")

    def barrier(self) -> None:
        """Both clients read everything the setup made the server send them (a ping round trip)."""
        for n, client in enumerate(("alice", "bob", "alice")):
            self.send(client, f"<iq type='get' to='{{domain}}' id='sync{n}-{{run}}'><ping xmlns='urn:xmpp:ping'/></iq>")
            self.expect(client, f"<iq type='result' id='sync{n}-{{run}}'/>")


def _subscription_step(steps: _Steps, sender: str, kind: str) -> None:
    """One setup stanza, and its delivery (setup uses only rows where it is delivered)."""
    receiver = OTHER[sender]
    steps.send(sender, f"<presence to='{{{receiver}}}' type='{kind}'/>")
    steps.expect(receiver, f"<presence from='{{{sender}}}' type='{kind}'/>")


@dataclass(frozen=True)
class Row:
    kind: str    # the stanza alice sends
    state: str   # alice's state before it

    @property
    def name(self) -> str:
        return f"{self.kind}-at-{_slug(self.state)}"


def scenario(row: Row) -> str:
    kind, a_old = row.kind, row.state
    b_old = MIRROR[a_old]
    routed, a_new = OUTBOUND[kind][a_old]
    delivered, b_new = INBOUND[kind][b_old] if routed else (False, b_old)
    assert MIRROR[a_new] == b_new, (row, a_new, b_new)
    # A.3.1 note: a subscribe from a contact who is already subscribed is answered by the server
    # with 'subscribed', which reaches the user in a state where A.3.3 delivers nothing.
    auto_reply = kind == "subscribe" and routed and b_old in SUBSCRIBED_FROM
    if auto_reply:
        assert INBOUND["subscribed"][a_old] == (False, a_old)

    sec = SECTION[kind]
    spec = f"RFC 6121 Appendix A.2.{sec}" + (f", A.3.{sec}" if routed else "")
    fate = ("routed" if routed else "not routed (ROUTE? no)") if kind in ("subscribed", "unsubscribed") else "routed"
    a_fate = "does not change" if a_new == a_old else f'becomes "{a_new}"'
    text = [f'alice\'s item for bob is "{a_old}" (bob\'s for alice "{b_old}"). alice sends {kind}:',
            f"A.2.{sec} says it is {fate} and alice's item {a_fate}."]
    if routed:
        text.append(f"A.3.{sec} on bob's side: " + ("delivered" if delivered else "not delivered")
                    + (", no state change" if b_new == b_old else f', bob\'s item becomes "{b_new}"') + ".")
    if auto_reply:
        text.append("alice is already subscribed to bob, so bob's server answers 'subscribed' itself"
                    " (A.3.1 note); A.3.3 does not deliver that to alice.")
    steps = _Steps()
    steps.comment("start from \"None\" on both sides, whatever an earlier failed run left")
    steps.remove("alice", "pre-a")
    steps.remove("bob", "pre-b")
    steps.roster("alice", "ga")
    steps.roster("bob", "gb")
    if SETUP[a_old]:
        steps.comment(f"reach \"{a_old}\" for alice, \"{b_old}\" for bob")
    for sender, setup_kind in SETUP[a_old]:
        _subscription_step(steps, sender, setup_kind)
    steps.barrier()
    steps.comment(f"the row: alice sends {kind}")
    steps.send("alice", f"<presence to='{{bob}}' type='{kind}' id='row-{{run}}'/>")
    _expectations(steps, row, a_new, b_old, b_new, routed, delivered, auto_reply)
    steps.comment("the resulting state, as each roster shows it")
    if _checkable(a_old, a_new):
        steps.roster("alice", "fa", _item("bob", a_new))
    if _checkable(b_old, b_new):
        steps.roster("bob", "fb", _item("alice", b_new))
    steps.comment("clean up: both remove their item (§2.5.2 cancels every subscription)")
    steps.remove("alice", "arm")
    steps.remove("bob", "brm")

    description = "\n".join(text).replace('"""', "")
    out = ["[[scenario]]", f"name = {_q(row.name)}", f"spec = {_q(spec)}", f'description = """\n{description}"""']
    for server, reason in DIFFERS.get((kind, a_old), []):
        out.append(f'differs_on = [{{ server = "{server}", reason = """{reason}""" }}]')
    out += ["clients.alice = { ignore_presence = false }", "clients.bob = { ignore_presence = false }",
            "steps = [", *steps.lines, "]"]
    return "\n".join(out) + "\n"


def _checkable(old: str, new: str) -> bool:
    """Whether the roster must list the item in ``new`` with known attributes."""
    if _SHOWN[new] is None:
        return False
    # An item that was never listed may be gone or listed with 'none' once it is back to "None".
    return not (new == NONE and old in (NONE, NONE_PI))


def _pushed(old: str, new: str) -> bool:
    """Whether a roster push with the new attributes must follow (§2.1.6: the item changed)."""
    if old == new or _SHOWN[new] is None or _SHOWN[new] == _SHOWN[old]:
        return False  # no change a client could see ("To + Pending In" -> "To" is the server's business)
    return _checkable(old, new)


def _expectations(steps: _Steps, row: Row, a_new: str, b_old: str, b_new: str,
                  routed: bool, delivered: bool, auto_reply: bool) -> None:
    a_old, kind = row.state, row.kind
    alice: list[str] = []
    bob: list[str] = []
    if _pushed(a_old, a_new):
        alice.append(_push("bob", a_new) or "")
    if _pushed(b_old, b_new):
        bob.append(_push("alice", b_new) or "")
    if delivered:
        bob.append(f"<presence from='{{alice}}' type='{kind}'/>")
    # §3.1.5: a new subscriber gets the approver's presence; §3.2.2/§3.3.3: a lost one, unavailable.
    if a_new in SUBSCRIBED_FROM and a_old not in SUBSCRIBED_FROM:
        bob.append("<presence from='{alice_full}'/>")
    if a_old in SUBSCRIBED_FROM and a_new not in SUBSCRIBED_FROM:
        bob.append("<presence from='{alice_full}' type='unavailable'/>")
    if b_old in SUBSCRIBED_FROM and b_new not in SUBSCRIBED_FROM:
        alice.append("<presence from='{bob_full}' type='unavailable'/>")
    if alice:
        steps.expect("alice", *alice)
    if bob:
        steps.expect("bob", *bob)
    if not delivered:
        steps.nothing("bob")
    # Only the auto-reply is checked on alice's side: where her state does not change a server may
    # still push the unchanged item (ejabberd does), and the RFC does not forbid it.
    if auto_reply:
        steps.nothing("alice")


def main() -> None:
    header = __doc__.split("\n\n", 2)[2].rstrip()
    out = ["# GENERATED by gen_subscriptions.py: edit that file, then regenerate this one.", "#"]
    out += [f"# {line}".rstrip() for line in header.splitlines()]
    out += ["# Both clients see every presence (ignore_presence = false), so expect_nothing also proves",
            "# that no subscription stanza arrived; a ping round trip on each side before the row makes",
            "# sure the setup's presence has all been read.", ""]
    rows = [Row(kind, state) for kind in OUTBOUND for state in STATES]
    sys.stdout.write("\n".join(out) + "\n" + "\n".join(scenario(row) for row in rows))


if __name__ == "__main__":
    main()

"""RFC 6121 Appendix A: the presence subscription state machine, as data.

Each roster item carries one of the nine states of Appendix A.1, seen from the user's side:
``To`` means the user receives the contact's presence, ``From`` that the contact receives the
user's, "Pending Out" that the user asked and the contact has not answered yet, "Pending In"
that the contact asked and the user has not answered.  :data:`TABLE` holds every row of
Appendix A.2 (stanzas the user sends, "outbound") and A.3/A.4 (stanzas the contact sends,
"inbound"); :func:`transition` adds pre-approvals (§3.4) and the automatic answers the RFC
asks of the server.  Nothing here does I/O: the roster module applies the outcome.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["SubState", "SubEvent", "Transition", "TABLE", "transition"]


class SubState(enum.Enum):
    """Appendix A.1: the state of one roster item, from the user's point of view."""

    NONE = "None"
    NONE_PENDING_OUT = "None + Pending Out"
    NONE_PENDING_IN = "None + Pending In"
    NONE_PENDING_OUT_IN = "None + Pending Out/In"
    TO = "To"
    TO_PENDING_IN = "To + Pending In"
    FROM = "From"
    FROM_PENDING_OUT = "From + Pending Out"
    BOTH = "Both"

    @property
    def subscription(self) -> str:
        """The roster item's 'subscription' attribute (RFC 6121 §2.1.2.5)."""
        if self is SubState.BOTH:
            return "both"
        if self in (SubState.TO, SubState.TO_PENDING_IN):
            return "to"
        if self in (SubState.FROM, SubState.FROM_PENDING_OUT):
            return "from"
        return "none"

    @property
    def pending_out(self) -> bool:
        """The user's request awaits an answer: ``ask='subscribe'`` (§2.1.2.2)."""
        return self in (SubState.NONE_PENDING_OUT, SubState.NONE_PENDING_OUT_IN, SubState.FROM_PENDING_OUT)

    @property
    def pending_in(self) -> bool:
        """The contact's request awaits the user's answer."""
        return self in (SubState.NONE_PENDING_IN, SubState.NONE_PENDING_OUT_IN, SubState.TO_PENDING_IN)

    @property
    def to(self) -> bool:
        """The user is subscribed to the contact's presence."""
        return self.subscription in ("to", "both")

    @property
    def from_(self) -> bool:
        """The contact is subscribed to the user's presence."""
        return self.subscription in ("from", "both")


class SubEvent(enum.Enum):
    """A subscription stanza, as the user's server sees it."""

    OUT_SUBSCRIBE = "outbound subscribe"          # A.2.1
    OUT_UNSUBSCRIBE = "outbound unsubscribe"      # A.2.2
    OUT_SUBSCRIBED = "outbound subscribed"        # A.2.3
    OUT_UNSUBSCRIBED = "outbound unsubscribed"    # A.2.4
    IN_SUBSCRIBE = "inbound subscribe"            # A.3.1
    IN_UNSUBSCRIBE = "inbound unsubscribe"        # A.3.2
    IN_SUBSCRIBED = "inbound subscribed"          # A.3.3
    IN_UNSUBSCRIBED = "inbound unsubscribed"      # A.3.4

    @property
    def outbound(self) -> bool:
        return self.name.startswith("OUT_")


_S = SubState
_ORDER = (_S.NONE, _S.NONE_PENDING_OUT, _S.NONE_PENDING_IN, _S.NONE_PENDING_OUT_IN,
          _S.TO, _S.TO_PENDING_IN, _S.FROM, _S.FROM_PENDING_OUT, _S.BOTH)


def _rows(*rows: tuple[bool, SubState | None]) -> dict[SubState, tuple[SubState, bool]]:
    """One Appendix A table, its rows in the RFC's order; None means "no state change"."""
    assert len(rows) == len(_ORDER)
    return {old: (new or old, forward) for old, (forward, new) in zip(_ORDER, rows)}


# (new state, forward): for an outbound stanza "forward" is the ROUTE? column (the stanza goes
# on to the contact); for an inbound one it is DELIVER? (to the user's available resources).
# A.2.1 and A.2.2 have no ROUTE? column: outbound subscribe and unsubscribe always go on.
TABLE: Mapping[tuple[SubEvent, SubState], tuple[SubState, bool]] = MappingProxyType({
    (event, old): outcome
    for event, table in {
        SubEvent.OUT_SUBSCRIBE: _rows(
            (True, _S.NONE_PENDING_OUT), (True, None), (True, _S.NONE_PENDING_OUT_IN), (True, None),
            (True, None), (True, None), (True, _S.FROM_PENDING_OUT), (True, None), (True, None)),
        SubEvent.OUT_UNSUBSCRIBE: _rows(
            (True, None), (True, _S.NONE), (True, None), (True, _S.NONE_PENDING_IN),
            (True, _S.NONE), (True, _S.NONE_PENDING_IN), (True, None), (True, _S.FROM), (True, _S.FROM)),
        SubEvent.OUT_SUBSCRIBED: _rows(
            (False, None), (False, None), (True, _S.FROM), (True, _S.FROM_PENDING_OUT),
            (False, None), (True, _S.BOTH), (False, None), (False, None), (False, None)),
        SubEvent.OUT_UNSUBSCRIBED: _rows(
            (False, None), (False, None), (True, _S.NONE), (True, _S.NONE_PENDING_OUT),
            (False, None), (True, _S.TO), (True, _S.NONE), (True, _S.NONE_PENDING_OUT), (True, _S.TO)),
        SubEvent.IN_SUBSCRIBE: _rows(
            (True, _S.NONE_PENDING_IN), (True, _S.NONE_PENDING_OUT_IN), (False, None), (False, None),
            (True, _S.TO_PENDING_IN), (False, None), (False, None), (False, None), (False, None)),
        SubEvent.IN_UNSUBSCRIBE: _rows(
            (False, None), (False, None), (True, _S.NONE), (True, _S.NONE_PENDING_OUT),
            (False, None), (True, _S.TO), (True, _S.NONE), (True, _S.NONE_PENDING_OUT), (True, _S.TO)),
        SubEvent.IN_SUBSCRIBED: _rows(
            (False, None), (True, _S.TO), (False, None), (True, _S.TO_PENDING_IN),
            (False, None), (False, None), (False, None), (True, _S.BOTH), (False, None)),
        SubEvent.IN_UNSUBSCRIBED: _rows(
            (False, None), (True, _S.NONE), (False, None), (True, _S.NONE_PENDING_IN),
            (True, _S.NONE), (True, _S.NONE_PENDING_IN), (False, None), (True, _S.FROM), (True, _S.FROM)),
    }.items()
    for old, outcome in table.items()
})

# §3.4: states in which the user may pre-approve the contact's future request.
_PREAPPROVABLE = frozenset({_S.NONE, _S.NONE_PENDING_OUT, _S.TO})
# A pre-approved inbound subscribe is answered at once and moves the item to these states.
_APPROVED_STATE = {_S.NONE: _S.FROM, _S.NONE_PENDING_OUT: _S.FROM_PENDING_OUT, _S.TO: _S.BOTH}


@dataclass(frozen=True, slots=True)
class Transition:
    """What the server does with one subscription stanza for one roster item."""

    state: SubState
    approved: bool         # the pre-approval flag after the stanza (§3.4)
    forward: bool          # route it to the contact (outbound) / deliver it to the user (inbound)
    push: bool             # the item changed: roster push to the user's interested resources
    auto_subscribed: bool  # answer the contact with 'subscribed' on the user's behalf


def transition(state: SubState, event: SubEvent, approved: bool = False) -> Transition:
    """The outcome of ``event`` on an item in ``state`` (pre-approved when ``approved``)."""
    new, forward = TABLE[event, state]
    new_approved = approved and not new.from_
    auto = False
    if event is SubEvent.OUT_SUBSCRIBED and state in _PREAPPROVABLE:
        new_approved = True      # §3.4.1: nothing to approve yet; remember it instead
    elif event is SubEvent.OUT_UNSUBSCRIBED and state in _PREAPPROVABLE:
        new_approved = False     # §3.4.2 (cancelling a pre-approval)
    elif event is SubEvent.IN_SUBSCRIBE and not forward and state.from_:
        auto = True              # A.3.1 note: already subscribed, so the server answers itself
    elif event is SubEvent.IN_SUBSCRIBE and approved and state in _PREAPPROVABLE:
        # §3.4 / §3.1.3: a pre-approved request is accepted without asking the user.
        new, forward, new_approved, auto = _APPROVED_STATE[state], False, False, True
    return Transition(new, new_approved, forward, new is not state or new_approved != approved, auto)

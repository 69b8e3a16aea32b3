"""XEP-0280: Message Carbons — every carbons-enabled client of an account sees both sides of its chats.

A client turns carbons on and off for its own session with an IQ set of ``<enable/>`` or
``<disable/>`` in ``urn:xmpp:carbons:2`` (§4, §5), answered with an empty result however often it
asks (§10.1); asking for another account's sessions, or from another server, is ``not-allowed``.
The choice lives as long as the session.  ``urn:xmpp:carbons:2`` and ``urn:xmpp:carbons:rules:0``
(we follow the recommended rules of §6.1) are advertised in the server's disco#info (§3).

Copies (§7, §8) are wrapped as XEP-0297 forwards in a message from the account's bare JID to the
copied resource's full JID, with the original's ``type``::

    <message from='user@domain' to='user@domain/res' type='chat'>
      <received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>
        <message .../></forwarded></received></message>

- **received** (§7): when a message to an account (bare or full JID, from anyone, local or remote)
  is delivered to a session, each other *available* carbons-enabled session of the account gets a
  ``<received/>`` copy.  The sessions that get the original — the addressed one, or for a bare
  JID those ``message.deliverable()`` picks — never get a copy too.  A message that no session
  takes now (offline storage, a bounce) makes no copies: nobody received it, and it reaches a
  client later as itself.
- **sent** (§8): a message a client sends is copied as ``<sent/>`` to the account's other
  available carbons-enabled sessions, whether or not the sender enabled carbons, wherever the
  message goes (a local account, another server, a component).
- A message between resources of one account is copied once, as ``<sent/>``, to the resources
  that neither sent nor received it, so no resource ever gets the same message twice.

Eligibility follows §6.1: never a message with ``<private/>`` (§9), the XEP-0334 ``<no-copy/>``
hint (§4.3: "should not be copied to addresses other than the one to which it is addressed, for
example through XEP-0280"), or a ``<sent/>``/``<received/>`` payload (a carbon is never copied:
no loops); never ``groupchat``; invitations to rooms (XEP-0249 and XEP-0045 mediated) always;
a private message to a room occupant (``muc#user`` payload, sent to a full JID) but not one from
an occupant (the room already gives it to every joined client); otherwise ``chat``, ``normal``
with a ``<body/>``, anything carrying chat states (XEP-0085), receipts (XEP-0184) or chat markers
(XEP-0333), and an ``error`` answering a message that was copied (same id, same two accounts;
the last ``_RECENT`` such messages per host are remembered).  A ``headline`` qualifies only by
those payloads.

``<private/>`` is removed from the original before it is delivered to a local recipient (§9:
"the receiving server SHOULD remove the <private/> element"); a message leaving for another
server keeps it, since that server is the receiving one (0.9 dropped the sending-side removal).

Forged carbons (§11): clients MUST accept copies only from their own bare JID.  Only this module
sends a message from an account's bare JID: the router stamps every client stanza with the
sender's full JID and federation checks the domain of remote ones, so a ``<received/>`` a client
or a peer wraps itself always arrives from a full or foreign JID, and clients ignore it.  Such a
message is delivered as any other (the XEP asks nothing more of servers) and never copied.

Hooks: ``FILTER_FROM_CLIENT`` at -100, after every filter that may refuse the stanza (blocking at
100), for sent copies; ``MESSAGE_FULL`` at -100, the last handler before the router delivers to
the addressed session; ``MESSAGE_BARE`` at 1, after offline's hold (10) and just before the
message module (0), which delivers to exactly the ``deliverable()`` sessions we computed (no
await lies between the two).  A private message is delivered here, without ``<private/>``, and
the chain stops.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Sequence

from xmppcore.jid import JID
from xmppcore.modules.message import deliverable
from xmppcore.server import hooks
from xmppcore.server.iq import IqRequest
from xmppcore.server.module_api import IqScope, IqType, ModuleContext, Xep
from xmppcore.server.sessions import Session
from xmppcore.stanza.errors import Condition, StanzaError
from xmppcore.stanza.model import MessageType
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT

__all__ = [
    "DEPENDS", "NS_CARBONS", "NS_CARBONS_RULES", "NS_FORWARD", "PROTOCOL", "Direction",
    "carbon", "is_carbon", "is_eligible", "is_private", "setup", "without_private",
]

PROTOCOL = (Xep(280, "1.0.1"), Xep(297, "1.0"))
DEPENDS = ("message",)  # deliverable() tells which sessions get a bare-JID message

NS_CARBONS = "urn:xmpp:carbons:2"
NS_CARBONS_RULES = "urn:xmpp:carbons:rules:0"
NS_FORWARD = "urn:xmpp:forward:0"
_NS_HINTS = "urn:xmpp:hints"
_NS_MUC_USER = "http://jabber.org/protocol/muc#user"
_NS_CONFERENCE = "jabber:x:conference"  # XEP-0249
_NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
_NS_RECEIPTS = "urn:xmpp:receipts"
_NS_MARKERS = "urn:xmpp:chat-markers:0"
_IM_PAYLOADS = frozenset({
    (_NS_RECEIPTS, "request"), (_NS_RECEIPTS, "received"),
    (_NS_MARKERS, "markable"), (_NS_MARKERS, "received"), (_NS_MARKERS, "displayed"), (_NS_MARKERS, "acknowledged"),
})

_RECENT = 10_000  # copied messages remembered per host, to recognise errors answering them
_FILTER_PRIORITY = -100
_FULL_PRIORITY = -100
_BARE_PRIORITY = 1


class Direction(enum.Enum):
    """Which way a copied message went, seen from the account: the wrapper's element name."""

    SENT = "sent"
    RECEIVED = "received"


# -- which messages are copied (§6.1) -------------------------------------------------------------
def is_carbon(stanza: Element) -> bool:
    """True for a message wrapping a carbon (never copied again: no loops)."""
    return any(child.ns == NS_CARBONS and child.name in ("sent", "received") for child in stanza.elements())


def is_private(stanza: Element) -> bool:
    """True for a message its sender asked not to copy (§9 ``<private/>``, XEP-0334 ``<no-copy/>``)."""
    return stanza.find("private", NS_CARBONS) is not None or stanza.find("no-copy", _NS_HINTS) is not None


def is_eligible(stanza: Element, direction: Direction, peer: JID, *, answers_copied: bool = False) -> bool:
    """Whether ``stanza``, exchanged with ``peer`` in ``direction``, is copied (§6.1).

    ``answers_copied`` says whether an ``error`` answers a message that was copied.
    """
    if is_private(stanza) or is_carbon(stanza):
        return False
    kind = MessageType.of(stanza)
    if kind is MessageType.GROUPCHAT:
        return False
    if kind is MessageType.ERROR:
        return answers_copied  # judged by what it answers, not by the payload it echoes
    muc = stanza.find("x", _NS_MUC_USER)
    invited = muc is not None and muc.find("invite", _NS_MUC_USER) is not None
    if invited or stanza.find("x", _NS_CONFERENCE) is not None:
        return True  # mediated (XEP-0045 §7.8.2) and direct (XEP-0249) invitations
    if muc is not None and peer.resource:
        # A private message to an occupant is copied; one from an occupant is not, since the room
        # already sends it to every client joined under that nick.
        return direction is Direction.SENT
    if kind is MessageType.CHAT:
        return True
    if kind is MessageType.NORMAL and any(c.name == "body" and c.ns in (NS_CLIENT, "") for c in stanza.elements()):
        return True
    return any(child.ns == _NS_CHATSTATES or child.qname in _IM_PAYLOADS for child in stanza.elements())


# -- the copies (§7, §8) -----------------------------------------------------------------------------
def carbon(original: Element, direction: Direction, account: JID, to: JID) -> Element:
    """The copy of ``original`` for the session ``to`` of ``account`` (a bare JID)."""
    attrs = {"from": str(account), "to": str(to)}
    kind = original.get("type")
    if kind is not None:
        attrs["type"] = kind  # "SHOULD maintain the same 'type' attribute value"
    wrapper = Element("message", NS_CLIENT, attrs)
    forwarded = wrapper.add(direction.value, NS_CARBONS).add("forwarded", NS_FORWARD)
    forwarded.append(original)
    return wrapper


def without_private(stanza: Element) -> Element:
    """A copy of ``stanza`` without its ``<private/>`` elements (§9)."""
    children = [c for c in stanza.children if not (isinstance(c, Element) and c.qname == (NS_CARBONS, "private"))]
    return Element(stanza.name, stanza.ns, stanza.attrs, children).copy()


def _addressed(stanza: Element, to: JID) -> Element:
    """``stanza`` naming its recipient: a message without 'to' is for the sender's own account
    (RFC 6120 §8.1.1.1), which a copy must say, as it reaches other clients."""
    if stanza.get("to") is not None:
        return stanza
    return Element(stanza.name, stanza.ns, {**stanza.attrs, "to": str(to)}, stanza.children)


class _RecentlyCopied:
    """The last messages copied per (account, peer, id), so that an error answering one is copied too."""

    def __init__(self, capacity: int) -> None:
        self._keys: OrderedDict[tuple[JID, JID, str], None] = OrderedDict()
        self._capacity = capacity

    def add(self, account: JID, peer: JID, stanza_id: str | None) -> None:
        if stanza_id is None:
            return
        key = (account, peer.bare, stanza_id)
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self._capacity:
            self._keys.popitem(last=False)

    def answered_by(self, account: JID, peer: JID, error: Element) -> bool:
        """True when ``error`` (RFC 6120 §8.3.1: same id) answers a message copied for ``account``."""
        stanza_id = error.get("id")
        return stanza_id is not None and (account, peer.bare, stanza_id) in self._keys


# -- the module ----------------------------------------------------------------------------------------
class _Carbons:
    """The carbons state of one host: which sessions enabled them, which messages were copied."""

    def __init__(self, mod: ModuleContext) -> None:
        self._mod = mod
        self._enabled: set[Session] = set()
        # Accounts with at least one enabled session: every message asks, and most say no.
        self._accounts: dict[JID, int] = {}
        self._recent = _RecentlyCopied(_RECENT)

    # -- §4, §5: enabling and disabling -------------------------------------------------------------
    async def toggle(self, request: IqRequest) -> Element | None:
        session = self._own_session(request)
        if request.payload.name == "enable":
            self._enable(session)
        else:
            self._disable(session)
        return None  # §10.1: repeating either is no error

    def _enable(self, session: Session) -> None:
        if session not in self._enabled and session.jid is not None:
            self._enabled.add(session)
            account = session.jid.bare
            self._accounts[account] = self._accounts.get(account, 0) + 1

    def _disable(self, session: Session) -> None:
        if session in self._enabled:
            self._enabled.discard(session)
            assert session.jid is not None  # enabled only once bound; the JID stays
            account = session.jid.bare
            left = self._accounts.pop(account, 1) - 1
            if left > 0:
                self._accounts[account] = left

    def _own_session(self, request: IqRequest) -> Session:
        sender = request.sender
        if sender.bare == request.to.bare and sender.resource:
            for session in self._mod.sessions_of(sender.bare):
                if session.jid == sender:
                    return session
        # §4.1, §5.1: a client of another server, or another account's carbons.
        raise StanzaError(Condition.NOT_ALLOWED, "carbons are set by each client for its own session")

    async def forget(self, event: hooks.SessionEvent) -> None:
        self._disable(event.session)

    # -- §8: what a client sends ----------------------------------------------------------------------
    async def on_from_client(self, event: hooks.StanzaEvent) -> hooks.Handled | None:
        stanza, sender, to = event.stanza, event.sender, event.to
        account = sender.bare
        if stanza.name != "message" or account not in self._accounts or to.bare == account:
            # Nobody to copy to; messages within the account are copied where they are delivered.
            return None
        answers = self._recent.answered_by(account, to, stanza)
        if is_eligible(stanza, Direction.SENT, to, answers_copied=answers):
            self._copy(_addressed(stanza, to), Direction.SENT, account, skip=(event.origin,), peer=to)
        return None

    # -- §7: what an account receives -----------------------------------------------------------------
    async def on_full(self, event: hooks.StanzaEvent) -> hooks.Handled | None:
        if self._nothing_to_do(event):
            return None
        targets = [s for s in self._mod.sessions_of(event.to.bare) if s.jid == event.to]
        return self._delivering(event, targets)

    async def on_bare(self, event: hooks.StanzaEvent) -> hooks.Handled | None:
        kind = MessageType.of(event.stanza)
        if kind in (MessageType.ERROR, MessageType.GROUPCHAT) or self._nothing_to_do(event):
            return None  # the message module drops or refuses errors and groupchat: nobody receives them
        return self._delivering(event, deliverable(self._mod.sessions_of(event.to.bare), kind))

    def _nothing_to_do(self, event: hooks.StanzaEvent) -> bool:
        """No session of the account enabled carbons and no <private/> to strip: the common case."""
        return event.to.bare not in self._accounts and event.stanza.find("private", NS_CARBONS) is None

    def _delivering(self, event: hooks.StanzaEvent, targets: list[Session]) -> hooks.Handled | None:
        """Copy a message about to reach ``targets``; deliver it ourselves when it must change."""
        stanza, sender, account = event.stanza, event.sender, event.to.bare
        if sender.bare == account:
            # Within the account: one <sent/> copy for the resources that neither sent nor get it.
            senders = [s for s in self._mod.sessions_of(account) if s.jid == sender]
            if is_eligible(stanza, Direction.SENT, event.to):
                original = _addressed(stanza, event.to)
                self._copy(original, Direction.SENT, account, skip=(*targets, *senders), peer=account)
        elif targets:
            answers = MessageType.of(stanza) is MessageType.ERROR and self._recent.answered_by(account, sender, stanza)
            if is_eligible(stanza, Direction.RECEIVED, sender, answers_copied=answers):
                self._copy(stanza, Direction.RECEIVED, account, skip=targets, peer=sender)
        if targets and stanza.find("private", NS_CARBONS) is not None:
            # §9: the receiving server SHOULD remove <private/> before delivering to the recipient.
            stripped = without_private(stanza)
            for session in targets:
                session.deliver(stripped)
            return hooks.Handled.STOP
        return None

    def _copy(self, original: Element, direction: Direction, account: JID,
              skip: Sequence[Session | None], peer: JID) -> None:
        """Deliver a copy to each available carbons-enabled session of ``account`` not in ``skip``."""
        copied = False
        for session in self._mod.sessions_of(account):
            if session in self._enabled and session.available and session.jid is not None \
                    and not any(session is other for other in skip):
                session.deliver(carbon(original, direction, account, session.jid))
                copied = True
        if copied and MessageType.of(original) is not MessageType.ERROR:
            self._recent.add(account, peer, original.get("id"))


def setup(mod: ModuleContext) -> None:
    carbons = _Carbons(mod)
    mod.add_feature(NS_CARBONS)
    mod.add_feature(NS_CARBONS_RULES)
    for name in ("enable", "disable"):
        mod.iq_handler(NS_CARBONS, name, carbons.toggle, types=(IqType.SET,), scope=IqScope.ACCOUNT)
    mod.hook(hooks.SESSION_CLOSED, carbons.forget)
    mod.hook(hooks.FILTER_FROM_CLIENT, carbons.on_from_client, priority=_FILTER_PRIORITY, stanzas=("message",))
    mod.hook(hooks.MESSAGE_FULL, carbons.on_full, priority=_FULL_PRIORITY)
    mod.hook(hooks.MESSAGE_BARE, carbons.on_bare, priority=_BARE_PRIORITY)

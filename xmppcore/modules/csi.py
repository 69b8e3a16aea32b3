"""XEP-0352: Client State Indication — while a client says it is inactive, presence updates to it wait.

The feature ``<csi xmlns='urn:xmpp:csi:0'/>`` is offered after authentication (§4.1); the c2s
core accepts ``<inactive/>`` and ``<active/>`` from a bound client and the runtime reports each
change on ``CLIENT_STATE``, in order with the client's stanzas (§5.1).  What the server does with
the state is its own choice (§3.2 lists examples); we do the first: "suppress presence updates
until the client becomes active again. On becoming active, push the latest presence from each
contact".  While a session is inactive it carries a :class:`PresenceHold` as its delivery filter:

- A presence *update* to it — available or unavailable — waits, and only the latest from each
  full JID is kept (presence is state: an older one says nothing the newer does not).  On
  ``<active/>`` what waits goes out, in the order the kept ones arrived, before anything the
  client sent after ``<active/>`` is answered (§5.1).
- Everything else flows at once: messages (carbons included) and IQs; subscription requests and
  answers (``subscribe``, ``subscribed``, ``unsubscribe``, ``unsubscribed``), which are not
  updates and which a person may be waiting on; presence errors; the client's own presence as the
  server echoes it back (it answers what the client just did); and a room's presence about the
  user's own occupant (XEP-0045 status code 110), which a client joining a room waits for.
- Held presence never arrives after a newer stanza from the same sender.  Before a presence that
  flows, what waits from its sender is delivered first (from all its resources when the sender is
  a bare JID, as subscription stanzas are).  Before a message or an IQ, what waits from that very
  full JID goes first: §3.1's user "is not interested in the status of her contacts unless they
  are communicating with her", so whoever writes is shown with their current presence, and
  everyone else's still waits.  Nothing else flushes: the point is to send less while the user
  is away.
- At most ``max_held`` senders' presence waits per session (directed presence and rooms let
  strangers make many); one more, and everything held goes out and holding starts afresh.

Holding belongs to the stream (``server/sessions.py``): when it ends, the runtime removes the
filter, and what it held is treated as a stanza not yet sent — kept in the XEP-0198 queue when the
session may be resumed (the resumed stream begins active: the state is not restored, §5.2),
dropped otherwise (presence is state; the next login probes the contacts again).  Nothing held
has been sent, so XEP-0198 counts none of it until it goes out.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from xmppcore.jid import JID, InvalidJID
from xmppcore.protocol.c2s import NS_CSI
from xmppcore.server import hooks
from xmppcore.server.module_api import ModuleContext, Xep
from xmppcore.server.sessions import Session
from xmppcore.stanza.model import PresenceType
from xmppcore.xml.element import Element

__all__ = ["NS_CSI", "PROTOCOL", "Options", "PresenceHold", "setup"]

PROTOCOL = (Xep(352, "1.0.0"),)

_NS_MUC_USER = "http://jabber.org/protocol/muc#user"
_UPDATES = (PresenceType.AVAILABLE, PresenceType.UNAVAILABLE)


@dataclass(frozen=True)
class Options:
    """``[modules.csi]``."""

    max_held: int = 500  # senders whose presence may wait for one inactive session

    def __post_init__(self) -> None:
        if not 1 <= self.max_held <= 100_000:
            raise ValueError(f"max_held must be from 1 to 100000, got {self.max_held}")


def _sender(stanza: Element) -> JID | None:
    try:
        return JID.parse(stanza.attrs["from"])
    except (KeyError, InvalidJID):
        return None


def _about_own_occupant(presence: Element) -> bool:
    """XEP-0045 §7.2.3: a room's presence about the recipient's own occupant carries status 110."""
    muc = presence.find("x", _NS_MUC_USER)
    return muc is not None and any(status.get("code") == "110" for status in muc.findall("status", _NS_MUC_USER))


class PresenceHold:
    """The delivery filter of an inactive session (see the module docstring)."""

    def __init__(self, owner: JID, max_held: int) -> None:
        self._owner = owner  # the session's full JID
        self._max_held = max_held
        self._held: dict[JID, Element] = {}  # by sender, in the order the kept ones arrived

    def admit(self, stanza: Element) -> list[Element]:
        sender = _sender(stanza)
        if sender is None:
            return [stanza]  # no sender to fold by or to keep in order with
        if self._is_update(stanza, sender):
            self._held.pop(sender, None)  # folded: the newer one takes the end of the line
            self._held[sender] = stanza
            return self.release() if len(self._held) > self._max_held else []
        whole_account = stanza.name == "presence" and not sender.resource
        return [*self._take_from(sender, whole_account=whole_account), stanza]

    def release(self) -> list[Element]:
        held = list(self._held.values())
        self._held.clear()
        return held

    def _is_update(self, stanza: Element, sender: JID) -> bool:
        return (stanza.name == "presence" and PresenceType.of(stanza) in _UPDATES
                and sender != self._owner and not _about_own_occupant(stanza))

    def _take_from(self, sender: JID, *, whole_account: bool) -> list[Element]:
        """What waits from ``sender`` (or, for a whole account, from any of its resources)."""
        if not self._held:
            return []
        keys = [key for key in self._held if key == sender or (whole_account and key.bare == sender)]
        return [self._held.pop(key) for key in keys]


def setup(mod: ModuleContext) -> None:
    options: Options = mod.options
    mod.add_stream_feature(Element("csi", NS_CSI))
    holding: weakref.WeakSet[Session] = weakref.WeakSet()  # to let go of on unload

    async def on_client_state(event: hooks.ClientStateEvent) -> None:
        session = event.session
        if event.active:
            if isinstance(session.delivery_filter, PresenceHold):
                session.set_delivery_filter(None)  # what waited goes out now, in order
            holding.discard(session)
        elif session.delivery_filter is None and session.jid is not None:
            session.set_delivery_filter(PresenceHold(session.jid, options.max_held))
            holding.add(session)

    def let_go() -> None:
        for session in list(holding):
            if isinstance(session.delivery_filter, PresenceHold):
                session.set_delivery_filter(None)
        holding.clear()

    mod.hook(hooks.CLIENT_STATE, on_client_state)
    mod.on_unload(let_go)

"""XEP-0012: Last Activity — the server's uptime, and when an account last logged out.

- To the server's domain (§5): ``seconds`` is how long the server has been up (since this module
  was loaded on the host), without character data.
- To an account's bare JID (§3), answered by the server on the account's behalf: ``0`` while
  the account has an available resource, otherwise the seconds since it logged out, with the
  status text of its last unavailable presence.  An account whose logout was never recorded
  gets ``item-not-found``.  Only those who may see the account's presence may ask: the account
  itself and contacts it has a ``from`` or ``both`` subscription with (read from the roster
  module, ``dependency("roster")``); everyone else gets ``forbidden`` (§3).
- To a full JID (§4) the query is the client's business: the router delivers it.

"Logged out" is when the account's last available resource stopped being available, the moment
its contacts saw it go offline: it sent unavailable presence (RFC 6121 §4.5.1) or its session
closed (``SESSION_CLOSED``, §4.5.2).  A session that never sent presence changes nothing.  The
time is stored, so it survives a restart; sessions that the server ends by shutting down are
not recorded yet (``Server.stop`` cancels their close handlers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from xmppcore.jid import JID
from xmppcore.server import hooks
from xmppcore.server.iq import IqRequest
from xmppcore.server.module_api import IqScope, ModuleContext, WritesBehind, Xep
from xmppcore.server.sessions import Session
from xmppcore.stanza.errors import Condition, StanzaError
from xmppcore.stanza.model import PresenceType
from xmppcore.storage.api import JSONValue, KeyValueStore, StoreKind
from xmppcore.xml.element import Element

if TYPE_CHECKING:
    from .roster import Roster

__all__ = ["PROTOCOL", "NS_LAST", "last_query", "setup"]

PROTOCOL = (Xep(12, "1.2"),)
NS_LAST = "jabber:iq:last"

# Run before the presence module, which stops the PRESENCE_BROADCAST chain.
_BEFORE_PRESENCE = 100


def last_query(seconds: float, status: str = "") -> Element:
    """``<query xmlns='jabber:iq:last' seconds='…'>status</query>``; seconds never negative."""
    return Element("query", NS_LAST, {"seconds": str(max(0, int(seconds)))}, text=status or None)


def _record(value: JSONValue) -> tuple[float, str] | None:
    """``(when, status)`` of a stored logout; None when there is none or it is malformed."""
    if not isinstance(value, dict):
        return None
    when, status = value.get("when"), value.get("status", "")
    if not isinstance(when, (int, float)) or isinstance(when, bool) or not isinstance(status, str):
        return None
    return float(when), status


async def _may_see_presence(mod: ModuleContext, user: JID, requester: JID) -> bool:
    """True when ``requester`` is ``user`` or a contact ``user`` shares presence with (§3)."""
    if requester.bare == user.bare:
        return True
    try:
        roster = cast("Roster", mod.dependency("roster"))
    except KeyError:
        return False  # no rosters loaded: no subscriptions, only the account itself
    return await roster.shares_presence(user, requester)


def setup(mod: ModuleContext) -> None:
    started = mod.now()
    store = cast(KeyValueStore, mod.open_store("last", StoreKind.KEYVAL))

    def others_available(session: Session) -> bool:
        assert session.jid is not None
        return any(s.available for s in mod.sessions_of(session.jid.bare) if s is not session)

    writes = WritesBehind(mod.log)

    def record_logout(session: Session, status: str) -> None:
        assert session.jid is not None
        user = session.jid.local
        if mod.account_deleted(user):
            return  # the account was deleted (XEP-0077 §3.2) and its sessions closed after
        record: JSONValue = {"when": mod.now(), "status": status}
        # In the background, not urgent: logouts commit together (a commit each was a large part
        # of a login's cost in the issue 8 benchmark), and neither the presence broadcast after
        # this handler nor the client's next stanza waits for it.  Reads wait (writes.settled).
        writes.start(user, lambda: store.set(user, record, urgent=False))

    async def forget_account(event: hooks.AccountEvent) -> None:
        await writes.settled(event.jid.local)
        await store.set(event.jid.local, None)

    async def server_uptime(request: IqRequest) -> Element:
        return last_query(mod.now() - started)  # §5: no character data

    async def account_last_activity(request: IqRequest) -> Element:
        if not await _may_see_presence(mod, request.to, request.sender):
            # §3: an entity "not authorized to view the user's presence information" (normally
            # via a presence subscription) gets forbidden.
            raise StanzaError(Condition.FORBIDDEN, "last activity is shared with the account's contacts only")
        if any(session.available for session in mod.sessions_of(request.to.bare)):
            return last_query(0)  # §3: "at least one available resource" -> seconds='0'
        await writes.settled(request.to.local)
        record = _record(await store.get(request.to.local))
        if record is None:
            raise StanzaError(Condition.ITEM_NOT_FOUND, "no logout of this account is recorded")
        when, status = record
        return last_query(mod.now() - when, status)

    async def on_unavailable(event: hooks.StanzaEvent) -> None:
        session = event.origin
        if (session is None or session.jid is None or not session.available
                or PresenceType.of(event.stanza) is not PresenceType.UNAVAILABLE):
            return
        if not others_available(session):
            # §3: the answer "MAY contain ... the status message of the last unavailable
            # presence received from the user".
            record_logout(session, (event.stanza.findtext("status") or "").strip())

    async def on_closed(event: hooks.SessionEvent) -> None:
        session = event.session
        # A session that leaves while available, without an unavailable presence, logs out too
        # (RFC 6121 §4.5.2 makes the server send unavailable presence for it).
        if session.jid is not None and session.available and not others_available(session):
            record_logout(session, "")

    mod.add_feature(NS_LAST, IqScope.HOST)
    mod.add_feature(NS_LAST, IqScope.ACCOUNT)
    mod.iq_handler(NS_LAST, "query", server_uptime, scope=IqScope.HOST)
    mod.iq_handler(NS_LAST, "query", account_last_activity, scope=IqScope.ACCOUNT)
    # Both run before the presence module, which marks the session unavailable (and stops
    # the broadcast chain): they must see whether the session was available.
    mod.hook(hooks.PRESENCE_BROADCAST, on_unavailable, priority=_BEFORE_PRESENCE)
    mod.hook(hooks.SESSION_CLOSED, on_closed, priority=_BEFORE_PRESENCE)
    mod.hook(hooks.ACCOUNT_DELETED, forget_account)

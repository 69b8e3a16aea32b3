"""XEP-0077: In-Band Registration — new accounts before login, password changes, cancellation.

Off by default: a host offers registration only when this module is enabled on it.

- Before authentication (§3.1.1), on a TLS-protected stream (§10), the c2s core advertises the
  ``iq-register`` stream feature (§8) and hands ``jabber:iq:register`` IQs to the
  ``REGISTRATION_REQUESTED`` hook: a get answers with the fields (username, password), a set
  creates the account; the client then authenticates on the same stream.  Successful
  registrations are throttled per IP address (``resource-constraint``, as ejabberd answers).
- After authentication: a get tells the account it is ``<registered/>`` (§3.1); a set with
  username and password changes the password (§3.3); a set with ``<remove/>`` deletes the account
  (§3.2): the result goes back, then every session of the account ends with a ``not-authorized``
  stream error, and ``ACCOUNT_DELETED`` has every module delete the account's data.

The two authenticated sets are taken from the client's stanza path (``FILTER_FROM_CLIENT``)
rather than the IQ table: the cancellation must answer before it closes the streams, and the
errors must not echo the password (§3.3: "SHOULD NOT return the original XML").
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from xmppcore.jid import JID
from xmppcore.server import hooks
from xmppcore.server.auth import AccountError, normalize_username
from xmppcore.server.iq import IqRequest
from xmppcore.server.module_api import IqScope, IqType, ModuleContext, Xep
from xmppcore.stanza.errors import Condition, ErrorType, StanzaError, StreamCondition
from xmppcore.stanza.model import error_reply, iq_payload, result_reply
from xmppcore.storage.api import StorageError
from xmppcore.xml.element import Element

__all__ = ["PROTOCOL", "NS_REGISTER", "Options", "RegistrationThrottle", "setup"]

PROTOCOL = (Xep(77, "2.4"),)
NS_REGISTER = "jabber:iq:register"
INSTRUCTIONS = "Choose a username and password to register with this server."

_FIRST = 200  # run before the other FILTER_FROM_CLIENT handlers: these stanzas are ours alone
_MAX_ADDRESSES = 100_000  # addresses the throttle remembers (STYLE rule 8)


@dataclass(frozen=True)
class Options:
    """``[modules.register]``."""

    throttle_window: float = 600.0        # seconds; 0 turns the per-address throttle off
    registrations_per_address: int = 1    # successful registrations one IP address may make per window
    allow_password_change: bool = True    # §3.3
    allow_cancel: bool = True             # §3.2

    def __post_init__(self) -> None:
        if self.throttle_window < 0:
            raise ValueError("throttle_window must not be negative")
        if self.registrations_per_address < 1:
            raise ValueError("registrations_per_address must be at least 1")


class RegistrationThrottle:
    """Remembers recent successful registrations per address; bounded in memory."""

    def __init__(self, *, window: float, limit: int, max_addresses: int = _MAX_ADDRESSES) -> None:
        self._window = window
        self._limit = limit
        self._max_addresses = max_addresses
        self._recent: OrderedDict[str, deque[float]] = OrderedDict()

    def acquire(self, address: str, now: float) -> bool:
        """Count a registration from ``address`` now; False (nothing counted) when over the limit."""
        if self._window <= 0:
            return True
        times = self._recent.get(address)
        if times is None:
            times = self._recent[address] = deque()
        self._recent.move_to_end(address)
        while times and times[0] <= now - self._window:
            times.popleft()
        if len(times) >= self._limit:
            return False
        times.append(now)
        while len(self._recent) > self._max_addresses:
            self._recent.popitem(last=False)
        return True

    def release(self, address: str, now: float) -> None:
        """Take back what ``acquire`` counted at ``now`` (the registration failed)."""
        times = self._recent.get(address)
        if times and now in times:
            times.remove(now)


def _fields(query: Element) -> tuple[str | None, str | None]:
    return query.findtext("username", NS_REGISTER), query.findtext("password", NS_REGISTER)


def _refusal(stanza: Element, err: StanzaError) -> Element:
    # Never echo the request: it may carry a password (§3.3).
    return error_reply(stanza, err, include_payload=False)


class Registration:
    """The protocol for one host."""

    def __init__(self, mod: ModuleContext, options: Options) -> None:
        self._mod = mod
        self._options = options
        self._throttle = RegistrationThrottle(window=options.throttle_window, limit=options.registrations_per_address)

    # -- before authentication (§3.1.1) ---------------------------------------------------------
    async def on_registration_requested(self, event: hooks.RegistrationEvent) -> hooks.Handled:
        stanza = event.stanza
        try:
            payload = await self._unauthenticated(stanza, event.address)
            reply = result_reply(stanza, payload)
        except StanzaError as err:
            reply = _refusal(stanza, err)
        except StorageError:
            self._mod.log.exception("storage failed during an in-band registration")
            reply = _refusal(stanza, StanzaError(Condition.INTERNAL_SERVER_ERROR, type=ErrorType.WAIT))
        event.answer(reply)
        return hooks.Handled.STOP

    async def _unauthenticated(self, stanza: Element, address: str) -> Element | None:
        query = iq_payload(stanza)
        assert query is not None  # the c2s core passes only IQs carrying a register query
        if stanza.get("type") == "get":
            form = Element("query", NS_REGISTER)
            form.add("instructions", text=INSTRUCTIONS)
            form.add("username")
            form.add("password")
            return form
        if query.find("remove") is not None:
            # §3.2 error table: an IM server's remove request "does not contain a 'from' address
            # because the entity is not registered with the server".
            raise StanzaError(Condition.UNEXPECTED_REQUEST, "log in to cancel a registration")
        await self._create(query, address)
        return None

    async def _create(self, query: Element, address: str) -> None:
        username, password = _fields(query)
        if not username or not password:
            # §3.1: every field must be given; an empty password "MUST" get not-acceptable.
            raise StanzaError(Condition.NOT_ACCEPTABLE, "both a username and a password are required")
        try:
            user = normalize_username(username)
        except AccountError:
            raise StanzaError(Condition.JID_MALFORMED, "the username is not a valid JID localpart") from None
        accounts, host = self._mod.accounts, self._mod.host
        if await accounts.exists(host, user):
            raise StanzaError(Condition.CONFLICT, "the username is taken")  # §3.1, example 6
        now = self._mod.now()
        if not self._throttle.acquire(address, now):
            raise StanzaError(Condition.RESOURCE_CONSTRAINT, "too many registrations from your address; try later")
        try:
            await accounts.create(host, user, password)
        except AccountError:
            self._throttle.release(address, now)
            if await accounts.exists(host, user):
                raise StanzaError(Condition.CONFLICT, "the username is taken") from None  # a race
            raise StanzaError(Condition.NOT_ACCEPTABLE, "the password is not acceptable") from None
        except BaseException:
            self._throttle.release(address, now)
            raise
        self._mod.log.info("registered %s@%s in-band from %s", user, host, address)

    # -- after authentication ---------------------------------------------------------------------
    async def on_get(self, request: IqRequest) -> Element:
        """§3.1: an authenticated entity is told it is registered, and under which name."""
        sender = request.sender
        if not sender.local or sender.domain != self._mod.host:
            raise StanzaError(Condition.NOT_ALLOWED, "accounts are registered by their own server's clients")
        if request.to.local and request.to.bare != sender.bare:
            raise StanzaError(Condition.FORBIDDEN, "another account's registration is not yours to see")
        query = Element("query", NS_REGISTER)
        query.add("registered")
        query.add("username", text=sender.local)
        query.add("password")  # §3.1: "the <password/> element MAY be empty"
        query.add("instructions", text="You are registered; send <remove/> to cancel, or a new password.")
        return query

    async def on_from_client(self, event: hooks.StanzaEvent) -> hooks.Handled | None:
        """A client's own password change (§3.3) or cancellation (§3.2)."""
        stanza, sender, session = event.stanza, event.sender, event.origin
        if stanza.name != "iq" or stanza.get("type") != "set" or session is None:
            return None
        query = iq_payload(stanza)
        if query is None or query.qname != (NS_REGISTER, "query"):
            return None
        if event.to != sender.bare and event.to != JID("", self._mod.host, ""):
            return None  # to another entity (a service of its own): routed as usual
        try:
            if query.find("remove") is not None:
                await self._cancel(query, event)
                return hooks.Handled.STOP
            await self._change_password(query, sender)
            reply = result_reply(stanza)
        except StanzaError as err:
            reply = _refusal(stanza, err)
        except StorageError:
            self._mod.log.exception("storage failed on a jabber:iq:register set")
            reply = _refusal(stanza, StanzaError(Condition.INTERNAL_SERVER_ERROR, type=ErrorType.WAIT))
        session.deliver(reply)
        return hooks.Handled.STOP

    async def _change_password(self, query: Element, sender: JID) -> None:
        if not self._options.allow_password_change:
            raise StanzaError(Condition.NOT_ALLOWED, "passwords cannot be changed in-band here")
        username, password = _fields(query)
        if username is None:
            raise StanzaError(Condition.BAD_REQUEST, "a password change names the <username/>")  # §3.3
        try:
            own = normalize_username(username) == sender.local
        except AccountError:
            own = False
        if not own:
            raise StanzaError(Condition.FORBIDDEN, "only your own password can be changed")
        if not password:
            # §3.3: an empty password "MUST NOT" replace the existing one.
            raise StanzaError(Condition.NOT_ACCEPTABLE, "the password must not be empty")
        try:
            await self._mod.accounts.set_password(self._mod.host, sender.local, password)
        except AccountError:
            raise StanzaError(Condition.NOT_ACCEPTABLE, "the password is not acceptable") from None
        self._mod.log.info("%s changed its password in-band", sender.bare)

    async def _cancel(self, query: Element, event: hooks.StanzaEvent) -> None:
        if not self._options.allow_cancel:
            raise StanzaError(Condition.NOT_ALLOWED, "registrations cannot be cancelled in-band here")
        if len(list(query.elements())) != 1:
            raise StanzaError(Condition.BAD_REQUEST, "<remove/> must be the only child")  # §3.2 table
        user = event.sender.bare
        try:
            await self._mod.accounts.delete(self._mod.host, user.local)
        except AccountError:
            raise StanzaError(Condition.REGISTRATION_REQUIRED, "this account is not registered") from None
        self._mod.log.info("%s cancelled its registration", user)
        assert event.origin is not None
        event.origin.deliver(result_reply(event.stanza))
        # §3.2: "the server SHOULD then return a <not-authorized/> stream error and terminate
        # all active sessions for the entity" (ejabberd sends conflict, also after the result).
        for session in self._mod.sessions_of(user):
            session.close(StreamCondition.NOT_AUTHORIZED, "the account was deleted")


def setup(mod: ModuleContext) -> None:
    registration = Registration(mod, mod.options or Options())
    mod.add_feature(NS_REGISTER)  # XEP-0077 §11 (determining support)
    mod.hook(hooks.REGISTRATION_REQUESTED, registration.on_registration_requested)
    mod.hook(hooks.FILTER_FROM_CLIENT, registration.on_from_client, priority=_FIRST, stanzas=("iq",))
    mod.iq_handler(NS_REGISTER, "query", registration.on_get, types=(IqType.GET,), scope=IqScope.HOST)
    mod.iq_handler(NS_REGISTER, "query", registration.on_get, types=(IqType.GET,), scope=IqScope.ACCOUNT)

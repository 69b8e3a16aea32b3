"""XEP-0441: Message Archive Management Preferences — which conversations an account's archive
keeps — and, as our own extension, how long it keeps them.

Preferences (§2.1): a ``default`` policy (``always``, ``never``, ``roster``) and two lists of JIDs,
``always`` and ``never``.  A JID in a list decides for itself, the default for everyone else.
Matching (§2.3): a listed full JID matches only that JID, a listed bare JID any of its
resources; the partner is the message's 'to' for outgoing and its 'from' for incoming messages.
A JID in both lists is not archived (the privacy-preserving reading of a contradiction).
``roster`` archives a partner whose bare JID is a listed item of the account's roster (the
roster module, when loaded; without it no partner is in a roster).  The account's own JID counts
as a contact under ``roster``: notes to oneself are the user's own conversation.  An account that
never set preferences has the module's ``default_policy`` and empty lists.  A set replies with
the preferences as applied (§2.1); more than :data:`MAX_LISTED` JIDs is ``policy-violation``.

Retention (``urn:xmppcore:mam:retention:0``, an IQ of our own beside the standard protocol, so a
client that round-trips ``<prefs/>`` cannot reset it by accident; XEP-0441 §2.2 leaves "a limit
on how long messages should remain" to advanced configuration)::

    <iq type='set'><retention xmlns='urn:xmppcore:mam:retention:0' days='30'/></iq>
    <iq type='result'><retention xmlns='urn:xmppcore:mam:retention:0' days='30' max='90'/></iq>

``days`` is the account's own limit (``0``: none of its own); ``max`` the server's
``retention_days`` (absent when the server keeps messages forever).  An account can only shorten
what the server keeps: a longer request is lowered to ``max`` and the result says so.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from xmppcore.jid import JID, InvalidJID
from xmppcore.modules.mam_form import NS_MAM
from xmppcore.server.iq import IqRequest
from xmppcore.server.module_api import IqType, ModuleContext
from xmppcore.stanza.errors import Condition, StanzaError
from xmppcore.storage.api import ArchiveStore, JSONValue, KeyValueStore
from xmppcore.xml.element import Element

if TYPE_CHECKING:
    from .roster import Roster

__all__ = [
    "MAX_LISTED",
    "MAX_RETENTION_DAYS",
    "NS_RETENTION",
    "PURGE_INTERVAL",
    "ArchivePolicy",
    "Policy",
    "Prefs",
    "Retention",
    "effective_retention",
]

NS_RETENTION = "urn:xmppcore:mam:retention:0"
MAX_LISTED = 1000             # JIDs in <always/> and <never/> together
PREFS_CACHED = 10000          # accounts whose preferences stay in memory
MAX_RETENTION_DAYS = 36500    # a hundred years: beyond that "forever" (0) says it better
PURGE_INTERVAL = 3600.0       # seconds between two purges of one account's expired messages
_PURGE_BATCH = 500            # expired messages read and deleted at a time
_PURGE_BATCHES = 20           # per purge; an account with more is finished at its next chance
_DAY = 86400.0


class Policy(enum.Enum):
    """XEP-0441 §2.1.1: the default archiving behaviour."""

    ALWAYS = "always"
    NEVER = "never"
    ROSTER = "roster"


def _matches(listed: JID, partner: JID) -> bool:
    """§2.3: a full JID matches as-is, a bare JID matches every resource."""
    return listed == partner if listed.resource else listed == partner.bare


@dataclass(frozen=True, slots=True)
class Prefs:
    """One account's archiving preferences."""

    default: Policy
    always: tuple[JID, ...] = ()
    never: tuple[JID, ...] = ()

    def listed_rule(self, partner: JID) -> Policy | None:
        """ALWAYS or NEVER when a list names ``partner``; None when only the default decides."""
        if any(_matches(jid, partner) for jid in self.never):
            return Policy.NEVER
        if any(_matches(jid, partner) for jid in self.always):
            return Policy.ALWAYS
        return None

    def element(self) -> Element:
        """``<prefs/>`` with both lists present, even when empty (§2.1)."""
        prefs = Element("prefs", NS_MAM, {"default": self.default.value})
        for name, jids in (("always", self.always), ("never", self.never)):
            listed = prefs.add(name)
            for jid in jids:
                listed.add("jid", text=str(jid))
        return prefs

    def to_json(self) -> JSONValue:
        return {"default": self.default.value, "always": [str(j) for j in self.always],
                "never": [str(j) for j in self.never]}

    @classmethod
    def from_json(cls, value: JSONValue, default: Policy) -> Prefs:
        """Stored preferences; anything unreadable falls back to ``default`` with empty lists."""
        if not isinstance(value, dict):
            return cls(default)
        try:
            return cls(Policy(value.get("default")), _jids(value.get("always")), _jids(value.get("never")))
        except (ValueError, TypeError):
            return cls(default)

    @classmethod
    def parse(cls, prefs: Element) -> Prefs:
        """A client's ``<prefs/>`` (§2.1); ``bad-request`` or ``policy-violation`` when unusable."""
        try:
            default = Policy(prefs.get("default", ""))
        except ValueError:
            raise StanzaError(Condition.BAD_REQUEST, "'default' must be always, never or roster") from None
        always, never = _listed(prefs, "always"), _listed(prefs, "never")
        if len(always) + len(never) > MAX_LISTED:
            raise StanzaError(Condition.POLICY_VIOLATION, f"at most {MAX_LISTED} JIDs in <always/> and <never/>")
        return cls(default, always, never)


def _jids(value: Any) -> tuple[JID, ...]:
    if not isinstance(value, list):
        raise TypeError("a stored JID list is not a list")
    return tuple(JID.parse(text) for text in value)


def _listed(prefs: Element, name: str) -> tuple[JID, ...]:
    """The JIDs of ``<always/>`` or ``<never/>`` (absent: empty, §2.1.2), duplicates dropped."""
    found: dict[JID, None] = {}
    for listed in prefs.findall(name):
        for item in listed.findall("jid"):
            try:
                found[JID.parse(item.text.strip())] = None
            except InvalidJID:
                raise StanzaError(Condition.BAD_REQUEST, f"not a JID in <{name}/>: {item.text!r}") from None
    return tuple(found)


def effective_retention(server_days: int, account_days: int) -> int:
    """Days an account's messages are kept: the shorter of two limits, 0 when neither is set."""
    limits = [days for days in (server_days, account_days) if days > 0]
    return min(limits) if limits else 0


class ArchivePolicy:
    """One host's preferences and retention settings, and the IQ handlers that change them."""

    def __init__(self, mod: ModuleContext, prefs: KeyValueStore, retention: KeyValueStore,
                 *, default: Policy, server_retention_days: int) -> None:
        self._mod = mod
        self._prefs = prefs
        self._retention = retention
        self._default = default
        self._server_days = server_retention_days
        # Every archived message asks for both parties' preferences: keep the recently used
        # ones (this process is the only writer; a change goes through on_prefs or forget).
        self._cache: OrderedDict[str, Prefs] = OrderedDict()

    # -- reading -------------------------------------------------------------------------------
    async def prefs(self, user: str) -> Prefs:
        cached = self._cache.get(user)
        if cached is not None:
            self._cache.move_to_end(user)
            return cached
        prefs = Prefs.from_json(await self._prefs.get(user), self._default)
        self._remember(user, prefs)
        return prefs

    def _remember(self, user: str, prefs: Prefs) -> None:
        self._cache[user] = prefs
        self._cache.move_to_end(user)
        while len(self._cache) > PREFS_CACHED:
            self._cache.popitem(last=False)

    async def should_archive(self, owner: JID, partner: JID) -> bool:
        """Whether ``owner``'s archive keeps a message exchanged with ``partner``."""
        prefs = await self.prefs(owner.local)
        policy = prefs.listed_rule(partner) or prefs.default
        if policy is Policy.ROSTER:
            return partner.bare == owner.bare or await self._in_roster(owner, partner)
        return policy is Policy.ALWAYS

    async def retention_days(self, user: str) -> int:
        """How many days ``user``'s archive keeps messages (0: forever)."""
        return effective_retention(self._server_days, await self._account_days(user))

    async def _account_days(self, user: str) -> int:
        stored = await self._retention.get(user)
        return stored if isinstance(stored, int) and not isinstance(stored, bool) and stored > 0 else 0

    async def _in_roster(self, owner: JID, partner: JID) -> bool:
        try:
            roster = cast("Roster", self._mod.dependency("roster"))
        except KeyError:
            return False  # no roster module: nobody is in a roster
        item = await roster.item(owner.bare, partner.bare)
        return item is not None and item.listed

    # -- the protocol ----------------------------------------------------------------------------
    async def on_prefs(self, request: IqRequest) -> Element:
        user = request.to.local
        if request.type is IqType.SET:
            prefs = Prefs.parse(request.payload)
            self._cache.pop(user, None)  # a failed write must not leave the new value cached
            await self._prefs.set(user, prefs.to_json())
            self._remember(user, prefs)
            return prefs.element()  # §2.1: "replies with the applied preferences"
        return (await self.prefs(user)).element()

    async def on_retention(self, request: IqRequest) -> Element:
        user = request.to.local
        if request.type is IqType.SET:
            days = _parse_days(request.payload.get("days"))
            if self._server_days and days > self._server_days:
                days = self._server_days  # an account may shorten the server's limit, never extend it
            await self._retention.set(user, days or None)
        answer = Element("retention", NS_RETENTION, {"days": str(await self._account_days(user))})
        if self._server_days:
            answer.attrs["max"] = str(self._server_days)
        return answer

    async def forget(self, user: str) -> None:
        """Drop ``user``'s settings (the account was deleted)."""
        self._cache.pop(user, None)
        await self._prefs.set(user, None)
        await self._retention.set(user, None)


def _parse_days(text: str | None) -> int:
    if (text is None or not text.isascii() or not text.isdigit() or len(text) > 6
            or int(text) > MAX_RETENTION_DAYS):
        raise StanzaError(Condition.BAD_REQUEST, f"'days' must be a whole number from 0 to {MAX_RETENTION_DAYS}")
    return int(text)


class Retention:
    """Retention applied to the archive store, lazily.

    Queries never see a message older than the account's retention (the query adds it as its
    'start'), so what a client sees is exact whenever it looks.  Deleting is lazy: when an
    account's archive is appended to or queried, and at most every :data:`PURGE_INTERVAL`
    seconds per account, its expired messages are deleted oldest first, which keeps XEP-0313
    §3.2's rule that only the oldest messages go (no holes).  The module API has no timers, and
    a purge that rides on the account's own traffic costs nothing for idle accounts; the price
    is that an account nobody writes to or queries keeps its expired rows on disk until then.
    """

    def __init__(self, mod: ModuleContext, archive: ArchiveStore, policy: ArchivePolicy) -> None:
        self._mod = mod
        self._archive = archive
        self._policy = policy
        self._purged: dict[str, float] = {}  # account -> when its last purge started

    async def cutoff(self, user: str) -> float | None:
        """The oldest time ``user``'s archive still shows (None: everything)."""
        days = await self._policy.retention_days(user)
        return self._mod.now() - days * _DAY if days else None

    async def purge(self, user: str) -> None:
        """Delete ``user``'s expired messages, unless that was done less than an interval ago."""
        now = self._mod.now()
        if now - self._purged.get(user, -math.inf) < PURGE_INTERVAL:
            return
        self._purged[user] = now
        cutoff = await self.cutoff(user)
        if cutoff is None:
            return
        for _ in range(_PURGE_BATCHES):
            expired = await self._archive.query(user, end=cutoff, limit=_PURGE_BATCH)
            if expired:
                await self._archive.delete(user, [item.id for item in expired])
            if len(expired) < _PURGE_BATCH:
                return
        del self._purged[user]  # more left: the next append or query goes on

    def forget(self, user: str) -> None:
        self._purged.pop(user, None)

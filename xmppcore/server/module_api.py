"""The module contract (DESIGN: The module contract): what a feature module may touch.

A module is a file in ``xmppcore/modules/`` with a docstring naming its spec, the constants
``PROTOCOL`` (and optionally ``DEPENDS`` and an ``Options`` dataclass), and
``setup(mod: ModuleContext)``.  ``setup`` only registers; everything registered through the
context is owned by it and undone by :meth:`ModuleContext.unload`.  We chose a plain function
over a class (DESIGN §7): registrations stay explicit and greppable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..jid import JID
from ..stanza.errors import Condition
from ..stanza.model import IqType
from ..storage.api import ArchiveStore, KeyValueStore, MapStore, StoreKind
from ..xml.element import Element
from .hooks import Handler, Hook
from .host import DiscoRegistry, Host, Identity
from .iq import IqHandler, IqScope
from .keyed_lock import KeyedLock
from .writes_behind import WritesBehind

if TYPE_CHECKING:
    from .app import Server
    from .auth import AccountManager
    from .sessions import Session

__all__ = ["ModuleContext", "Xep", "Rfc", "IqScope", "IqType", "KeyedLock", "WritesBehind"]

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Xep:
    """A XEP a module implements, for ``xmppcore doap`` and the features table."""

    number: int
    version: str
    status: str = "complete"


@dataclass(frozen=True, slots=True)
class Rfc:
    """An RFC (or part of one) a module implements."""

    number: int
    section: str = ""
    status: str = "complete"


class _HostLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['host'] if self.extra else ''}] {msg}", kwargs


class ModuleContext:
    """One module loaded on one host."""

    def __init__(self, name: str, host: Host, server: Server, options: Any) -> None:
        self.name = name
        self.host = host.domain
        self.options = options
        self.log = _HostLogger(logging.getLogger(f"xmppcore.modules.{name}"), {"host": host.domain})
        self._host = host
        self._server = server
        self._undo: list[Callable[[], None]] = []

    # -- registrations (all undone on unload) ----------------------------------------------
    def iq_handler(
        self, ns: str, name: str, handler: IqHandler, *,
        types: Iterable[IqType] = (IqType.GET,), scope: IqScope = IqScope.HOST,
    ) -> None:
        """Answer IQs whose payload is ``<name xmlns=ns>`` sent to ``scope``."""
        self._undo.append(self._host.iq.register(scope, ns, name, types, handler))

    def hook(self, hook: Hook[E], handler: Handler[E], priority: int = 0, *,
             stanzas: Iterable[str] | None = None) -> None:
        """Run ``handler`` on ``hook``; higher priorities run first.  ``stanzas``: only for these
        stanza names (a hook carrying a StanzaEvent), which spares the others a call."""
        self._undo.append(self._host.bus.add(hook, handler, priority, stanzas=stanzas))

    def add_feature(self, var: str, scope: IqScope = IqScope.HOST) -> None:
        """Advertise ``var`` in disco#info (XEP-0030) for ``scope``."""
        self._add(self._host.disco.features[scope], var)

    def add_identity(self, category: str, type_: str, name: str = "", scope: IqScope = IqScope.HOST) -> None:
        """Advertise an XEP-0030 identity for ``scope``."""
        self._add(self._host.disco.identities[scope], Identity(category, type_, name))

    def add_stream_feature(self, feature: Element) -> None:
        """Offer ``feature`` in ``<stream:features/>`` once a client has authenticated."""
        self._add(self._host.stream_features, feature)

    def export(self, value: object) -> None:
        """Make ``value`` what ``dependency(<this module>)`` returns on this host."""
        self._host.exports[self.name] = value
        self._undo.append(lambda: self._host.exports.pop(self.name, None))

    async def fire(self, hook: Hook[E], event: E) -> bool:
        """Run ``hook``'s handlers on this host; True when one stopped the chain."""
        return await self._host.bus.fire(hook, event)

    def on_unload(self, callback: Callable[[], None]) -> None:
        self._undo.append(callback)

    def _add(self, items: list[Any], item: Any) -> None:
        items.append(item)
        self._undo.append(lambda: items.remove(item))

    # -- services ----------------------------------------------------------------------------
    @property
    def disco(self) -> DiscoRegistry:
        """The host's disco registry (read by the disco module)."""
        return self._host.disco

    def open_store(self, name: str, kind: StoreKind) -> KeyValueStore | MapStore | ArchiveStore:
        """A store namespaced to this host (DESIGN: Storage)."""
        driver = self._server.storage
        if kind is StoreKind.KEYVAL:
            return driver.keyval(self.host, name)
        if kind is StoreKind.MAP:
            return driver.map(self.host, name)
        return driver.archive(self.host, name)

    def dependency(self, name: str) -> Any:
        """What module ``name`` exported on this host (it must be in ``DEPENDS``)."""
        return self._host.exports[name]

    def sessions_of(self, bare: JID) -> list[Session]:
        """The bound sessions of an account."""
        return self._server.sessions.sessions_of(bare)

    async def route(self, stanza: Element) -> None:
        """Send a stanza from the server through the router (``from`` and ``to`` set)."""
        await self._server.router.route_stanza(stanza)

    async def bounce(self, stanza: Element, sender: JID, to: JID, condition: Condition, text: str | None = None) -> None:
        """Answer ``stanza`` (from ``sender`` to ``to``) with an error from ``to``."""
        await self._server.router.bounce(stanza, sender, to, condition, text)

    def components(self) -> list[str]:
        """Configured external components (XEP-0114) on subdomains of this host."""
        return self._server.components.under(self.host)

    @property
    def accounts(self) -> AccountManager:
        """The server's accounts (XEP-0077 changes them); deleting one fires ACCOUNT_DELETED."""
        return self._server.accounts

    async def account_exists(self, username: str) -> bool:
        return await self._server.accounts.exists(self.host, username)

    def account_deleted(self, username: str) -> bool:
        """Whether this server deleted the account since it started (its sessions close after
        the deletion; what a module records at their end must not bring the account back)."""
        return self._server.accounts.deleted_here(self.host, username)

    @staticmethod
    def now() -> float:
        """Wall-clock time (modules never read the clock another way, so tests can see it)."""
        return time.time()

    def unload(self) -> None:
        """Undo every registration, newest first."""
        while self._undo:
            self._undo.pop()()

"""XEP-0049: Private XML Storage — per-account XML fragments, keyed by their namespace.

A client stores any XML under ``<query xmlns='jabber:iq:private'/>`` as long as each fragment's
root carries its own namespace (§2.3); a get names the namespace and the server answers with what
is stored there, or with the requested element empty when nothing is.  Only the account itself
may read or write its data (§2.3, §5).  The reserved namespaces (``jabber:*``,
``http://jabber.org/*``, ``vcard-temp``) are refused with ``not-acceptable``, which §2.3 makes
optional and its error table names.

Fragments are kept as JSON element trees in a ``map`` store (account × namespace); the two
helpers that convert them, :func:`element_to_json` and :func:`element_from_json`, are shared
with the vCard module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from xmppcore.server import hooks
from xmppcore.server.iq import IqRequest
from xmppcore.server.module_api import IqScope, IqType, ModuleContext, Xep
from xmppcore.stanza.errors import Condition, StanzaError
from xmppcore.storage.api import JSONValue, MapStore, StorageError, StoreKind
from xmppcore.xml.element import Element
from xmppcore.xml.serializer import serialize

__all__ = [
    "PROTOCOL", "NS_PRIVATE", "Options", "is_reserved_namespace", "xml_size",
    "element_to_json", "element_from_json", "setup",
]

PROTOCOL = (Xep(49, "1.2"),)
NS_PRIVATE = "jabber:iq:private"

# XEP-0049 §2.3: "namespaces beginning with 'jabber:' or 'http://jabber.org/', as well as
# 'vcard-temp'" are reserved.
_RESERVED_PREFIXES = ("jabber:", "http://jabber.org/")
_RESERVED_NAMESPACES = frozenset({"vcard-temp"})


@dataclass(frozen=True)
class Options:
    max_size: int = 65536        # bytes of serialized XML stored under one namespace
    max_namespaces: int = 100    # namespaces one account may use

    def __post_init__(self) -> None:
        if self.max_size < 1 or self.max_namespaces < 1:
            raise ValueError("max_size and max_namespaces must be at least 1")


def is_reserved_namespace(ns: str) -> bool:
    """True for the namespaces XEP-0049 §2.3 reserves (and for no namespace at all)."""
    return not ns or ns in _RESERVED_NAMESPACES or ns.startswith(_RESERVED_PREFIXES)


def xml_size(elements: list[Element]) -> int:
    """How many bytes ``elements`` take as UTF-8 XML (what a size limit counts)."""
    return sum(len(serialize(el).encode("utf-8")) for el in elements)


# -- storing elements ----------------------------------------------------------------------------
def element_to_json(el: Element) -> list[Any]:
    """``el`` as ``[name, ns, attrs, children]``; text children stay strings."""
    return [el.name, el.ns, dict(el.attrs),
            [c if isinstance(c, str) else element_to_json(c) for c in el.children]]


def element_from_json(value: JSONValue) -> Element:
    """The element :func:`element_to_json` made; ``StorageError`` for anything else."""
    if not (isinstance(value, list) and len(value) == 4):
        raise StorageError("a stored element is not [name, ns, attrs, children]")
    name, ns, attrs, children = value
    if not (isinstance(name, str) and isinstance(ns, str) and isinstance(attrs, dict)
            and isinstance(children, list)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in attrs.items())):
        raise StorageError("a stored element has a malformed name, namespace or attributes")
    return Element(name, ns, attrs,
                   [c if isinstance(c, str) else element_from_json(c) for c in children])


def _is_empty(el: Element) -> bool:
    return not el.attrs and not any(isinstance(c, Element) or c.strip() for c in el.children)


# -- the protocol ------------------------------------------------------------------------------------
def _fragments(query: Element) -> dict[str, list[Element]]:
    """The query's child elements grouped by namespace, in document order."""
    grouped: dict[str, list[Element]] = {}
    for child in query.elements():
        grouped.setdefault(child.ns, []).append(child)
    if not grouped:
        # XEP-0049 §3 error table: "Bad Format" (bad-request) when there is no child element.
        raise StanzaError(Condition.BAD_REQUEST, "name the namespace of the private data")
    for ns in grouped:
        if is_reserved_namespace(ns):
            # §2.3 and §3: a reserved namespace is "Not Acceptable".
            raise StanzaError(Condition.NOT_ACCEPTABLE, f"the namespace {ns!r} is reserved")
    return grouped


class _PrivateStorage:
    """The handler for one host: reads and writes one account's fragments."""

    def __init__(self, store: MapStore, options: Options) -> None:
        self._store = store
        self._options = options

    async def handle(self, request: IqRequest) -> Element | None:
        if request.sender.bare != request.to.bare:
            # §2.3: another user's data is "Forbidden" (preferred over service-unavailable).
            raise StanzaError(Condition.FORBIDDEN, "private data belongs to its account alone")
        fragments = _fragments(request.payload)
        user = request.to.local
        if request.type is IqType.GET:
            return await self._get(user, fragments)
        await self._set(user, fragments)
        return None

    async def _get(self, user: str, fragments: dict[str, list[Element]]) -> Element:
        query = Element("query", NS_PRIVATE)
        for ns, asked in fragments.items():
            stored = await self._store.get(user, ns)
            if isinstance(stored, list) and stored:
                for item in stored:
                    query.append(element_from_json(item))
            else:
                # Nothing stored: the element asked for, empty.  §2.3 is silent on this case;
                # it is what ejabberd answers and what clients such as bookmark readers expect.
                query.append(Element(asked[0].name, ns))
        return query

    async def _set(self, user: str, fragments: dict[str, list[Element]]) -> None:
        # Check everything before writing anything: a refused set changes nothing.
        for ns, elements in fragments.items():
            if xml_size(elements) > self._options.max_size:
                raise StanzaError(Condition.NOT_ACCEPTABLE,
                                  f"private data over {self._options.max_size} bytes in {ns!r}")
        kept = {ns: els for ns, els in fragments.items() if not all(_is_empty(el) for el in els)}
        await self._check_namespace_quota(user, set(kept))
        for ns in fragments:
            # An empty element clears the namespace: a later get answers with it empty anyway.
            value = [element_to_json(el) for el in kept[ns]] if ns in kept else None
            await self._store.set(user, ns, value)

    async def _check_namespace_quota(self, user: str, namespaces: set[str]) -> None:
        new = [ns for ns in namespaces if await self._store.get(user, ns) is None]
        if not new:
            return
        in_use = len(await self._store.get_all(user))
        if in_use + len(new) > self._options.max_namespaces:
            raise StanzaError(Condition.NOT_ACCEPTABLE,
                              f"at most {self._options.max_namespaces} namespaces of private data")


def setup(mod: ModuleContext) -> None:
    options: Options = mod.options
    store = cast(MapStore, mod.open_store("private", StoreKind.MAP))
    handler = _PrivateStorage(store, options)

    async def forget_account(event: hooks.AccountEvent) -> None:
        await store.delete_user(event.jid.local)  # a deleted account's private data goes with it
    mod.add_feature(NS_PRIVATE, IqScope.ACCOUNT)
    mod.iq_handler(NS_PRIVATE, "query", handler.handle, types=(IqType.GET, IqType.SET),
                   scope=IqScope.ACCOUNT)
    mod.hook(hooks.ACCOUNT_DELETED, forget_account)

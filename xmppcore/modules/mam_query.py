"""XEP-0313 §4: answering Message Archive Management queries — the page, the results, ``<fin/>``.

The result set of a query is every archived message of the account that its form lets through
(and that retention has not expired).  RSM (XEP-0059, §4.3 here) picks a page of it: forwards
after ``<after/>`` (or from ``<index/>``), backwards before ``<before/>``, an empty ``<before/>``
being the last page.  The page holds at most ``<max/>`` messages, never more than the server's
``max_page`` (also the page size when the client gives none).

Each message of the page goes to the querying resource as ``<message><result id='…'>
<forwarded><delay stamp='…'/><message …/></forwarded></result></message>`` (§4.2; the stamp is
when it was archived), in chronological order (newest first with ``<flip-page/>``), routed like
any stanza so it reaches the session ahead of the IQ result, which carries
``<fin complete='…'><set>first, last, count</set></fin>``.  ``complete`` is true when the page
reaches the end of the result set in the direction of paging: the newest message when paging
forwards, the oldest when paging backwards (§4.3.2).  Counts and indexes are exact.

Every id the query names — ``after-id``, ``before-id``, ``ids``, RSM ``<after/>`` and
``<before/>`` — must be in the archive, or the answer is ``item-not-found`` (§4.1.3, §4.3.2).
``with`` matches the conversation partner: a bare JID any of its resources, a full JID only that
one; the account's own bare JID matches only messages to itself (§4.1.1).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from xmppcore.jid import JID
from xmppcore.modules.mam_form import (
    NS_MAM,
    ArchiveQuery,
    QueryForm,
    form_fields,
    parse_query,
)
from xmppcore.modules.mam_ids import ArchiveIds, IdCodec
from xmppcore.modules.mam_prefs import Retention
from xmppcore.modules.offline import NS_DELAY, decode_stanza
from xmppcore.server.iq import IqRequest
from xmppcore.server.module_api import IqType, ModuleContext
from xmppcore.stanza.datetime_profile import utc_datetime
from xmppcore.stanza.errors import Condition, StanzaError
from xmppcore.stanza.rsm import RsmPage, RsmRequest
from xmppcore.storage.api import ArchiveItem, ArchiveStore
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT

__all__ = ["NS_FORWARD", "ArchiveQueries", "Filters", "Page", "Selection", "select_page"]

NS_FORWARD = "urn:xmpp:forward:0"  # XEP-0297
_SCAN_BATCH = 200  # items read at a time while a full-JID 'with' filters them


@dataclass(frozen=True, slots=True)
class Filters:
    """A query's form in storage terms (storage ids; exclusive id bounds)."""

    start: float | None = None
    end: float | None = None
    with_bare: str | None = None
    with_full: str | None = None  # a full-JID 'with': compared with each item's partner
    after: str | None = None
    before: str | None = None
    ids: tuple[str, ...] | None = None


def _later(a: str | None, b: str | None) -> str | None:
    # Storage ids sort as strings in insertion order (storage/api.py).
    return b if a is None else a if b is None else max(a, b)


def _earlier(a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else min(a, b)


class Selection:
    """The result set of one query: an account's archive seen through :class:`Filters`."""

    def __init__(self, archive: ArchiveStore, user: str, filters: Filters) -> None:
        self._archive = archive
        self._user = user
        self._f = filters

    async def _query(self, *, after: str | None, before: str | None, limit: int | None = None,
                     reverse: bool = False) -> list[ArchiveItem]:
        f = self._f
        return await self._archive.query(
            self._user, start=f.start, end=f.end, with_jid=f.with_bare, ids=f.ids,
            after_id=_later(f.after, after), before_id=_earlier(f.before, before),
            limit=limit, reverse=reverse)

    def _keeps(self, item: ArchiveItem) -> bool:
        if self._f.with_full is None:
            return True
        return isinstance(item.value, dict) and item.value.get("with") == self._f.with_full

    async def page(self, *, after: str | None, before: str | None, limit: int, reverse: bool) -> list[ArchiveItem]:
        """Up to ``limit`` items strictly between ``after`` and ``before``, from the far end
        in the direction of paging (the newest first when ``reverse``)."""
        found: list[ArchiveItem] = []
        while len(found) < limit:
            batch_size = limit - len(found) if self._f.with_full is None else max(limit, _SCAN_BATCH)
            batch = await self._query(after=after, before=before, limit=batch_size, reverse=reverse)
            found += [item for item in batch if self._keeps(item)]
            if len(batch) < batch_size:
                break
            if reverse:
                before = batch[-1].id
            else:
                after = batch[-1].id
        return found[:limit]

    async def count(self, *, before: str | None = None) -> int:
        """How many items the set holds (only those before ``before``, when given)."""
        # TODO(storage): ArchiveStore.count takes no filters yet, so this reads the matching
        # rows; with a filtered count it becomes one SELECT COUNT(*).
        items = await self._query(after=None, before=before)
        return sum(1 for item in items if self._keeps(item))


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a result set, oldest first, and what RSM says about it."""

    items: list[ArchiveItem]
    complete: bool
    count: int
    first_index: int | None


async def select_page(selection: Selection, rsm: RsmRequest, max_page: int, *,
                      after: str | None = None, before: str | None = None) -> Page:
    """The page ``rsm`` asks for; ``after``/``before`` are its UIDs as storage ids."""
    limit = max_page if rsm.max is None else min(rsm.max, max_page)
    count = await selection.count()
    if rsm.backwards:
        found = await selection.page(after=after, before=before, limit=limit + 1, reverse=True)
        more = len(found) > limit
        items = found[:limit][::-1]
    else:
        skip = rsm.index or 0
        if skip >= count:
            found = []  # XEP-0059 §2.6: an index beyond the set gives an empty page
        else:
            found = await selection.page(after=after, before=None, limit=skip + limit + 1, reverse=False)
        more = len(found) > skip + limit
        items = found[skip:skip + limit]
    page = Page(items, complete=not more, count=count, first_index=None)
    return replace(page, first_index=await _first_index(selection, rsm, page, count))


async def _first_index(selection: Selection, rsm: RsmRequest, page: Page, count: int) -> int | None:
    """The position of the page's first item in the set, counting only when it is not known."""
    if not page.items:
        return None
    if rsm.index is not None:
        return rsm.index
    if rsm.backwards:
        if page.complete and rsm.after is None:
            return 0  # the page reaches back to the start of the set
    elif rsm.after is None:
        return 0      # the first page
    elif page.complete:
        return count - len(page.items)  # the page reaches the end of the set
    return await selection.count(before=page.items[0].id)


class ArchiveQueries:
    """The query, form and metadata handlers of one host's archives."""

    def __init__(self, mod: ModuleContext, archive: ArchiveStore, ids: ArchiveIds,
                 retention: Retention, *, max_page: int) -> None:
        self._mod = mod
        self._archive = archive
        self._ids = ids
        self._retention = retention
        self._max_page = max_page

    async def on_query(self, request: IqRequest) -> Element:
        if request.type is IqType.GET:
            return form_fields()  # §4.1.5
        query = parse_query(request.payload, max_ids=self._max_page)
        user = request.to.local
        await self._retention.purge(user)
        codec = await self._ids.codec()
        filters, after, before = await self._resolve(user, query, codec)
        selection = Selection(self._archive, user, filters)
        page = await select_page(selection, query.rsm, self._max_page, after=after, before=before)
        await self._send_results(request, query, page, codec)
        return _fin(page, codec)

    async def _resolve(self, user: str, query: ArchiveQuery, codec: IdCodec) -> tuple[Filters, str | None, str | None]:
        """The form as storage filters and the RSM UIDs as storage ids; item-not-found for ids
        the archive does not hold (§4.1.3, §4.3.2)."""
        form, rsm = query.form, query.rsm
        named = [form.after_id, form.before_id, rsm.after, rsm.before or None, *(form.ids or ())]
        storage_ids = {name: _decoded(codec, name) for name in named if name is not None}
        cutoff = await self._retention.cutoff(user)
        if storage_ids:
            # "in the archive", whatever the form's filters (an expired message is no longer there)
            present = await self._archive.query(user, ids=list(storage_ids.values()), start=cutoff)
            if len(present) < len(set(storage_ids.values())):
                raise StanzaError(Condition.ITEM_NOT_FOUND, "no message with that id in the archive")

        def storage(name: str | None) -> str | None:
            return None if not name else storage_ids[name]

        with_bare, with_full = _with_filters(form)
        filters = Filters(
            start=_later_time(form.start, cutoff), end=form.end, with_bare=with_bare, with_full=with_full,
            after=storage(form.after_id), before=storage(form.before_id),
            ids=None if form.ids is None else tuple(storage_ids[name] for name in form.ids))
        return filters, storage(rsm.after), storage(rsm.before)

    async def _send_results(self, request: IqRequest, query: ArchiveQuery, page: Page, codec: IdCodec) -> None:
        """§4.2: one message per item, each routed (so in order) before the IQ result."""
        owner = request.to.bare
        for item in reversed(page.items) if query.flip else page.items:
            if not any(s.jid == request.sender for s in self._mod.sessions_of(request.sender.bare)):
                return  # the querying resource went away: nobody to send the rest to
            message = Element("message", NS_CLIENT, {"from": str(owner), "to": str(request.sender)})
            result = message.add("result", NS_MAM, {"id": codec.encode(item.id)})
            if query.queryid is not None:
                result.attrs["queryid"] = query.queryid
            forwarded = result.add("forwarded", NS_FORWARD)
            forwarded.add("delay", NS_DELAY, {"stamp": utc_datetime(item.when)})
            stanza = decode_stanza(item.value)
            if stanza is None:
                # §3.2: a placeholder keeps the id, time and position of what cannot be shown.
                self._mod.log.warning("archived message %s of %s is damaged", item.id, owner)
            else:
                forwarded.append(stanza)
            await self._mod.route(message)

    async def on_metadata(self, request: IqRequest) -> Element:
        """§5 (part of #extended): the first and last message of the archive."""
        user = request.to.local
        start = await self._retention.cutoff(user)
        codec = await self._ids.codec()
        metadata = Element("metadata", NS_MAM)
        for name, reverse in (("start", False), ("end", True)):
            for item in await self._archive.query(user, start=start, limit=1, reverse=reverse):
                metadata.add(name, attrs={"id": codec.encode(item.id), "timestamp": utc_datetime(item.when)})
        return metadata


def _decoded(codec: IdCodec, client_id: str) -> str:
    storage_id = codec.decode(client_id)
    if storage_id is None:
        raise StanzaError(Condition.ITEM_NOT_FOUND, "no message with that id in the archive")
    return storage_id


def _later_time(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _with_filters(form: QueryForm) -> tuple[str | None, str | None]:
    """'with' as (bare JID for the store, full JID to compare with each item's partner)."""
    jid: JID | None = form.with_jid
    if jid is None:
        return None, None
    return str(jid.bare), (str(jid) if jid.resource else None)


def _fin(page: Page, codec: IdCodec) -> Element:
    """§4.3: ``<fin/>`` with the RSM description of the page."""
    fin = Element("fin", NS_MAM, {"complete": "true" if page.complete else "false"})
    first = codec.encode(page.items[0].id) if page.items else None
    last = codec.encode(page.items[-1].id) if page.items else None
    fin.append(RsmPage(first=first, first_index=page.first_index, last=last, count=page.count,
                       exact=True).element())
    return fin

"""XEP-0313 §4: what a Message Archive Management query asks for — its data form and RSM set.

A query is ``<query xmlns='urn:xmpp:mam:2' queryid='…'>`` holding an optional XEP-0004 form
(FORM_TYPE ``urn:xmpp:mam:2``; fields ``with``, ``start``, ``end``, ``before-id``, ``after-id``,
``ids``, §4.1), an optional XEP-0059 ``<set/>`` (§4.3) and an optional ``<flip-page/>`` (§4.3.4).

- ``with`` is a JID (§4.1.1); ``start``/``end`` are XEP-0082 DateTimes (§4.1.2), anything else
  is ``bad-request``.
- A field this server does not know is ``feature-not-implemented`` (§4.1.5: "If a client
  includes a form field that the server does not recognise, the server MUST respond with a
  'feature-not-implemented' error").  A field sent without a value counts as absent.
- ``ids`` takes at most ``max_ids`` values (the server's page limit), and ``queryid``, echoed in
  every result, at most 256 characters.

The ids are kept as the client wrote them; whether they exist is the query's business
(``item-not-found``, §4.1.3).
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from xmppcore.jid import JID, InvalidJID
from xmppcore.stanza.errors import Condition, StanzaError
from xmppcore.stanza.rsm import RsmError, RsmRequest, find_request
from xmppcore.xml.element import Element

__all__ = [
    "NS_DATA",
    "NS_MAM",
    "NS_XDATA_VALIDATE",
    "ArchiveQuery",
    "QueryForm",
    "form_fields",
    "parse_datetime",
    "parse_query",
]

NS_MAM = "urn:xmpp:mam:2"
NS_DATA = "jabber:x:data"                                        # XEP-0004
NS_XDATA_VALIDATE = "http://jabber.org/protocol/xdata-validate"  # XEP-0122

# XEP-0082 §3.3 DateTime: CCYY-MM-DDThh:mm:ss[.sss]TZD, TZD being Z or (+|-)hh:mm.
_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-](\d{2}):(\d{2}))", re.ASCII)
_MAX_QUERYID = 256  # characters: it is echoed in every result, so it must stay small
_SINGLE_FIELDS = ("with", "start", "end", "before-id", "after-id")
_KNOWN_FIELDS = frozenset({"FORM_TYPE", *_SINGLE_FIELDS, "ids"})


@dataclass(frozen=True, slots=True)
class QueryForm:
    """The filters of the form; None where the client gave none."""

    with_jid: JID | None = None
    start: float | None = None
    end: float | None = None
    after_id: str | None = None
    before_id: str | None = None
    ids: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ArchiveQuery:
    """A whole ``<query/>``: the form, the page asked for, and how to send it."""

    form: QueryForm
    rsm: RsmRequest
    flip: bool = False          # §4.3.4: send the page newest first
    queryid: str | None = None  # echoed in every result (§4.2)


def parse_datetime(text: str) -> float:
    """An XEP-0082 DateTime as Unix time; ``ValueError`` when it is not one."""
    match = _DATETIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an XEP-0082 DateTime: {text!r}")
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    fraction = match.group(7) or ""
    offset = datetime.timedelta(0)
    if match.group(8) != "Z":
        hours, minutes = int(match.group(9)), int(match.group(10))
        if hours > 23 or minutes > 59:
            raise ValueError(f"not a time zone offset: {match.group(8)!r}")
        offset = datetime.timedelta(hours=hours, minutes=minutes)
        if match.group(8).startswith("-"):
            offset = -offset
    moment = datetime.datetime(year, month, day, hour, minute, second,
                               tzinfo=datetime.timezone(offset))  # ValueError for 2024-02-30 etc.
    return moment.timestamp() + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def parse_query(query: Element, *, max_ids: int) -> ArchiveQuery:
    """Read a ``<query/>``; ``StanzaError`` for what cannot be answered."""
    if query.get("node") is not None:
        # §6.1.3: 'node' addresses pubsub archives (XEP-0442); an account's archive has none.
        raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, "this archive has no nodes")
    queryid = query.get("queryid")
    if queryid is not None and len(queryid) > _MAX_QUERYID:
        raise StanzaError(Condition.BAD_REQUEST, f"a queryid of at most {_MAX_QUERYID} characters")
    try:
        rsm = find_request(query) or RsmRequest()
    except RsmError as err:
        raise StanzaError(Condition.BAD_REQUEST, str(err)) from None
    return ArchiveQuery(
        form=_parse_form(query, max_ids),
        rsm=rsm,
        flip=query.find("flip-page") is not None,
        queryid=queryid,
    )


def _parse_form(query: Element, max_ids: int) -> QueryForm:
    forms = query.findall("x", NS_DATA)
    if not forms:
        return QueryForm()
    if len(forms) > 1 or forms[0].get("type", "submit") != "submit":
        raise StanzaError(Condition.BAD_REQUEST, "a query carries at most one submitted form")
    values = _field_values(forms[0])
    form_type = values.pop("FORM_TYPE", [NS_MAM])
    if form_type != [NS_MAM]:
        raise StanzaError(Condition.BAD_REQUEST, f"FORM_TYPE must be {NS_MAM}")
    unknown = sorted(set(values) - _KNOWN_FIELDS)
    if unknown:
        raise StanzaError(Condition.FEATURE_NOT_IMPLEMENTED, f"unknown query field {unknown[0]!r}")
    single = {name: _single(values, name) for name in _SINGLE_FIELDS}
    ids = [value for value in values.get("ids", []) if value]
    if len(ids) > max_ids:
        raise StanzaError(Condition.BAD_REQUEST, f"at most {max_ids} values in 'ids'")
    return QueryForm(
        with_jid=_jid(single["with"]),
        start=_time(single["start"], "start"),
        end=_time(single["end"], "end"),
        after_id=single["after-id"],
        before_id=single["before-id"],
        ids=tuple(ids) if ids else None,
    )


def _field_values(form: Element) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for field in form.findall("field"):
        var = field.get("var")
        if var is None or var in values:
            raise StanzaError(Condition.BAD_REQUEST, "each submitted field needs its own 'var'")
        values[var] = [value.text for value in field.findall("value")]
    return values


def _single(values: dict[str, list[str]], name: str) -> str | None:
    given = [value for value in values.get(name, []) if value.strip()]
    if len(given) > 1:
        raise StanzaError(Condition.BAD_REQUEST, f"the '{name}' field takes one value")
    return given[0].strip() if given else None


def _jid(text: str | None) -> JID | None:
    if text is None:
        return None
    try:
        return JID.parse(text)
    except InvalidJID:
        raise StanzaError(Condition.BAD_REQUEST, f"'with' is not a JID: {text!r}") from None


def _time(text: str | None, name: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_datetime(text)
    except ValueError:
        raise StanzaError(Condition.BAD_REQUEST, f"'{name}' is not an XEP-0082 DateTime: {text!r}") from None


def form_fields() -> Element:
    """§4.1.5: the form a client may fill in (answer to ``<iq type='get'><query/></iq>``)."""
    query = Element("query", NS_MAM)
    form = query.add("x", NS_DATA, {"type": "form"})
    form.add("field", attrs={"type": "hidden", "var": "FORM_TYPE"}).add("value", text=NS_MAM)
    for var, kind in (("with", "jid-single"), ("start", "text-single"), ("end", "text-single"),
                      ("before-id", "text-single"), ("after-id", "text-single")):
        form.add("field", attrs={"type": kind, "var": var})
    ids = form.add("field", attrs={"type": "list-multi", "var": "ids"})
    # §4.1.5: "the server MUST include a XEP-0122 <validate/> element that signals the list is
    # open to arbitrary values".
    ids.add("validate", NS_XDATA_VALIDATE, {"datatype": "xs:string"}).add("open")
    return query

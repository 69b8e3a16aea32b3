"""XEP-0202: Entity Time — the server's UTC time and its offset from UTC."""

from __future__ import annotations

import datetime

from xmppcore.server.iq import IqRequest
from xmppcore.server.module_api import ModuleContext, Xep
from xmppcore.stanza.datetime_profile import utc_datetime
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_TIME

PROTOCOL = (Xep(202, "2.0"),)


def format_time(now: float) -> tuple[str, str]:
    """``(tzo, utc)`` per XEP-0082: offset as ``+hh:mm``, UTC with milliseconds and ``Z``."""
    local = datetime.datetime.fromtimestamp(now).astimezone()
    offset = local.utcoffset() or datetime.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    tzo = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return tzo, utc_datetime(now)


def setup(mod: ModuleContext) -> None:
    async def entity_time(request: IqRequest) -> Element:
        tzo, utc = format_time(mod.now())
        query = Element("time", NS_TIME)
        query.add("tzo", text=tzo)
        query.add("utc", text=utc)
        return query

    mod.add_feature(NS_TIME)
    mod.iq_handler(NS_TIME, "time", entity_time)

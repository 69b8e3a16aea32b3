"""XEP-0092: Software Version — name and version of the server (the OS only when configured)."""

from __future__ import annotations

import platform
from dataclasses import dataclass

from xmppcore import __version__
from xmppcore.server.iq import IqRequest
from xmppcore.server.module_api import IqType, ModuleContext, Xep
from xmppcore.stanza.errors import Condition, StanzaError
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_VERSION

PROTOCOL = (Xep(92, "1.1"),)


@dataclass(frozen=True)
class Options:
    show_os: bool = False   # XEP-0092 §5: revealing the OS helps attackers; off by default


def setup(mod: ModuleContext) -> None:
    options: Options = mod.options
    os_name = f"{platform.system()} {platform.release()}".strip() if options.show_os else ""

    async def version(request: IqRequest) -> Element:
        if request.type is IqType.SET:
            raise StanzaError(Condition.NOT_ALLOWED, "the software version is read-only")
        query = Element("query", NS_VERSION)
        query.add("name", text="xmppcore")
        query.add("version", text=__version__)
        if os_name:
            query.add("os", text=os_name)
        return query

    mod.add_feature(NS_VERSION)
    mod.iq_handler(NS_VERSION, "query", version, types=(IqType.GET, IqType.SET))

"""The notifier end to end against xmppcore: a webhook POST arrives at the JID as a chat message.

(Lines from stdin are covered with a real process in ``test_process.py``.)
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from bots.notifier import Notifier

from ..integration.clients import SlixPool
from ..integration.conftest import RunningServer
from .conftest import BotPool, bot_settings
from .test_webhook import http, post

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_webhook_post_is_delivered(xmppcore: RunningServer, bots: BotPool) -> None:
    notifier = Notifier()
    settings = replace(bot_settings(xmppcore, "notifier"),
                       options=MappingProxyType({"to": "bob@localhost", "webhook": "127.0.0.1:0"}))
    async with SlixPool(xmppcore) as clients:
        bob = await clients.login("bob", "desk")
        await bob.announce()
        await bots.start(notifier.bot, settings)
        await notifier.webhook_ready.wait()
        assert notifier.webhook_address is not None
        body = "deploy of 1.4.2 finished\n  in 3 min"
        assert await http(notifier.webhook_address, post(body.encode())) == (202, "queued\n")
        received = await bob.receive(body)
        assert received["type"] == "chat"
        assert str(received["from"]) == notifier.bot.xmpp.boundjid.full
        assert (await http(notifier.webhook_address, b"GET / HTTP/1.1\r\n\r\n"))[0] == 405

"""The typed event bus: priorities, Handled.STOP, removal, and isolation of broken handlers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest

from xmppcore.server.hooks import EventBus, Handled, Hook

PING: Hook[list[str]] = Hook("test/ping")
OTHER: Hook[list[str]] = Hook("test/other")


def recorder(name: str, outcome: Handled | None = None) -> Callable[[list[str]], Awaitable[Handled | None]]:
    """A handler that appends ``name`` to the event (a list) and returns ``outcome``."""
    async def handler(seen: list[str]) -> Handled | None:
        seen.append(name)
        return outcome

    return handler


async def test_handlers_run_from_the_highest_priority_then_in_registration_order() -> None:
    bus = EventBus()
    bus.add(PING, recorder("low"), priority=-10)
    bus.add(PING, recorder("first-default"))
    bus.add(PING, recorder("high"), priority=10)
    bus.add(PING, recorder("second-default"))
    seen: list[str] = []
    assert await bus.fire(PING, seen) is False
    assert seen == ["high", "first-default", "second-default", "low"]


async def test_stop_ends_the_chain() -> None:
    bus = EventBus()
    bus.add(PING, recorder("high"), priority=5)
    bus.add(PING, recorder("stopper", Handled.STOP))
    bus.add(PING, recorder("never"), priority=-5)
    seen: list[str] = []
    assert await bus.fire(PING, seen) is True
    assert seen == ["high", "stopper"]


async def test_hooks_are_separate() -> None:
    bus = EventBus()
    bus.add(OTHER, recorder("other", Handled.STOP))
    seen: list[str] = []
    assert await bus.fire(PING, seen) is False
    assert seen == [] and not bus.has_handlers(PING) and bus.has_handlers(OTHER)


async def test_the_remover_takes_the_handler_away() -> None:
    bus = EventBus()
    remove = bus.add(PING, recorder("gone", Handled.STOP), priority=1)
    bus.add(PING, recorder("stays"))
    remove()
    remove()  # twice is harmless
    seen: list[str] = []
    assert await bus.fire(PING, seen) is False
    assert seen == ["stays"]


async def test_the_same_function_twice_is_removed_one_registration_at_a_time() -> None:
    bus = EventBus()
    handler = recorder("h")
    remove_first = bus.add(PING, handler)
    bus.add(PING, handler)
    remove_first()
    seen: list[str] = []
    await bus.fire(PING, seen)
    assert seen == ["h"]


async def test_a_handler_removed_while_firing_does_not_disturb_the_chain() -> None:
    bus = EventBus()
    removers: list[Callable[[], None]] = []

    async def remove_the_next(seen: list[str]) -> None:
        seen.append("remover")
        removers[0]()

    bus.add(PING, remove_the_next, priority=1)
    removers.append(bus.add(PING, recorder("removed")))
    first: list[str] = []
    await bus.fire(PING, first)  # removing a handler mid-chain raises nothing
    assert first[:1] == ["remover"]
    second: list[str] = []
    await bus.fire(PING, second)
    assert second == ["remover"]


async def test_a_crashing_handler_does_not_stop_the_chain(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()

    async def broken(seen: list[str]) -> None:
        seen.append("broken")
        raise RuntimeError("bug in a module")

    bus.add(PING, broken, priority=1)
    bus.add(PING, recorder("after", Handled.STOP))
    seen: list[str] = []
    assert await bus.fire(PING, seen) is True
    assert seen == ["broken", "after"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "test/ping" in errors[0].getMessage()


async def test_a_handler_for_some_stanzas_is_called_for_those_only_and_in_priority_order() -> None:
    from xmppcore.jid import JID
    from xmppcore.server.hooks import StanzaEvent
    from xmppcore.xml.element import Element

    stanzas: Hook[StanzaEvent] = Hook("test/stanzas")
    bus = EventBus()
    seen: list[str] = []

    def named(name: str) -> Callable[[StanzaEvent], Awaitable[Handled | None]]:
        async def handler(event: StanzaEvent) -> Handled | None:
            seen.append(f"{name}:{event.stanza.name}")
            return None
        return handler

    bus.add(stanzas, named("any-low"), priority=-1)
    bus.add(stanzas, named("presence"), stanzas=("presence",))
    bus.add(stanzas, named("message-high"), priority=5, stanzas=["message"])
    remove_any = bus.add(stanzas, named("any"))
    jid = JID.parse("a@localhost")
    for name in ("message", "presence", "iq"):
        await bus.fire(stanzas, StanzaEvent(Element(name), jid, jid))
    assert seen == ["message-high:message", "any:message", "any-low:message",
                    "presence:presence", "any:presence", "any-low:presence",
                    "any:iq", "any-low:iq"]
    remove_any()
    seen.clear()
    await bus.fire(stanzas, StanzaEvent(Element("presence"), jid, jid))
    assert seen == ["presence:presence", "any-low:presence"]
    assert bus.has_handlers(stanzas)

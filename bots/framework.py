"""The :class:`Bot`: chat commands, hooks and a presence policy on top of a slixmpp stream.

A bot answers one-to-one messages (RFC 6121 §5: types ``chat`` and ``normal``) by running the
command the first word names, and replies to the sender with the same type and thread
(§5.2.2, §5.2.5).  Messages stamped with a XEP-0203 delay (offline storage) are not answered.
Group-chat messages, delayed or not, go to the ``on_groupchat`` hooks.  Subscription requests
(RFC 6121 §3.1) are approved, with a request back, for JIDs the bot would answer, and refused
for the rest.  See ``bots/README.md`` for a five-minute guide.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from slixmpp import JID
from slixmpp.basexmpp import BaseXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.stanza import Message, Presence

from .client import make_client
from .commands import CommandError, CommandRegistry, Invocation, bare_jid
from .runner import BotError, Link, configure_logging
from .settings import ConfigError, Mode, Option, Settings, load_settings

__all__ = ["DELAY_NS", "Bot", "Context", "is_delayed"]

_F = TypeVar("_F", bound=Callable[..., Any])
BotHook = Callable[["Bot"], Awaitable[None] | None]
DELAY_NS = "urn:xmpp:delay"  # XEP-0203
MessageKind = Literal["chat", "normal", "headline", "groupchat"]  # RFC 6121 §5.2.2
_MODE_NAMES = {Mode.CLIENT: "an account (--jid)", Mode.COMPONENT: "a component (--component)"}


@dataclass(frozen=True, slots=True)
class Context:
    """Who asked, and how to answer: the first argument of every command and chat hook."""

    bot: Bot
    sender: str                     # the full JID the message came from
    message: Message | None = None  # the stanza, when there is one

    @property
    def sender_bare(self) -> str:
        return bare_jid(self.sender)

    def reply(self, text: str) -> None:
        """Send ``text`` back: to the sender with the message's type and thread, or to the
        room for a group-chat message (XEP-0045 §7.4)."""
        message = self.message
        if message is None:
            self.bot.send(self.sender, text)
            return
        kind = cast(MessageKind, str(message["type"] or "normal"))
        to = message["from"].bare if kind == "groupchat" else message["from"]
        self.bot.send(str(to), text, kind=kind, thread=str(message["thread"] or ""),
                      sender=str(message["to"]))


def is_delayed(message: Message) -> bool:
    """Whether ``message`` carries a XEP-0203 delay: offline storage, or a room's history
    (XEP-0045 §7.2.15), rather than something said just now."""
    return message.xml.find(f"{{{DELAY_NS}}}delay") is not None


async def _await(result: object) -> object:
    return await result if inspect.isawaitable(result) else result


class Bot:
    """A chat bot.  Register commands and hooks with the decorators, then :meth:`main`."""

    def __init__(self, name: str, *, description: str = "", admins: Collection[str] = (),
                 options: Sequence[Option] = (), plugins: Sequence[str] = (),
                 modes: Collection[Mode] = tuple(Mode)) -> None:
        self.name = name
        self.description = description
        self.options = tuple(options)
        self.plugins = tuple(plugins)          # extra slixmpp plugins, e.g. "xep_0045"
        self.modes = frozenset(modes)          # how it may run: as an account, a component
        self.log = logging.getLogger(f"bots.{name}")
        self.commands = CommandRegistry()
        self._admins = frozenset(bare_jid(jid) for jid in admins)
        self._settings: Settings | None = None
        self._xmpp: BaseXMPP | None = None
        self._start_hooks: list[BotHook] = []
        self._chat_hooks: list[Callable[[Context, str], object]] = []
        self._groupchat_hooks: list[Callable[[Bot, Message], object]] = []
        self._background: list[Callable[[Bot], Awaitable[None]]] = []
        self._online = asyncio.Event()
        self._stop = asyncio.Event()
        self._failure: str | None = None  # why a background task ended the bot
        self.started_at = time.monotonic()  # when serve() began (uptime)

    # -- registration --------------------------------------------------------------------------
    def command(self, name: str, *, help: str, allowed: Collection[str] | None = None
                ) -> Callable[[_F], _F]:
        """Decorator: make ``func(ctx, ...)`` the command ``name``.  ``allowed``: bare JIDs that
        may use it besides the admins (``None``: everyone; empty: admins only)."""
        def register(func: _F) -> _F:
            self.commands.add(name, func, help=help, allowed=allowed)
            return func
        return register

    def on_chat(self, func: _F) -> _F:
        """Decorator: ``func(ctx, text)`` answers chat lines that name no command."""
        self._chat_hooks.append(func)
        return func

    def on_groupchat(self, func: _F) -> _F:
        """Decorator: ``func(bot, message)`` sees every ``groupchat`` message (XEP-0045 §7.4)."""
        self._groupchat_hooks.append(func)
        return func

    def on_start(self, func: _F) -> _F:
        """Decorator: ``func(bot)`` runs each time a session is ready (after every reconnection)."""
        self._start_hooks.append(func)
        return func

    def background(self, func: _F) -> _F:
        """Decorator: ``async func(bot)`` runs alongside the bot from :meth:`serve` until it ends."""
        self._background.append(func)
        return func

    # -- what a running bot offers -------------------------------------------------------------
    @property
    def xmpp(self) -> BaseXMPP:
        """The slixmpp stream (``ClientXMPP`` or ``ComponentXMPP``); set by :meth:`serve`."""
        if self._xmpp is None:
            raise RuntimeError(f"bot {self.name!r} is not running")
        return self._xmpp

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            raise RuntimeError(f"bot {self.name!r} is not running")
        return self._settings

    @property
    def admins(self) -> frozenset[str]:
        """Bare JIDs allowed every command: the constructor's and the settings'."""
        return self._admins | (self._settings.admins if self._settings else frozenset())

    @property
    def is_component(self) -> bool:
        return self.settings.mode is Mode.COMPONENT

    @property
    def online(self) -> bool:
        return self._online.is_set()

    async def wait_online(self) -> None:
        await self._online.wait()

    def send(self, to: str, text: str, *, kind: MessageKind = "chat", thread: str = "",
             sender: str | None = None) -> None:
        """Send a message; a component sends from ``sender`` (default: its domain)."""
        message = self.xmpp.make_message(mto=JID(to), mbody=text, mtype=kind)
        if self.is_component:
            message["from"] = JID(sender or self.settings.jid)
        if thread:
            message["thread"] = thread
        message.send()

    def may_subscribe(self, jid: str) -> bool:
        """Whether to approve ``jid``'s subscription request: whoever the bot would answer
        (an admin, anyone when it has a chat hook or an open command, else the allowed)."""
        return (bare_jid(jid) in self.admins or bool(self._chat_hooks)
                or any(command.permits(jid, self.admins) for command in self.commands))

    async def run_command(self, ctx: Context, text: str) -> str | None:
        """The answer to ``text`` as a command from ``ctx.sender``: help, a refusal, or what
        the command returned (``None``: nothing to send)."""
        resolution = self.commands.resolve(text, ctx.sender, self.admins)
        if resolution is None:
            return self.commands.unknown(text).text
        if not isinstance(resolution, Invocation):
            if resolution.refusal is not None:
                self.log.info("%s from %s: %s", resolution.refusal.value, ctx.sender_bare,
                              text.split()[0])
            return resolution.text
        command = resolution.command
        try:
            result = await _await(command.handler(ctx, *resolution.arguments))
        except CommandError as exc:
            return str(exc)
        except Exception:
            self.log.exception("command %s from %s failed", command.name, ctx.sender_bare)
            return f"Sorry, {command.name} failed."
        return None if result is None else str(result)

    # -- running -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`serve` to end the stream cleanly and return."""
        self._stop.set()

    async def serve(self, settings: Settings) -> None:
        """Connect and answer until :meth:`stop`; reconnects on its own.  Raises
        :class:`~bots.runner.BotError` when it cannot go on or a background task failed, and
        :class:`~bots.settings.ConfigError` for a mode the bot does not run in."""
        self.check_mode(settings)
        self._settings = settings
        self._xmpp = xmpp = make_client(settings, self.plugins)
        self._attach(xmpp)
        self.started_at = time.monotonic()
        link = Link(xmpp, settings, self.log, online=self._online, stop=self._stop)
        tasks = [asyncio.ensure_future(self._guard(func)) for func in self._background]
        try:
            await link.run()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._online.clear()
            self._stop.clear()
            self.log.info("stopped")
        failure, self._failure = self._failure, None
        if failure is not None:
            raise BotError(failure)

    def check_mode(self, settings: Settings) -> None:
        """:class:`~bots.settings.ConfigError` unless the bot runs in ``settings.mode``."""
        if settings.mode not in self.modes:
            ways = " or ".join(_MODE_NAMES[mode] for mode in Mode if mode in self.modes)
            raise ConfigError(f"{self.name} cannot run as {_MODE_NAMES[settings.mode]}; "
                              f"run it as {ways}")

    async def _guard(self, func: Callable[[Bot], Awaitable[None]]) -> None:
        try:
            await func(self)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.exception("background task %s failed; stopping", func.__name__)
            self._failure = self._failure or f"{func.__name__} failed: {exc}"
            self.stop()

    def main(self, argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
        """Run from the command line until SIGTERM/SIGINT; the process's exit status."""
        prog = prog or f"python -m bots.{self.name}"
        try:
            settings = load_settings(argv, prog=prog, description=self.description,
                                     options=self.options)
            self.check_mode(settings)
        except ConfigError as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return 2
        configure_logging(settings.log_level)
        try:
            asyncio.run(self._serve_until_signalled(settings))
        except BotError as exc:
            self.log.error("%s", exc)
            return 1
        return 0

    async def _serve_until_signalled(self, settings: Settings) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            await self.serve(settings)
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        self.log.info("%s: disconnecting", signal.Signals(signum).name)
        self.stop()

    # -- stanzas -------------------------------------------------------------------------------
    def _attach(self, xmpp: BaseXMPP) -> None:
        xmpp.auto_authorize = None  # the policy below decides, not slixmpp's roster
        xmpp.auto_subscribe = False
        xmpp.add_event_handler("session_start", self._on_session_start)
        xmpp.add_event_handler("message", self._on_message)
        xmpp.add_event_handler("presence_subscribe", self._on_subscribe)

    async def _on_session_start(self, _event: Any) -> None:
        xmpp = self.xmpp
        if not self.is_component:
            try:  # RFC 6121 §2.2: the roster before initial presence
                await xmpp.get_roster()  # type: ignore[attr-defined]
            except (IqError, IqTimeout) as exc:
                self.log.warning("no roster: %s", exc)
            xmpp.send_presence()  # RFC 6121 §4.2
        if not xmpp.is_connected():
            return
        self.log.info("online as %s", xmpp.boundjid.full)
        self._online.set()
        for hook in self._start_hooks:
            try:
                await _await(hook(self))
            except Exception:
                self.log.exception("start hook %s failed", getattr(hook, "__name__", hook))

    async def _on_message(self, message: Message) -> None:
        try:
            if message["type"] == "groupchat":
                for group_hook in self._groupchat_hooks:
                    await _await(group_hook(self, message))
            else:
                await self._on_direct_message(message)
        except Exception:
            self.log.exception("handling a message from %s failed", message["from"].bare)

    async def _on_direct_message(self, message: Message) -> None:
        body = str(message["body"]).strip()
        sender = str(message["from"])
        if message["type"] not in ("chat", "normal") or not body or sender == self.xmpp.boundjid.full:
            return  # errors, headlines, chat states, our own echoes
        if is_delayed(message):
            # Stored while we were offline (XEP-0160 §2): a command is meant for then,
            # not for now; a 'shutdown' must not wait for the next start.
            self.log.info("not answering a delayed message from %s", bare_jid(sender))
            return
        ctx = Context(self, sender, message)
        answer: object = None
        if self._chat_hooks and not self.commands.names_command(body):
            for hook in self._chat_hooks:
                answer = await _await(hook(ctx, body))
                if answer is not None:
                    break
        else:
            answer = await self.run_command(ctx, body)
        if answer is not None:
            ctx.reply(str(answer))

    def _on_subscribe(self, presence: Presence) -> None:
        """RFC 6121 §3.1.3: approve (and ask back, §3.1.1) or refuse a subscription request."""
        requester = presence["from"].bare
        us = presence["to"].bare if self.is_component else None
        if self.may_subscribe(requester):
            self.log.info("approving the subscription of %s", requester)
            self.xmpp.send_presence(pto=requester, ptype="subscribed", pfrom=us)
            self.xmpp.send_presence(pto=requester, ptype="subscribe", pfrom=us)
        else:
            self.log.info("refusing the subscription of %s", requester)
            self.xmpp.send_presence(pto=requester, ptype="unsubscribed", pfrom=us)

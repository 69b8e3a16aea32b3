"""Keeping a bot connected, and running it from the command line.

:class:`Link` keeps one slixmpp stream up.  It connects; when the stream is lost, or no
connection can be made, it waits a jittered, exponentially growing delay (:class:`Backoff`,
reset once a session has been established) and connects again, until asked to stop.  What no
retry can fix ends the bot with :class:`BotError`: refused credentials (RFC 6120 §6.5), a
certificate that does not verify, a stream error such as ``not-authorized`` from a component's
server (XEP-0114 §3) or ``conflict`` (another session took over, RFC 6120 §4.9.3.3; fighting it
would never end).

slixmpp has a reconnect loop of its own (fixed doubling, no jitter): the link cancels it as soon
as it starts and applies its own policy instead.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Callable
from typing import Any

from slixmpp.basexmpp import BaseXMPP

from .settings import Settings

__all__ = ["CLOSE_WAIT", "Backoff", "BotError", "Link", "configure_logging"]

CLOSE_WAIT = 5.0  # seconds to wait for the server's closing stream tag (RFC 6120 §4.4)
# Stream errors (RFC 6120 §4.9.3) after which connecting again cannot help.
FATAL_STREAM_ERRORS = frozenset({"not-authorized", "host-unknown", "conflict", "invalid-from",
                                 "improper-addressing", "policy-violation"})


class BotError(Exception):
    """The bot cannot go on (wrong credentials, untrusted certificate, refused by the server)."""


class Backoff:
    """Exponential delays with "equal jitter": each is between half and all of
    ``min(maximum, initial * 2**n)``, so bots restarted together do not reconnect in step."""

    def __init__(self, initial: float, maximum: float, *,
                 uniform: Callable[[], float] = random.random) -> None:
        self.initial = initial
        self.maximum = max(initial, maximum)
        self._uniform = uniform
        self._failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * 2.0 ** min(self._failures, 62))
        self._failures += 1
        return ceiling * (0.5 + 0.5 * self._uniform())

    def reset(self) -> None:
        self._failures = 0


class Link:
    """Connects ``xmpp`` and keeps it connected until ``stop`` is set.

    ``online`` is set by the bot once its session is ready and cleared here on disconnection.
    """

    def __init__(self, xmpp: BaseXMPP, settings: Settings, log: logging.Logger, *,
                 online: asyncio.Event, stop: asyncio.Event) -> None:
        self.xmpp = xmpp
        self.settings = settings
        self.log = log
        self.online = online
        self._stop = stop
        self._ended: asyncio.Future[str] | None = None
        self._last_failure = ""
        self._fatal: str | None = None
        xmpp.add_event_handler("disconnected", self._on_disconnected)
        xmpp.add_event_handler("connection_failed", self._on_connection_failed)
        xmpp.add_event_handler("reconnect_delay", self._on_slixmpp_retry)
        xmpp.add_event_handler("failed_all_auth", self._on_failed_auth)
        xmpp.add_event_handler("stream_error", self._on_stream_error)
        xmpp.add_event_handler("ssl_invalid_chain", self._on_invalid_certificate)

    async def run(self) -> None:
        """Return when stopped; raise :class:`BotError` when the bot cannot go on."""
        backoff = Backoff(self.settings.reconnect_delay, self.settings.reconnect_max_delay)
        while True:
            reason, was_online = await self._session()
            if self._fatal is not None:
                raise BotError(self._fatal)
            if reason is None:
                return
            if was_online:
                backoff.reset()
            delay = backoff.next_delay()
            self.log.warning("%s; connecting again in %.1f s", reason, delay)
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
                return
            except TimeoutError:
                pass

    async def _session(self) -> tuple[str | None, bool]:
        """Connect and wait until the stream ends: ``(why, whether it got online)``; ``why`` is
        ``None`` when it ended because we were asked to stop."""
        ended = self._ended = asyncio.get_running_loop().create_future()
        self._last_failure = ""
        if self.settings.server is None:
            self.xmpp.connect()
        else:
            self.xmpp.connect(*self.settings.server)
        stopping = asyncio.ensure_future(self._stop.wait())
        online = asyncio.ensure_future(self.online.wait())
        try:
            await asyncio.wait({ended, stopping, online}, timeout=self.settings.connect_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
            if not (ended.done() or stopping.done() or online.done()):
                await self._drop(ended)
                return f"no session within {self.settings.connect_timeout:g} s", False
            was_online = online.done()
            if not ended.done() and not stopping.done():
                await asyncio.wait({ended, stopping}, return_when=asyncio.FIRST_COMPLETED)
                was_online = True
            if ended.done():
                return ended.result(), was_online
            await self._close(ended)
            return None, was_online
        finally:
            stopping.cancel()
            online.cancel()

    async def _close(self, ended: asyncio.Future[str]) -> None:
        """End the stream politely (RFC 6120 §4.4), or abandon a connection attempt."""
        if not self.xmpp.is_connected():
            self.xmpp.cancel_connection_attempt()
            return
        self.xmpp.disconnect(wait=CLOSE_WAIT, reason="stopping")
        try:
            await asyncio.wait_for(asyncio.shield(ended), CLOSE_WAIT + 1)
        except TimeoutError:
            self.log.warning("the server did not close its stream; connection aborted")
            self.xmpp.abort()

    async def _drop(self, ended: asyncio.Future[str]) -> None:
        """Give up on a connection that never became a session."""
        self.xmpp.cancel_connection_attempt()
        if self.xmpp.is_connected():
            self.xmpp.abort()
            try:  # let its 'disconnected' land before the next attempt
                await asyncio.wait_for(asyncio.shield(ended), CLOSE_WAIT)
            except TimeoutError:
                pass

    def _settle(self, reason: str) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(reason)

    def _on_disconnected(self, reason: Any) -> None:
        self.online.clear()
        self._settle(f"disconnected ({reason or 'connection closed'})")

    def _give_up(self, why: str) -> None:
        if self._fatal is None:  # the first reason is the cause; later ones are consequences
            self._fatal = why

    def _on_connection_failed(self, error: Any) -> None:
        self._last_failure = str(error)
        if isinstance(error, ssl.SSLCertVerificationError):  # XEP-0368 direct TLS
            self._give_up(f"the server's certificate does not verify: {error.verify_message}")

    def _on_slixmpp_retry(self, _delay: Any) -> None:
        # Every address failed and slixmpp is about to wait and retry on its own: ours instead.
        self.xmpp.cancel_connection_attempt()
        self._settle(f"cannot connect ({self._last_failure or 'no address worked'})")

    def _on_failed_auth(self, _event: Any) -> None:
        self._give_up(f"the server refused the credentials for {self.settings.jid}")

    def _on_stream_error(self, error: Any) -> None:
        condition = str(error["condition"])
        self.log.warning("stream error from the server: %s %s", condition, error["text"])
        if condition in FATAL_STREAM_ERRORS:
            self._give_up(f"the server ended the stream with {condition!r}")

    def _on_invalid_certificate(self, error: Any) -> None:
        # STARTTLS (RFC 6120 §5.4.3.2): slixmpp leaves the connection to us when we listen.
        self._give_up(f"the server's certificate does not verify: {error}")
        self.xmpp.abort()


def configure_logging(level: str) -> None:
    """One line per record with the logger's name (``bots.<bot name>``); slixmpp stays quiet
    unless DEBUG is asked for."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level)
    logging.getLogger("slixmpp").setLevel(logging.DEBUG if level == "DEBUG" else logging.ERROR)

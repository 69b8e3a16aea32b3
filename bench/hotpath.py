"""What each step of a message's way through xmppcore costs, without sockets (docs/performance.md).

The real parser, the real server (its router and the default modules, storage in memory) and the
real serializer, each timed on its own over the same one-to-one chat message, in microseconds per
message; then the three chained as c2s chains them (bytes in, bytes out, no socket).  The server
benchmark (``compare.py``'s ``msg``) adds the event loop, the sockets and the per-connection
queue on top of these.

    python bench/hotpath.py                 # 20,000 messages per step, best of 5
    python bench/hotpath.py --mam           # with the XEP-0313 module (archive in memory)
    python bench/hotpath.py --profile route # cProfile of one step: parse, route, serialize, chain
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from xmppcore.config import ModulesConfig, config_from_mapping  # noqa: E402
from xmppcore.server import hooks  # noqa: E402
from xmppcore.server.app import Server  # noqa: E402
from xmppcore.server.modules import load_modules  # noqa: E402
from xmppcore.server.sessions import Session  # noqa: E402
from xmppcore.stanza.errors import StreamCondition  # noqa: E402
from xmppcore.storage import create_driver  # noqa: E402
from xmppcore.xml.element import Element  # noqa: E402
from xmppcore.xml.parser import StreamParser  # noqa: E402
from xmppcore.xml.serializer import serialize  # noqa: E402

__all__ = ["main", "measure"]

HEADER = (b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
          b"to='localhost' version='1.0'>")
# The load generator's message (bench/loadgen.py): a chat message to a bare JID, ~75-byte body.
MESSAGE = "<message to='bench2@localhost' type='chat' id='m{}'><body>" + "x" * 75 + "</body></message>"


class _Sink(Session):
    """A bound session whose client is a list: what c2s would serialize and write."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.delivered: list[Element] = []

    def deliver(self, stanza: Element) -> None:
        self.delivered.append(stanza)

    def close(self, condition: StreamCondition | None = None, text: str | None = None) -> None:
        raise AssertionError(f"session closed: {condition}")


def _stanzas(count: int) -> list[Element]:
    parser = StreamParser()
    parser.feed(HEADER)
    items = parser.feed("".join(MESSAGE.format(n) for n in range(count)).encode())
    return [item for item in items if isinstance(item, Element)]


async def _server(data_dir: Path, mam: bool) -> tuple[Server, _Sink, _Sink]:
    modules = [name for name in ModulesConfig().enabled if mam or name != "mam"]
    config = config_from_mapping({
        "domains": ["localhost"], "data_dir": str(data_dir), "storage": {"driver": "memory"},
        "s2s": {"enabled": False}, "modules": {"enabled": modules}}, source="<hotpath>", base_dir=data_dir)
    server = Server(config, storage=create_driver("memory"))
    await server.open()
    for host in server.hosts.values():
        load_modules(server, host, config.modules.enabled, config.modules.options, source=config.source)
    sinks = []
    for user, resource in (("bench1", "gen"), ("bench2", "gen")):
        await server.accounts.create("localhost", user, "secret")
        sink = _Sink(user)
        server.sessions.bind(sink, user, "localhost", resource)
        await server.hosts["localhost"].bus.fire(hooks.SESSION_BOUND, hooks.SessionEvent(sink))
        await server.router.route_from_client(sink, Element("presence", "jabber:client"))
        sinks.append(sink)
    return server, sinks[0], sinks[1]


async def measure(count: int = 20_000, repeat: int = 5, *, mam: bool = False,
                  profile: str | None = None) -> dict[str, float]:
    """Microseconds per message for each step (the best of ``repeat`` rounds of ``count``)."""
    with tempfile.TemporaryDirectory(prefix="xmppcore-hotpath-") as tmp:
        server, sender, receiver = await _server(Path(tmp), mam)
        try:
            data = "".join(MESSAGE.format(n) for n in range(count)).encode()
            parsed = _stanzas(count)

            async def parse() -> None:
                parser = StreamParser()
                parser.feed(HEADER)
                parser.feed(data)

            async def route() -> None:
                for stanza in parsed:
                    await server.router.route_from_client(sender, stanza)

            async def write() -> None:
                for stanza in receiver.delivered[:count]:
                    serialize(stanza, "jabber:client").encode()

            async def chain() -> None:
                parser = StreamParser()
                parser.feed(HEADER)
                out = []
                for stanza in parser.feed(data):
                    assert isinstance(stanza, Element)
                    await server.router.route_from_client(sender, stanza)
                    out.append(serialize(receiver.delivered.pop(), "jabber:client"))
                "".join(out).encode()

            steps: dict[str, Callable[[], Awaitable[None]]] = {
                "parse": parse, "route": route, "serialize": write, "chain": chain}
            results = {}
            for name, step in steps.items():
                best = float("inf")
                for _ in range(repeat):
                    if name == "serialize":
                        if len(receiver.delivered) < count:
                            await route()  # something to serialize: the messages as delivered
                    else:
                        receiver.delivered.clear()
                    started = time.perf_counter()
                    await step()
                    best = min(best, time.perf_counter() - started)
                results[name] = best / count * 1e6
            if profile is not None:
                profiler = cProfile.Profile()
                profiler.enable()
                await steps[profile]()
                profiler.disable()
                pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
            return results
        finally:
            await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cost of each step of a message through xmppcore, no sockets.")
    parser.add_argument("--count", type=int, default=20_000, help="messages per round (default 20,000)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds per step; the best counts (default 5)")
    parser.add_argument("--mam", action="store_true", help="load the XEP-0313 module (archive in memory)")
    parser.add_argument("--profile", choices=("parse", "route", "serialize", "chain"),
                        help="also print a cProfile of one more round of this step")
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args.count, args.repeat, mam=args.mam, profile=args.profile))
    for name, micros in results.items():
        print(f"{name:10} {micros:7.2f} µs/message   ({1e6 / micros:9,.0f} messages/s on one core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

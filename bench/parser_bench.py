"""RFC 6120 §4 XML streams: which parser builds stanzas fastest (docs/decisions/0001-xml-parser.md).

Parses one realistic client stream (chat messages, presence with XEP-0115 caps, XEP-0030
disco#info results, 1-10 KiB messages and XEP-0060 items) fed in 4 KiB reads, as a server
reads TLS records, with:

  (a) xmppcore StreamParser: xml.parsers.expat, Python handlers building Element directly,
      with every RFC 6120 §11 check and limit on;
  (b) xml.etree.ElementTree.XMLPullParser (C accelerated) + conversion to Element;
  (c) lxml.etree.XMLPullParser + conversion to Element;
  and, for scale, (b) and (c) building their own trees only, without the conversion.

Every option's stanzas are checked equal to (a)'s before timing.  Prints stanzas/s and MB/s,
best of several rounds.  Runs in about 20 s:  python3 bench/parser_bench.py
"""

from __future__ import annotations

import platform
import random
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from xml.parsers import expat

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xmppcore.xml.element import Element  # noqa: E402
from xmppcore.xml.parser import StreamParser  # noqa: E402
from xmppcore.xml.serializer import escape_attr, escape_text  # noqa: E402

LET: Any
try:
    import lxml.etree as LET  # type: ignore[import-untyped, no-redef]
except ImportError:  # pragma: no cover - lxml is optional
    LET = None

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>"
)
READ_SIZE = 4096
SECONDS_PER_OPTION = 2.0

WORDS = (
    "the meeting moved to three o'clock & bring <notes> please ok see you soon "
    "très bien — 会議 ✓ Привет weiter so das Haus"
).split()


def _text(rng: random.Random, n_words: int) -> str:
    return escape_text(" ".join(rng.choice(WORDS) for _ in range(n_words)))


def _jid(rng: random.Random) -> str:
    return f"user{rng.randrange(500)}@example.com/res{rng.randrange(9)}"


def chat_message(rng: random.Random) -> str:
    return (
        f"<message to='{_jid(rng)}' type='chat' id='m{rng.randrange(10**9)}'>"
        f"<body>{_text(rng, rng.randrange(3, 25))}</body>"
        "<active xmlns='http://jabber.org/protocol/chatstates'/>"
        f"<origin-id xmlns='urn:xmpp:sid:0' id='{rng.randrange(10**12)}'/></message>"
    )


def presence(rng: random.Random) -> str:
    return (
        f"<presence from='{_jid(rng)}' xml:lang='en'><show>away</show>"
        f"<status>{_text(rng, 4)}</status><priority>5</priority>"
        "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://gajim.org' "
        "ver='QgayPKawpkPSDYmwT/WM94uAlu0='/>"
        "<delay xmlns='urn:xmpp:delay' stamp='2024-05-01T10:00:00Z'/></presence>"
    )


def disco_result(rng: random.Random) -> str:
    features = "".join(
        f"<feature var='urn:xmpp:feature:{i}:{rng.randrange(99)}'/>" for i in range(40)
    )
    form = "".join(
        f"<field var='f{i}' type='text-single'><value>{_text(rng, 3)}</value></field>"
        for i in range(6)
    )
    return (
        f"<iq type='result' id='d{rng.randrange(10**6)}' to='{_jid(rng)}'>"
        "<query xmlns='http://jabber.org/protocol/disco#info'>"
        "<identity category='client' type='pc' name='Gajim'/>"
        f"{features}<x xmlns='jabber:x:data' type='result'>{form}</x></query></iq>"
    )


def large_stanza(rng: random.Random) -> str:
    size = rng.randrange(1024, 10 * 1024)
    if rng.random() < 0.5:
        paras: list[str] = []
        total = 0
        while total < size // 2:
            paras.append(f"<p>{_text(rng, 30)} <strong>{_text(rng, 3)}</strong></p>")
            total += len(paras[-1])
        return (
            f"<message to='{_jid(rng)}' type='groupchat'><body>{_text(rng, size // 14)}</body>"
            "<html xmlns='http://jabber.org/protocol/xhtml-im'>"
            f"<body xmlns='http://www.w3.org/1999/xhtml'>{''.join(paras)}</body></html></message>"
        )
    return (
        f"<iq type='set' id='p{rng.randrange(10**6)}'>"
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:microblog:0'>"
        f"<item id='{rng.randrange(10**9)}'><entry xmlns='http://www.w3.org/2005/Atom'>"
        f"<title>{_text(rng, 8)}</title><content type='text'>{_text(rng, size // 7)}</content>"
        f"<link rel='alternate' href='{escape_attr('https://x.example/?a=1&b=2')}'/>"
        "</entry></item></publish></pubsub></iq>"
    )


MIX: tuple[tuple[Callable[[random.Random], str], int], ...] = (
    (chat_message, 50), (presence, 25), (disco_result, 10), (large_stanza, 15),
)


def build_stream(
    mix: tuple[tuple[Callable[[random.Random], str], int], ...] = MIX,
    n: int = 2000,
    seed: int = 6120,
) -> tuple[bytes, int]:
    rng = random.Random(seed)
    makers: list[Callable[[random.Random], str]] = []
    for maker, weight in mix:
        makers += [maker] * weight
    body = "\n".join(rng.choice(makers)(rng) for _ in range(n))
    return HEADER + body.encode() + b"</stream:stream>", n


def reads(data: bytes) -> Iterator[bytes]:
    for i in range(0, len(data), READ_SIZE):
        yield data[i:i + READ_SIZE]


# -- the options -----------------------------------------------------------------------------

def run_streamparser(data: bytes) -> list[Element]:
    parser = StreamParser()
    out: list[Element] = []
    for chunk in reads(data):
        out.extend(e for e in parser.feed(chunk) if isinstance(e, Element))
    return out


def _convert(el: Any) -> Element:
    """An ElementTree/lxml element as our Element (text and tails become string children)."""
    ns, _, local = el.tag[1:].rpartition("}") if el.tag[0] == "{" else ("", "", el.tag)
    children: list[Element | str] = [el.text] if el.text else []
    for child in el:
        children.append(_convert(child))
        if child.tail:
            children.append(child.tail)
    return Element(local, ns, dict(el.attrib), children)


def _pull(make_parser: Callable[[], Any], convert: bool, data: bytes) -> list[Any]:
    parser = make_parser()
    out: list[Any] = []
    depth = 0
    root: Any = None
    for chunk in reads(data):
        parser.feed(chunk)
        for event, el in parser.read_events():
            if event == "start":
                depth += 1
                if depth == 1:
                    root = el
            else:
                depth -= 1
                if depth == 1:
                    out.append(_convert(el) if convert else el)
                    root.remove(el)  # keep memory bounded, as a server must
    return out


def et_parser() -> Any:
    return ET.XMLPullParser(events=("start", "end"))


def lxml_parser() -> Any:
    return LET.XMLPullParser(events=("start", "end"), resolve_entities=False, no_network=True,
                             huge_tree=False)


def options() -> list[tuple[str, Callable[[bytes], list[Any]], bool]]:
    opts: list[tuple[str, Callable[[bytes], list[Any]], bool]] = [
        ("(a) expat + handlers -> Element (StreamParser)", run_streamparser, True),
        ("(b) ET.XMLPullParser + convert", lambda d: _pull(et_parser, True, d), True),
        ("    ET.XMLPullParser tree only", lambda d: _pull(et_parser, False, d), False),
    ]
    if LET is not None:
        opts += [
            ("(c) lxml XMLPullParser + convert", lambda d: _pull(lxml_parser, True, d), True),
            ("    lxml XMLPullParser tree only", lambda d: _pull(lxml_parser, False, d), False),
        ]
    return opts


def measure(fn: Callable[[bytes], list[Any]], data: bytes, seconds: float) -> float:
    """Best wall time of one full parse over repeated rounds within the time budget."""
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        fn(data)
        best = min(best, time.perf_counter() - t0)
    return best


def report(title: str, data: bytes, n: int, seconds: float, with_raw: bool) -> None:
    print(f"{title}: {n} stanzas, {len(data) / 1e6:.2f} MB, mean {len(data) // n} B/stanza")
    reference = run_streamparser(data)
    assert len(reference) == n
    for label, fn, comparable in options():
        if not comparable and not with_raw:
            continue
        if comparable:
            assert fn(data) == reference, f"{label} disagrees with StreamParser"
        best = measure(fn, data, seconds)
        print(f"  {label:50s} {n / best:9,.0f} stanzas/s {len(data) / best / 1e6:7.1f} MB/s")
    print()


def main() -> None:
    print(f"python {platform.python_version()}, {expat.EXPAT_VERSION}, "
          f"lxml {'.'.join(map(str, LET.LXML_VERSION)) if LET else 'absent'}, "
          f"fed in {READ_SIZE} B reads\n")
    data, n = build_stream()
    report("mix (50% chat, 25% presence, 10% disco#info, 15% 1-10 KiB)", data, n,
           SECONDS_PER_OPTION, with_raw=True)
    for maker, _ in MIX:
        data, n = build_stream(((maker, 1),), n=500)
        report(f"only {maker.__name__}", data, n, SECONDS_PER_OPTION / 3, with_raw=False)


if __name__ == "__main__":
    main()

"""XEP-0202: Entity Time — the server's UTC time and offset, in XEP-0082 formats."""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.server.harness import ScenarioHarness, error_of
from xmppcore.modules.time import format_time

TIME = "urn:xmpp:time"
_TZO = re.compile(r"(?:[+-]\d\d:\d\d|Z)")  # XEP-0082 §2 TZD
_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{3})?Z")  # XEP-0082 §3.2 DateTime in UTC


@pytest.fixture
def timezone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Switch the process's local time zone (POSIX TZ strings: no tz database needed)."""
    def use(tz: str) -> None:
        monkeypatch.setenv("TZ", tz)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(("tz", "tzo"), [
    ("UTC0", "+00:00"),
    ("XST-05:30", "+05:30"),   # POSIX counts west as positive: this is UTC+05:30
    ("YST+03:30", "-03:30"),
    ("ZST+10", "-10:00"),
    ("WST-14", "+14:00"),
])
def test_format_time_offset(timezone: Callable[[str], None], tz: str, tzo: str) -> None:
    timezone(tz)
    assert format_time(1_700_000_000.0) == (tzo, "2023-11-14T22:13:20.000Z")


@pytest.mark.parametrize(("now", "utc"), [
    (0.0, "1970-01-01T00:00:00.000Z"),
    (1_700_000_000.123456, "2023-11-14T22:13:20.123Z"),
    (951_782_400.999, "2000-02-29T00:00:00.999Z"),
])
def test_format_time_utc_has_milliseconds_and_z(timezone: Callable[[str], None], now: float, utc: str) -> None:
    timezone("XST-05:30")  # the UTC part must not depend on the local zone
    assert format_time(now)[1] == utc


async def test_the_server_answers_with_its_time(tmp_path: Path) -> None:
    async with ScenarioHarness.running(tmp_path) as h:
        await h.add_user("alice")
        alice = await h.online("alice", "phone")
        before = time.time()
        await h.send(alice, f"<iq to='localhost' type='get' id='t1'><time xmlns='{TIME}'/></iq>")
        after = time.time()
        reply = alice.take_one()
        assert (reply.get("type"), reply.get("from"), reply.get("id")) == ("result", "localhost", "t1")
        payload = reply.find("time", TIME)
        assert payload is not None and [c.name for c in payload.elements()] == ["tzo", "utc"]
        tzo, utc = payload.findtext("tzo") or "", payload.findtext("utc") or ""
        assert _TZO.fullmatch(tzo) and _UTC.fullmatch(utc), (tzo, utc)
        stamp = datetime.datetime.strptime(utc, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
        assert before - 0.001 <= stamp.timestamp() <= after  # milliseconds are truncated


async def test_time_is_only_the_servers(tmp_path: Path) -> None:
    async with ScenarioHarness.running(tmp_path) as h:
        await h.add_user("alice")
        alice = await h.online("alice", "phone")
        await h.send(alice, f"<iq to='localhost' type='set' id='t1'><time xmlns='{TIME}'/></iq>")
        assert error_of(alice.take_one()) == ("cancel", "not-allowed")
        await h.send(alice, f"<iq to='alice@localhost' type='get' id='t2'><time xmlns='{TIME}'/></iq>")
        assert error_of(alice.take_one()) == ("cancel", "service-unavailable")

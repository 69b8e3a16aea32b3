"""Loading scenario files: what a valid file gives, and the errors a broken one gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from xmppcore.stanza.errors import SaslCondition, StreamCondition

from .model import LoggedInClient, RawClientSpec, ScenarioError, captures_in, load_file, load_scenarios, substitute
from .steps import Authenticate, Bind, Expect, ExpectNothing, ExpectStreamError, OpenStream, Send

SCENARIO_DIR = Path(__file__).parent / "scenarios"

VALID = """
[[scenario]]
name = "two-clients"
spec = "RFC 6121 §8.5.3.1"
differs_on = [{ server = "xmppcore", reason = "not yet" }]
clients.alice = { priority = 5 }
clients.phone = { account = "alice", resource = "phone", presence = false }
clients.raw = { raw = true, direct_tls = true }
steps = [
  { client = "alice", send = "<message to='{phone_full}'><body>{{literal}}</body></message>" },
  { client = "phone", expect = ["<message from='{alice_full}'/>", "<presence/>"], skip_others = true, timeout = 2 },
  { client = "raw", open_stream = { to = "{unhosted_domain}", version = "" } },
  { client = "raw", expect_stream_error = "host-unknown" },
  { client = "alice", expect_nothing = true },
  { client = "raw", authenticate = { username = "alice", mechanism = "PLAIN" }, expect_sasl_failure = "not-authorized" },
  { client = "raw", bind = true },
]
"""


def _write(tmp_path: Path, text: str, name: str = "demo.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ScenarioError) as caught:
        load_file(_write(tmp_path, text))
    return str(caught.value)


def _one(clients: str, steps: str) -> str:
    return f"[[scenario]]\nname = 'x'\nspec = 'RFC 6120'\n{clients}\nsteps = [\n{steps}\n]\n"


def test_a_valid_file_loads_into_typed_steps(tmp_path: Path) -> None:
    [scenario] = load_file(_write(tmp_path, VALID))
    assert scenario.id == "demo/two-clients"
    assert scenario.differs_reason("xmppcore") == "not yet"
    assert scenario.differs_reason("ejabberd") is None
    assert scenario.clients == (
        LoggedInClient("alice", "alice", "alice", True, 5, True),
        LoggedInClient("phone", "alice", "phone", False, None, True),
        RawClientSpec("raw", direct_tls=True),
    )
    steps = scenario.steps
    assert isinstance(steps[0], Send) and not steps[0].raw
    assert isinstance(steps[1], Expect) and len(steps[1].patterns) == 2 and steps[1].skip_others
    assert steps[1].timeout == 2.0
    assert isinstance(steps[2], OpenStream) and dict(steps[2].attrs) == {"to": "{unhosted_domain}", "version": ""}
    assert isinstance(steps[3], ExpectStreamError) and steps[3].condition is StreamCondition.HOST_UNKNOWN
    assert isinstance(steps[4], ExpectNothing)
    assert isinstance(steps[5], Authenticate) and steps[5].failure is SaslCondition.NOT_AUTHORIZED
    assert steps[5].password == "{password}" and steps[5].mechanism == "PLAIN"
    assert isinstance(steps[6], Bind) and steps[6].resource == ""
    assert steps[3].describe() == "step 4 (raw: expect_stream_error)"


def test_the_client_may_be_left_out_when_there_is_only_one(tmp_path: Path) -> None:
    [scenario] = load_file(_write(tmp_path, _one("clients.alice = {}", "{ expect_nothing = true }")))
    assert scenario.steps[0].client == "alice"


def test_the_shipped_scenarios_load() -> None:
    scenarios = load_scenarios(SCENARIO_DIR)
    assert len({s.id for s in scenarios}) == len(scenarios) >= 5


def test_substitute_escapes_for_xml_and_keeps_doubled_braces() -> None:
    assert substitute("<a to='{x}'>{{x}}</a>", {"x": "a'b&c"}) == "<a to='a&apos;b&amp;c'>{x}</a>"
    assert substitute("{x}", {"x": "<"}, escape=False) == "<"
    with pytest.raises(KeyError):
        substitute("{y}", {})


def test_captures_in_finds_capture_names_but_not_doubled_braces() -> None:
    assert captures_in("<q ver='{=ver}' id='{=n}-{x}'/>") == ["ver", "n"]
    assert captures_in("<q ver='{{=ver}}'/>") == []
    assert captures_in("<q ver='{=Bad Name}'/>") == ["Bad Name"]  # reported by the loader


def test_a_capture_makes_its_name_a_placeholder_for_later_steps(tmp_path: Path) -> None:
    steps = """
      { send = "<iq type='get' id='a'><query xmlns='jabber:iq:roster' ver=''/></iq>" },
      { expect = "<iq type='result' id='a'><query xmlns='jabber:iq:roster' ver='{=ver}'/></iq>" },
      { send = "<iq type='get' id='b'><query xmlns='jabber:iq:roster' ver='{ver}'/></iq>" },
      { expect = "<iq type='result' id='b'><query xmlns='jabber:iq:roster' ver='{=ver}'/></iq>" },
      { send = "<iq type='get' id='c'><query xmlns='jabber:iq:roster' ver='{ver}'/></iq>" },"""
    [scenario] = load_file(_write(tmp_path, _one("clients.alice = {}", steps)))
    assert isinstance(scenario.steps[2], Send) and "{ver}" in scenario.steps[2].text


@pytest.mark.parametrize(("steps", "message"), [
    # used before (or in) the step that captures it
    ("{ send = \"<iq ver='{ver}'/>\" },\n{ expect = \"<iq ver='{=ver}'/>\" }", "unknown placeholder(s) ['ver']"),
    ("{ expect = \"<iq ver='{=ver}' id='{ver}'/>\" }", "unknown placeholder(s) ['ver']"),
    # only expect patterns capture
    ("{ send = \"<iq ver='{=ver}'/>\" }", "captures ({=name}) belong in expect patterns, not in send"),
    ("{ expect_features = \"<stream:features ver='{=v}'/>\" }", "not in expect_features"),
    # names
    ("{ expect = \"<iq ver='{=Ver}'/>\" }", "capture {=Ver}: a name is a lower-case identifier"),
    ("{ expect = \"<iq from='{=alice_full}'/>\" }", "would hide the placeholder {alice_full}"),
    ("{ expect = \"<iq from='{=domain}'/>\" }", "would hide the placeholder {domain}"),
    ("{ expect = [\"<iq id='{=x}'/>\", \"<message id='{=x}'/>\"] }", "appear in more than one pattern"),
])
def test_capture_mistakes_are_reported(tmp_path: Path, steps: str, message: str) -> None:
    error = _error(tmp_path, _one("clients.alice = {}", steps))
    assert message in error
    assert "scenario 'x'" in error


def test_a_name_may_be_captured_twice_in_one_pattern_and_again_later(tmp_path: Path) -> None:
    steps = """{ expect = "<iq id='{=x}'><query xmlns='q' ver='{=x}'/></iq>" },
      { expect = "<iq id='{=x}'/>" },"""
    [scenario] = load_file(_write(tmp_path, _one("clients.alice = {}", steps)))
    assert len(scenario.steps) == 2


@pytest.mark.parametrize(("clients", "steps", "message"), [
    ("clients.alice = {}", "{ send = '<iq' }", "not well-formed XML"),
    ("clients.alice = {}", "{ send = '' }", "send needs at least one element"),
    ("clients.alice = {}", "{ expect = '<a/><b/>' }", "exactly one element"),
    ("clients.alice = {}", "{ send = '<iq to=\"{alice_ful}\"/>' }", "unknown placeholder(s) ['alice_ful']"),
    ("clients.alice = {}", "{ expect = '<iq/>', skip_other = true }", "did you mean 'skip_others'?"),
    ("clients.alice = {}", "{ expect_stream_error = 'no-such-condition' }", "is not a defined condition"),
    ("clients.alice = {}", "{ send = '<iq/>', expect = '<iq/>' }", "exactly one of"),
    ("clients.alice = {}\nclients.bob = {}", "{ send = '<iq/>' }", "client must name one of"),
    ("clients.alice = {}", "{ expect_nothing = false }", "write expect_nothing = true"),
    ("clients.alice = {}", "{ expect = '<iq/>', timeout = 99 }", "at most 30"),
    ("clients.bob = { account = 'alice' }", "{ expect_nothing = true }", "a client named after an account uses it"),
    ("clients.mallory = {}", "{ expect_nothing = true }", "account must be one of"),
    ("clients.domain = { raw = true }", "{ open_stream = true }", "a client name is a lower-case identifier"),
    ("clients.alice = { raw = true }", "{ open_stream = true }", "must not be named after an account"),
    ("clients.alice = { presence = false, priority = 1 }", "{ expect_nothing = true }", "needs presence = true"),
    ("clients.raw = { raw = true }", "{ open_stream = { too = 'x' } }", "did you mean 'to'?"),
])
def test_mistakes_are_reported_with_their_place(tmp_path: Path, clients: str, steps: str, message: str) -> None:
    error = _error(tmp_path, _one(clients, steps))
    assert message in error
    assert str(tmp_path / "demo.toml") in error and "scenario 'x'" in error


def test_differs_on_must_name_a_server_and_a_reason(tmp_path: Path) -> None:
    base = _one("clients.alice = {}", "{ expect_nothing = true }")
    text = base.replace("steps = [", "differs_on = [{ server = 'prosody', reason = 'r' }]\nsteps = [")
    assert "differs_on server must be one of" in _error(tmp_path, text)
    text = base.replace("steps = [", "differs_on = [{ server = 'ejabberd' }]\nsteps = [")
    assert "reason is required" in _error(tmp_path, text)


def test_names_are_unique_within_a_file(tmp_path: Path) -> None:
    one = _one("clients.alice = {}", "{ expect_nothing = true }")
    assert "the name is used twice" in _error(tmp_path, one + one)


def test_a_file_without_scenarios_is_an_error(tmp_path: Path) -> None:
    assert "expected one or more [[scenario]] tables" in _error(tmp_path, "# nothing yet\n")
    assert "not valid TOML" in _error(tmp_path, "[[scenario]\n")

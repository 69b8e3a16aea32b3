"""RFC 6120/6121 conformance: every scenario in ``scenarios/`` against every server.

A case id reads ``basics/ping-server[ejabberd]``.  A scenario must pass on ejabberd; on a server
named in its ``differs_on`` it must fail (xfail, with the stated reason), and passing there is
itself a failure so that the stale note gets removed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from .model import TARGET_NAMES, DiffersOn, Scenario, load_file, load_scenarios
from .runner import Outcome, RunResult, classify, run_scenario
from .targets import TargetPool, TargetUnavailable

pytestmark = pytest.mark.integration

SCENARIO_DIR = Path(__file__).parent / "scenarios"
SCENARIOS = load_scenarios(SCENARIO_DIR)
CASES = [pytest.param(s, t, id=f"{s.id}[{t}]") for s in SCENARIOS for t in TARGET_NAMES]


@pytest.mark.parametrize(("scenario", "target_name"), CASES)
async def test_scenario(scenario: Scenario, target_name: str, conformance_targets: TargetPool) -> None:
    try:
        target = conformance_targets.get(target_name)
    except TargetUnavailable as exc:
        pytest.skip(f"{target_name} is not available: {exc}")
    result = await run_scenario(scenario, target)
    outcome = classify(scenario, target_name, result)
    if outcome is Outcome.DIFFERS:
        pytest.xfail(f"differs on {target_name}: {scenario.differs_reason(target_name)}")
    if outcome is Outcome.UNEXPECTED_PASS:
        pytest.fail(f"{scenario.id} passes on {target_name} although differs_on says it fails "
                    f"({scenario.differs_reason(target_name)}): remove the note", pytrace=False)
    if outcome is Outcome.FAIL:
        pytest.fail(result.report(), pytrace=False)


def test_scenario_ids_are_unique() -> None:
    ids = [s.id for s in SCENARIOS]
    assert len(ids) == len(set(ids))
    assert len(SCENARIOS) >= 5


# -- the harness itself: it must be able to fail, and say why ---------------------------------
def test_classify_reads_differs_on() -> None:
    [scenario] = [s for s in SCENARIOS if s.id == "basics/ping-server"]
    noted = dataclasses.replace(scenario, differs_on=(DiffersOn("xmppcore", "a reason"),))
    passed, failed = RunResult(True), RunResult(False, "why")
    assert classify(scenario, "xmppcore", passed) is Outcome.PASS
    assert classify(scenario, "xmppcore", failed) is Outcome.FAIL
    assert classify(noted, "xmppcore", failed) is Outcome.DIFFERS
    assert classify(noted, "xmppcore", passed) is Outcome.UNEXPECTED_PASS
    assert classify(noted, "ejabberd", failed) is Outcome.FAIL
    assert [o.unexpected for o in Outcome] == [False, True, False, True, False]


_SELF_PING = "{ client = 'alice', send = \"<message to='{alice_full}' id='m1'><body>one</body></message>\" }"
_SELF_PING_2 = "{ client = 'alice', send = \"<message to='{alice_full}' id='m2'><body>two</body></message>\" }"

HARNESS_CASES = [
    pytest.param(
        "clients.alice = {}",
        "{ send = \"<iq type='get' id='p1' to='{domain}'><ping xmlns='urn:xmpp:ping'/></iq>\" },"
        "{ expect = \"<iq type='error' id='p1'/>\" }",
        False, ["step 2 (alice: expect)", "expected: <iq type='error' id='p1'/>", "got: <iq",
                "why: at iq: attribute type: expected 'error', got 'result'", "alice → <iq type='get'"],
        id="wrong-pattern"),
    pytest.param("clients.alice = {}", _SELF_PING + ", { expect_nothing = true }",
                 False, ["step 2 (alice: expect_nothing)", "expected nothing, but got", "<body>one</body>"],
                 id="expect-nothing-sees-a-message"),
    pytest.param("clients.alice = {}", "{ expect = '<message/>', timeout = 0.5 }",
                 False, ["timed out after 0.5 s waiting for", "<message/>"], id="timeout"),
    pytest.param("clients.alice = {}", f"{_SELF_PING}, {_SELF_PING_2}, {{ expect = \"<message id='m2'/>\" }}",
                 False, ["matches no expected pattern", "why: at message: attribute id: expected 'm2', got 'm1'"],
                 id="unexpected-element"),
    pytest.param("clients.alice = {}",
                 f"{_SELF_PING}, {_SELF_PING_2}, {{ expect = \"<message id='m2'/>\", skip_others = true }}",
                 True, [], id="skip-others"),
    pytest.param("clients.alice = {}",
                 f"{_SELF_PING}, {_SELF_PING_2}, {{ expect = [\"<message id='m2'/>\", \"<message id='m1'/>\"] }}",
                 True, [], id="any-order"),
    pytest.param("clients.alice = {}\nclients.phone = { account = 'alice', presence = false }",
                 "{ client = 'phone', send = '<presence/>' }, { client = 'alice', expect_nothing = true }",
                 True, [], id="presence-ignored-by-default"),
    pytest.param("clients.alice = { ignore_presence = false }\n"
                 "clients.phone = { account = 'alice', presence = false }",
                 "{ client = 'phone', send = '<presence/>' }, { client = 'alice', expect_nothing = true }",
                 False, ["expected nothing, but got", "<presence"], id="presence-counted-when-asked"),
    pytest.param("clients.raw = { raw = true }",
                 "{ open_stream = true }, { expect_stream_error = 'host-unknown', timeout = 0.5 }",
                 False, ["nothing (more) arrived within 0.5 s; expected <stream:error><host-unknown/></stream:error>",
                         "raw ← <stream:features>"],
                 id="stream-error-that-never-comes"),
    pytest.param("clients.raw = { raw = true }",
                 "{ open_stream = { to = '{unhosted_domain}' } }, { expect_features = '<stream:features/>' }",
                 False, ["step 2 (raw: expect_features): no <stream:features/> followed", "instead: <stream:error>"],
                 id="features-expected-but-stream-error"),
]


@pytest.mark.parametrize(("clients", "steps", "passes", "messages"), HARNESS_CASES)
async def test_the_runner_reports_what_went_wrong(
    tmp_path: Path, conformance_targets: TargetPool, clients: str, steps: str, passes: bool, messages: list[str],
) -> None:
    path = tmp_path / "harness.toml"
    text = f"[[scenario]]\nname = 'case'\nspec = 'harness'\n{clients}\nsteps = [{steps}]\n"
    path.write_text(text, encoding="utf-8")
    [scenario] = load_file(path)
    result = await run_scenario(scenario, conformance_targets.get("xmppcore"))
    report = result.report()
    assert result.passed is passes, report
    for message in messages:
        assert message in report, report

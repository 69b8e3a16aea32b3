"""RFC 6120 and RFC 6121 conformance: run one scenario against one server with the raw client.

Clients are set up in the order the scenario declares them: a logged-in client connects to the
STARTTLS port, negotiates TLS (RFC 6120 §5), authenticates with the best SCRAM the server offers
(SCRAM-SHA-256, else SCRAM-SHA-1; §6), binds a resource made unique for this run (§7) and sends
initial presence unless told not to (RFC 6121 §4.2), waiting for the server's copy of it (§4.2.2
makes the server send it back) so nothing of the login spills into the steps.  A raw client only
opens its TCP connection.  The steps then run in order (``stepping.py``); at the end every
client closes its stream.  Every wait is bounded; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from enum import Enum

from xmppcore.xml.element import Element

from ..integration.rawclient import RawClient
from .client import ScenarioClient, StepFailed, Transcript, describe_event, is_presence
from .matcher import PatternError, parse_pattern
from .model import ClientSpec, LoggedInClient, Scenario, substitute
from .stepping import perform
from .targets import Endpoint, Target

__all__ = ["RunResult", "Outcome", "ScenarioRun", "run_scenario", "classify", "SCENARIO_TIMEOUT"]

SCENARIO_TIMEOUT = 60.0  # seconds for a whole scenario, on top of every step's own bound
_LOGIN_TIMEOUT = 10.0
_CLOSE_TIMEOUT = 2.0
_TRANSCRIPT_TAIL = 40


@dataclass(frozen=True, slots=True)
class RunResult:
    """Whether a scenario passed on a server; when not, which step failed and why."""

    passed: bool
    message: str = ""
    transcript: tuple[str, ...] = ()

    def report(self) -> str:
        """The failure and the end of the conversation that led to it."""
        if self.passed:
            return "passed"
        tail = self.transcript[-_TRANSCRIPT_TAIL:]
        heading = "transcript" + (f" (last {len(tail)} lines)" if len(tail) < len(self.transcript) else "")
        return "\n".join([self.message, "", heading + ":", *(f"  {line}" for line in tail)])


class Outcome(Enum):
    """A scenario's result on one server, read with its ``differs_on`` notes."""

    PASS = "pass"
    FAIL = "FAIL"
    DIFFERS = "differs (expected)"
    UNEXPECTED_PASS = "PASSES (remove differs_on)"
    SKIPPED = "skipped"

    @property
    def unexpected(self) -> bool:
        return self in (Outcome.FAIL, Outcome.UNEXPECTED_PASS)


def classify(scenario: Scenario, server: str, result: RunResult) -> Outcome:
    """Failing where a ``differs_on`` note says so is expected; passing there is news."""
    differs = scenario.differs_reason(server) is not None
    if result.passed:
        return Outcome.UNEXPECTED_PASS if differs else Outcome.PASS
    return Outcome.DIFFERS if differs else Outcome.FAIL


async def run_scenario(scenario: Scenario, target: Target, *, timeout: float = SCENARIO_TIMEOUT) -> RunResult:
    """Run ``scenario`` against the started ``target``; a server's behaviour never raises."""
    run = ScenarioRun(scenario, target.endpoint)
    failure: str | None = None
    try:
        await asyncio.wait_for(run.execute(), timeout)
    except StepFailed as exc:
        failure = str(exc)
    except TimeoutError:
        failure = f"the scenario took over {timeout} s"
    except (AssertionError, OSError, PatternError) as exc:  # the raw client's own checks, sockets
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        await run.close()
    if failure is None:
        return RunResult(True, "", tuple(run.transcript))
    return RunResult(False, f"{scenario.id} on {target.name}: {run.where}: {failure}", tuple(run.transcript))


class ScenarioRun:
    """One scenario on one server: the clients, the placeholders and the transcript."""

    def __init__(self, scenario: Scenario, endpoint: Endpoint) -> None:
        self.scenario = scenario
        self.endpoint = endpoint
        self.token = secrets.token_hex(3)  # {run}: makes resources and ids unique to this run
        self.transcript: Transcript = []
        self.clients: dict[str, ScenarioClient] = {}
        self.captured: dict[str, str] = {}  # {=name} captures of earlier expect steps, as {name}
        self.where = "setup"

    # -- placeholders --------------------------------------------------------------------------
    def placeholders(self) -> dict[str, str]:
        """The value of every placeholder known at this point of the run."""
        values = dict(self.endpoint.placeholders())
        values["run"] = self.token
        for name, client in self.clients.items():
            if client.resource:
                values[f"{name}_resource"] = client.resource
            if client.jid is not None:
                values[name] = str(client.jid.bare)
                values[f"{name}_full"] = str(client.jid)
            elif isinstance(client.spec, LoggedInClient):
                values[name] = f"{client.spec.account}@{self.endpoint.domain}"
        values.update(self.captured)  # the loader keeps capture names apart from the others
        return values

    def substitute(self, text: str, *, escape: bool = True) -> str:
        try:
            return substitute(text, self.placeholders(), escape=escape)
        except KeyError as exc:
            raise StepFailed(f"placeholder {{{exc.args[0]}}} has no value yet (a raw client before bind?)") from None

    def pattern(self, text: str) -> Element:
        return parse_pattern(self.substitute(text))

    def client(self, name: str) -> ScenarioClient:
        return self.clients[name]

    @staticmethod
    def deadline(timeout: float) -> float:
        return asyncio.get_running_loop().time() + timeout

    # -- the run -------------------------------------------------------------------------------
    async def execute(self) -> None:
        for spec in self.scenario.clients:
            self.where = f"setup of {spec.name}"
            await self._connect(spec)
        self.where = "setup"
        await self._settle_logins()
        for step in self.scenario.steps:
            self.where = step.describe()
            await perform(self, step)

    async def _connect(self, spec: ClientSpec) -> None:
        e = self.endpoint
        if isinstance(spec, LoggedInClient):
            resource = f"{spec.resource}-{self.token}"
            raw = await RawClient.login(e.host, e.starttls_port, e.cafile, spec.account, e.password, resource,
                                        domain=e.domain)
            client = self.clients[spec.name] = ScenarioClient(spec, raw, self.transcript)
            client.jid, client.resource = raw.jid, resource
            self.transcript.append(f"{spec.name}: logged in as {raw.jid}")
            if spec.presence:
                await self._initial_presence(client, spec)
            return
        cafile = e.cafile if spec.direct_tls else None
        port = e.direct_tls_port if spec.direct_tls else e.starttls_port
        raw = await RawClient.connect(e.host, port, direct_tls_cafile=cafile, domain=e.domain)
        self.clients[spec.name] = ScenarioClient(spec, raw, self.transcript)
        self.transcript.append(f"{spec.name}: connected to {e.host}:{port}{' with TLS' if cafile else ''}")

    async def _initial_presence(self, client: ScenarioClient, spec: LoggedInClient) -> None:
        """RFC 6121 §4.2.2: the server sends initial presence back to the sending resource too."""
        priority = "" if spec.priority is None else f"<priority>{spec.priority}</priority>"
        await client.send(f"<presence>{priority}</presence>" if priority else "<presence/>")
        deadline = self.deadline(_LOGIN_TIMEOUT)
        early: list[Element] = []
        while True:
            try:
                event = await client.next_event(deadline)
            except TimeoutError:
                raise StepFailed(f"{client.name}: the server did not send our initial presence back "
                                 "(RFC 6121 §4.2.2)") from None
            if not isinstance(event, Element):
                raise StepFailed(f"{client.name}: the stream ended after initial presence: {describe_event(event)}")
            if is_presence(event) and event.get("from") == str(client.jid) and event.get("type") is None:
                break
            if not is_presence(event):  # presence of the account's other resources is setup noise
                early.append(event)
        client.push_back(early)

    async def _settle_logins(self) -> None:
        """With several bound clients, let the presence the logins caused arrive, and drop it."""
        bound = [c for c in self.clients.values() if c.jid is not None]
        if len(bound) < 2:
            return
        deadline = self.deadline(_LOGIN_TIMEOUT)
        for client in bound:
            client.push_back(await client.round_trip(deadline, lambda e: not is_presence(e)))

    async def close(self) -> None:
        await asyncio.gather(*(c.close(_CLOSE_TIMEOUT) for c in self.clients.values()), return_exceptions=True)

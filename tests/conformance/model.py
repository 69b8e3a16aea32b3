"""Conformance scenarios (RFC 6120, RFC 6121 and the XEPs they cite) as data: the model and its TOML loader.

A scenario file holds ``[[scenario]]`` tables (``scenarios/README.md`` documents the format).
Loading validates everything that can be checked without a server: keys (typos are errors,
with a suggestion), client names, placeholders (a ``{=name}`` capture in an ``expect`` pattern
makes ``{name}`` known to the steps after it), that every XML text is well-formed, and that
every stream or SASL condition is one RFC 6120 defines.  Errors name file, scenario and step.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xmppcore.stanza.errors import SaslCondition, StreamCondition

from .matcher import PatternError, parse_fragment
from .steps import (
    STEP_KINDS, Authenticate, Bind, Expect, ExpectClosed, ExpectFeatures, ExpectHeader, ExpectNothing,
    ExpectSaslFailure, ExpectStreamError, OpenStream, Send, StartTls, Step,
)

__all__ = [
    "ScenarioError", "LoggedInClient", "RawClientSpec", "ClientSpec", "DiffersOn", "Scenario",
    "ACCOUNTS", "TARGET_NAMES", "FIXED_PLACEHOLDERS", "substitute", "placeholders_in", "captures_in",
    "load_file", "load_scenarios",
]

ACCOUNTS = ("alice", "bob", "carol")  # exist on every target, all with the target's password
TARGET_NAMES = ("xmppcore", "ejabberd")
FIXED_PLACEHOLDERS = frozenset({
    "domain", "password", "unknown_user", "unhosted_domain", "run", *ACCOUNTS,
})
CLIENT_SUFFIXES = ("", "_full", "_resource")

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([a-z][a-z0-9_]*)\}")
_CAPTURE = re.compile(r"\{\{|\}\}|\{=([^{}]*)\}")  # what looks like a capture; the name is checked
_CAPTURE_NAME = re.compile(r"[a-z][a-z0-9_]*")
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_CLIENT_NAME = re.compile(r"[a-z][a-z0-9_]*")
_SCENARIO_KEYS = ("name", "spec", "description", "differs_on", "clients", "steps")
_LOGGED_IN_KEYS = ("account", "resource", "presence", "priority", "ignore_presence")
_RAW_KEYS = ("raw", "direct_tls", "ignore_presence")


class ScenarioError(ValueError):
    """A scenario file is wrong; the message names where."""


@dataclass(frozen=True, slots=True)
class LoggedInClient:
    """A client logged in before the first step (STARTTLS, SCRAM, bind, optional presence)."""

    name: str
    account: str
    resource: str            # made unique per run by the runner ({name_resource} is the result)
    presence: bool = True    # send initial presence (RFC 6121 §4.2) after binding
    priority: int | None = None
    ignore_presence: bool = True


@dataclass(frozen=True, slots=True)
class RawClientSpec:
    """A bare TCP connection (or direct TLS, XEP-0368) that the steps drive from the first byte."""

    name: str
    direct_tls: bool = False
    ignore_presence: bool = True


ClientSpec = LoggedInClient | RawClientSpec


@dataclass(frozen=True, slots=True)
class DiffersOn:
    """A server on which the scenario is known to fail, and why a user would accept that."""

    server: str
    reason: str


@dataclass(frozen=True, slots=True)
class Scenario:
    id: str                  # "<file stem>/<name>"
    name: str
    spec: str
    description: str
    source: Path
    clients: tuple[ClientSpec, ...]
    steps: tuple[Step, ...]
    differs_on: tuple[DiffersOn, ...] = ()

    def differs_reason(self, server: str) -> str | None:
        """The stated reason this scenario fails on ``server``, or None when it must pass."""
        return next((d.reason for d in self.differs_on if d.server == server), None)

    def client(self, name: str) -> ClientSpec:
        return next(c for c in self.clients if c.name == name)


# -- placeholders ----------------------------------------------------------------------------------
def placeholders_in(text: str) -> set[str]:
    """The placeholder names used in ``text`` (``{{`` and ``}}`` are literal braces)."""
    return {m.group(1) for m in _PLACEHOLDER.finditer(text) if m.group(1)}


def captures_in(text: str) -> list[str]:
    """The names captured by ``{=name}`` in ``text``, in order, as written (checked by the loader)."""
    return [m.group(1) for m in _CAPTURE.finditer(text) if m.group(1) is not None]


def substitute(text: str, values: Mapping[str, str], *, escape: bool = True) -> str:
    """Replace ``{name}`` by its value (XML-escaped unless ``escape`` is false); ``{{``/``}}`` by braces.

    Raises KeyError for a name without a value.
    """
    def one(m: re.Match[str]) -> str:
        token = m.group(0)
        if token in ("{{", "}}"):
            return token[0]
        value = values[m.group(1)]
        if not escape:
            return value
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") \
            .replace("'", "&apos;").replace('"', "&quot;")
    return _PLACEHOLDER.sub(one, text)


# -- loading ---------------------------------------------------------------------------------------
def load_scenarios(directory: Path) -> list[Scenario]:
    """Every scenario of every ``*.toml`` file in ``directory``, files in name order."""
    scenarios: list[Scenario] = []
    for path in sorted(directory.glob("*.toml")):
        scenarios.extend(load_file(path))
    return scenarios


def load_file(path: Path) -> list[Scenario]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    _check_keys(data, ("scenario",), f"{path}")
    tables = data.get("scenario", [])
    if not isinstance(tables, list) or not tables:
        raise ScenarioError(f"{path}: expected one or more [[scenario]] tables")
    scenarios: list[Scenario] = []
    seen: set[str] = set()
    for number, table in enumerate(tables, 1):
        where = f"{path}: scenario #{number}"
        if isinstance(table, dict) and isinstance(table.get("name"), str):
            where = f"{path}: scenario {table['name']!r}"
        scenario = _scenario(table, path, where)
        if scenario.name in seen:
            raise ScenarioError(f"{where}: the name is used twice in this file")
        seen.add(scenario.name)
        scenarios.append(scenario)
    return scenarios


def _scenario(table: Any, path: Path, where: str) -> Scenario:
    if not isinstance(table, dict):
        raise ScenarioError(f"{where}: expected a table")
    _check_keys(table, _SCENARIO_KEYS, where)
    name = _required_str(table, "name", where)
    if not _NAME.fullmatch(name):
        raise ScenarioError(f"{where}: name must be lower-case words joined by '-'")
    spec = _required_str(table, "spec", where)
    description = table.get("description", "")
    if not isinstance(description, str):
        raise ScenarioError(f"{where}: description must be a string")
    clients = _clients(table.get("clients"), where)
    names = tuple(c.name for c in clients)
    raw_steps = table.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ScenarioError(f"{where}: steps must be a non-empty array of tables")
    known = _known_placeholders(clients)
    steps: list[Step] = []
    captured: set[str] = set()
    for i, raw_step in enumerate(raw_steps, 1):
        at = f"{where}: step {i}"
        step = _step(raw_step, i, names, known | captured, at)
        captured |= _step_captures(step, known, at)
        steps.append(step)
    differs = _differs_on(table.get("differs_on", []), where)
    return Scenario(f"{path.stem}/{name}", name, spec, description, path, clients, tuple(steps), differs)


def _clients(table: Any, where: str) -> tuple[ClientSpec, ...]:
    if not isinstance(table, dict) or not table:
        raise ScenarioError(f"{where}: clients must be a table with at least one client")
    clients: list[ClientSpec] = []
    for name, options in table.items():
        at = f"{where}: client {name!r}"
        if not _CLIENT_NAME.fullmatch(name) or (name in FIXED_PLACEHOLDERS and name not in ACCOUNTS):
            reserved = sorted(FIXED_PLACEHOLDERS - set(ACCOUNTS))
            raise ScenarioError(f"{at}: a client name is a lower-case identifier other than {reserved}")
        if not isinstance(options, dict):
            raise ScenarioError(f"{at}: expected a table such as {{}} or {{ raw = true }}")
        clients.append(_raw_client(name, options, at) if options.get("raw") else _logged_in(name, options, at))
    return tuple(clients)


def _raw_client(name: str, options: dict[str, Any], at: str) -> RawClientSpec:
    _check_keys(options, _RAW_KEYS, at)
    if name in ACCOUNTS:
        raise ScenarioError(f"{at}: a raw client must not be named after an account")
    return RawClientSpec(name, _bool(options, "direct_tls", False, at), _bool(options, "ignore_presence", True, at))


def _logged_in(name: str, options: dict[str, Any], at: str) -> LoggedInClient:
    _check_keys(options, _LOGGED_IN_KEYS, at)
    account = options.get("account", name)
    if account not in ACCOUNTS or (name in ACCOUNTS and account != name):
        raise ScenarioError(f"{at}: account must be one of {ACCOUNTS} (a client named after an account uses it)")
    resource = options.get("resource", name)
    if not isinstance(resource, str) or not resource:
        raise ScenarioError(f"{at}: resource must be a non-empty string")
    priority = options.get("priority")
    if priority is not None and (type(priority) is not int or not -128 <= priority <= 127):
        raise ScenarioError(f"{at}: priority must be an integer from -128 to 127 (RFC 6121 §4.7.2.3)")
    presence = _bool(options, "presence", True, at)
    if priority is not None and not presence:
        raise ScenarioError(f"{at}: a priority needs presence = true")
    return LoggedInClient(name, account, resource, presence, priority, _bool(options, "ignore_presence", True, at))


def _known_placeholders(clients: Iterable[ClientSpec]) -> frozenset[str]:
    return FIXED_PLACEHOLDERS | {c.name + suffix for c in clients for suffix in CLIENT_SUFFIXES}


def _differs_on(value: Any, where: str) -> tuple[DiffersOn, ...]:
    if not isinstance(value, list):
        raise ScenarioError(f"{where}: differs_on must be an array of {{ server = ..., reason = ... }}")
    notes: list[DiffersOn] = []
    for item in value:
        if not isinstance(item, dict):
            raise ScenarioError(f"{where}: differs_on entries are tables {{ server = ..., reason = ... }}")
        _check_keys(item, ("server", "reason"), f"{where}: differs_on")
        server = _required_str(item, "server", f"{where}: differs_on")
        reason = _required_str(item, "reason", f"{where}: differs_on")
        if server not in TARGET_NAMES:
            raise ScenarioError(f"{where}: differs_on server must be one of {TARGET_NAMES}")
        notes.append(DiffersOn(server, reason))
    return tuple(notes)


# -- steps -----------------------------------------------------------------------------------------
def _step(table: Any, index: int, clients: tuple[str, ...], known: frozenset[str], at: str) -> Step:
    if not isinstance(table, dict):
        raise ScenarioError(f"{at}: expected a table")
    kinds = [k for k in table if k in STEP_KINDS]
    if table.get("authenticate") is not None and "expect_sasl_failure" in kinds:
        kinds.remove("expect_sasl_failure")  # the outcome the authenticate step must see
    if len(kinds) != 1:
        raise ScenarioError(f"{at}: a step has exactly one of {sorted(STEP_KINDS)}; found {kinds or 'none'}")
    kind = kinds[0]
    client = table.get("client", clients[0] if len(clients) == 1 else None)
    if client not in clients:
        raise ScenarioError(f"{at}: client must name one of the scenario's clients {list(clients)}")
    _check_keys(table, ("client", kind, *STEP_KINDS[kind]), at)
    _check_placeholders(table, known, at)
    if kind != "expect" and any(captures_in(text) for text in _strings(table)):
        raise ScenarioError(f"{at}: captures ({{=name}}) belong in expect patterns, not in {kind}")
    try:
        return _build_step(kind, table[kind], table, index, client, at)
    except PatternError as exc:
        raise ScenarioError(f"{at}: {exc}") from None


def _build_step(kind: str, value: Any, table: dict[str, Any], index: int, client: str, at: str) -> Step:
    timeout = _timeout(table, at)
    if kind in ("send", "send_raw"):
        text = _str(value, kind, at)
        if kind == "send" and not parse_fragment(_dummy(text)):
            raise ScenarioError(f"{at}: send needs at least one element")
        return Send(index, client, text, raw=kind == "send_raw")
    if kind == "expect":
        patterns = (value,) if isinstance(value, str) else value
        if not isinstance(patterns, list | tuple) or not patterns or not all(isinstance(p, str) for p in patterns):
            raise ScenarioError(f"{at}: expect is an XML pattern or a non-empty array of them")
        for pattern in patterns:
            _one_element(pattern)
        return Expect(index, client, tuple(patterns), _bool(table, "skip_others", False, at),
                      _bool(table, "exact", False, at), timeout)
    if kind == "expect_features":
        _one_element(_str(value, kind, at))
        return ExpectFeatures(index, client, value, _bool(table, "exact", False, at), timeout)
    if kind == "expect_stream_error":
        return ExpectStreamError(index, client, _enum(StreamCondition, value, kind, at), timeout)
    if kind == "expect_sasl_failure":
        return ExpectSaslFailure(index, client, _enum(SaslCondition, value, kind, at), timeout)
    if kind in ("expect_nothing", "expect_closed", "starttls"):
        if value is not True:
            raise ScenarioError(f"{at}: write {kind} = true")
        step_type = {"expect_nothing": ExpectNothing, "expect_closed": ExpectClosed, "starttls": StartTls}[kind]
        return step_type(index, client, timeout)
    if kind in ("open_stream", "expect_header"):
        attrs = {} if value is True else value
        if not isinstance(attrs, dict) or not all(isinstance(v, str) for v in attrs.values()):
            raise ScenarioError(f"{at}: {kind} is true or a table of string attributes")
        if kind == "open_stream":
            _check_keys(attrs, OpenStream.KEYS, f"{at}: open_stream")
            return OpenStream(index, client, tuple(attrs.items()), timeout)
        return ExpectHeader(index, client, tuple(attrs.items()), timeout)
    if kind == "authenticate":
        return _authenticate(value, table, index, client, at, timeout)
    assert kind == "bind", kind
    resource = "" if value is True else _str(value, kind, at)
    return Bind(index, client, resource, timeout)


def _authenticate(value: Any, table: dict[str, Any], index: int, client: str, at: str, timeout: float) -> Step:
    if not isinstance(value, dict):
        raise ScenarioError(f"{at}: authenticate is a table {{ username = ..., mechanism = ... }}")
    _check_keys(value, ("mechanism", "username", "password", "authzid"), f"{at}: authenticate")
    failure = table.get("expect_sasl_failure")
    return Authenticate(
        index, client,
        mechanism=_str(value.get("mechanism", Authenticate.BEST), "mechanism", at),
        username=_required_str(value, "username", at),
        password=_str(value.get("password", "{password}"), "password", at),
        authzid=_str(value["authzid"], "authzid", at) if "authzid" in value else None,
        failure=None if failure is None else _enum(SaslCondition, failure, "expect_sasl_failure", at),
        timeout=timeout,
    )


# -- small checks ----------------------------------------------------------------------------------
def _check_keys(table: Mapping[str, Any], allowed: Iterable[str], at: str) -> None:
    allowed = tuple(allowed)
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
            raise ScenarioError(f"{at}: unknown key {key!r}{hint}")


def _strings(value: Any) -> Iterator[str]:
    """Every string in a step's TOML value, however deep in tables and arrays."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict | list):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _strings(item)


def _check_placeholders(value: Any, known: frozenset[str], at: str) -> None:
    for text in _strings(value):
        unknown = placeholders_in(text) - known
        if unknown:
            raise ScenarioError(f"{at}: unknown placeholder(s) {sorted(unknown)}; known: {sorted(known)}")


def _step_captures(step: Step, known: frozenset[str], at: str) -> set[str]:
    """The names an expect step captures, for the steps after it (captured again: overwritten)."""
    if not isinstance(step, Expect):
        return set()
    names = [name for pattern in step.patterns for name in captures_in(pattern)]
    for name in names:
        if not _CAPTURE_NAME.fullmatch(name):
            raise ScenarioError(f"{at}: capture {{={name}}}: a name is a lower-case identifier")
        if name in known:
            raise ScenarioError(f"{at}: capture {{={name}}} would hide the placeholder {{{name}}}")
    # Within one pattern a repeated name means "the same value"; across the patterns of one
    # step, which element each pattern meets is not fixed, so the value would be ambiguous.
    per_pattern = [name for pattern in step.patterns for name in set(captures_in(pattern))]
    repeated = sorted({name for name in per_pattern if per_pattern.count(name) > 1})
    if repeated:
        raise ScenarioError(f"{at}: capture(s) {repeated} appear in more than one pattern of the step")
    return set(names)


def _dummy(text: str) -> str:
    """``text`` with every placeholder replaced by a harmless value, to check well-formedness."""
    return substitute(text, _AnyValue())


class _AnyValue(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "x"


def _one_element(pattern: str) -> None:
    if len(parse_fragment(_dummy(pattern))) != 1:
        raise PatternError(f"a pattern must be exactly one element: {pattern.strip()!r}")


def _timeout(table: Mapping[str, Any], at: str) -> float:
    value = table.get("timeout", Step.DEFAULT_TIMEOUT)
    if type(value) not in (int, float) or not 0 < value <= 30:
        raise ScenarioError(f"{at}: timeout is a number of seconds, at most 30")
    return float(value)


def _bool(table: Mapping[str, Any], key: str, default: bool, at: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ScenarioError(f"{at}: {key} must be true or false")
    return value


def _str(value: Any, key: str, at: str) -> str:
    if not isinstance(value, str):
        raise ScenarioError(f"{at}: {key} must be a string")
    return value


def _required_str(table: Mapping[str, Any], key: str, at: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ScenarioError(f"{at}: {key} is required (a non-empty string)")
    return value


def _enum(kind: type[StreamCondition] | type[SaslCondition], value: Any, key: str, at: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(c.value for c in kind)
        raise ScenarioError(f"{at}: {key} {value!r} is not a defined condition ({choices})") from None

"""TOML v1.0 configuration (read with `tomllib`): one file, typed and validated, every option defaulted.

The dataclasses below are the schema. Validation is generic: each field's type annotation says
what a value must look like (bool is never an int; an int is accepted where a float is expected;
TOML arrays become tuples), and `_RULES` adds ranges, choices and per-value checks by dotted key.
Every error names the file, the dotted key and the reason, so `check-config` output is actionable.
Command-line overrides go through the same path, so they are checked exactly as the file is.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import functools
import ipaddress
import json
import math
import re
import tomllib
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from .jid import JID, InvalidJID

__all__ = [
    "ConfigError", "C2SConfig", "S2SConfig", "ComponentsConfig", "TLSConfig", "StorageConfig", "AuthConfig", "ModulesConfig", "Config",
    "load_config", "config_from_mapping", "with_overrides", "options_from_mapping",
    "resolved_data_dir", "resolved_storage_path",
]

_T = TypeVar("_T")

_DEFAULTS_SOURCE = "<defaults>"
_COMMAND_LINE_SOURCE = "<command line>"
_SASL_MECHANISMS = ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN")
_STORAGE_DRIVERS = ("sqlite", "postgres", "memory")
_LOG_LEVELS = ("debug", "info", "warning", "error")
_SQLITE_FILE_NAME = "xmppcore.sqlite3"


class ConfigError(Exception):
    """A configuration value is wrong: str() reads "<file>: <dotted.key>: <reason>"."""

    def __init__(self, source: str, key: str, reason: str, *, line: int | None = None) -> None:
        super().__init__(": ".join(part for part in (source, key, reason) if part))
        self.source = source    # file name, "<defaults>" or "<command line>"
        self.key = key          # dotted key such as "c2s.port"; "" when the whole file is at fault
        self.reason = reason
        self.line = line        # set for TOML syntax errors


@dataclass(frozen=True, slots=True)
class C2SConfig:
    """Client-to-server listeners and the limits every client stream runs under."""

    bind: tuple[str, ...] = ("127.0.0.1",)  # the default domain is localhost, so listen on loopback only
    port: int = 5222                         # STARTTLS; 0 = ephemeral (tests); -1 = disabled
    direct_tls_port: int = 5223              # XEP-0368 direct TLS; 0 = ephemeral; -1 = disabled
    tls_required: bool = True                # RFC 6120 §5.3.1: TLS mandatory-to-negotiate before SASL
    max_stanza_size: int = 262144            # bytes
    auth_timeout: float = 30.0               # seconds from connect to a bound session
    max_auth_failures: int = 3               # per stream; RFC 6120 §6.4.5 asks for 2 to 5 retries
    keepalive_interval: float = 60.0         # idle seconds before a whitespace keepalive; 0 disables
    sasl_mechanisms: tuple[str, ...] = _SASL_MECHANISMS
    max_unauthenticated_per_ip: int = 100    # concurrent connections not yet authenticated, per IP
    stream_management: bool = True           # offer XEP-0198 acknowledgements and resumption
    sm_resume_timeout: int = 300             # seconds a dropped session waits for resumption; 0 = no resumption
    sm_max_resume_timeout: int = 3600        # the longest a client may ask for (XEP-0198 'max')
    sm_max_unacked: int = 1000               # stanzas a client may leave unacknowledged before its stream ends


@dataclass(frozen=True, slots=True)
class S2SConfig:
    """Server-to-server federation (RFC 6120 §2.5; XEP-0220, XEP-0178, XEP-0288, XEP-0368)."""

    enabled: bool = True                     # false: no listener, remote domains are unreachable
    bind: tuple[str, ...] = ()               # () = the same addresses as c2s.bind
    port: int = 5269                         # STARTTLS; 0 = ephemeral (tests); -1 = no listener
    direct_tls_port: int = 5270              # XEP-0368 direct TLS; 0 = ephemeral; -1 = no listener
    tls_required: bool = True                # RFC 6120 §5.3.1, both directions
    require_valid_certificates: bool = False  # true: only peers whose certificate verifies (no dialback)
    dialback: bool = True                    # XEP-0220 when a certificate does not verify
    bidi: bool = True                        # XEP-0288: one connection for both directions
    ca_file: str = ""                        # trusted CAs for peers' certificates; "" = the system's
    routes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # domain -> "host:port", before DNS
    dns_servers: tuple[str, ...] = ()        # () = /etc/resolv.conf
    connect_timeout: float = 10.0            # seconds to reach a peer and authenticate
    idle_timeout: float = 600.0              # close a stream with no stanza for this long; 0 = never
    max_connections: int = 1000              # inbound + outbound streams
    max_queued_per_domain: int = 1000        # stanzas waiting for a stream to a remote domain
    max_stanza_size: int = 524288            # bytes


@dataclass(frozen=True, slots=True)
class ComponentsConfig:
    """External components (XEP-0114): services that connect to us and serve a domain of their own."""

    bind: tuple[str, ...] = ()               # () = the same addresses as c2s.bind
    port: int = 5347                         # 0 = ephemeral (tests); -1 = no listener
    # component domain -> shared secret; never in repr()
    secrets: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    max_stanza_size: int = 524288            # bytes
    auth_timeout: float = 30.0               # seconds to complete the handshake


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Certificate and key (PEM); both empty means a self-signed pair generated under data_dir."""

    certificate: str = ""
    key: str = ""


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Which storage driver holds accounts, rosters and archives."""

    driver: str = "sqlite"   # "sqlite" | "postgres" | "memory"
    path: str = ""           # sqlite file; "" = <data_dir>/xmppcore.sqlite3
    dsn: str = field(default="", repr=False)  # postgres DSN; may carry a password, so never in repr()


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """SCRAM cost and the brute-force brake (a delay that doubles per recent failure, capped)."""

    scram_iterations: int = 10000
    failure_delay: float = 1.0
    failure_delay_max: float = 10.0
    failure_window: float = 300.0
    cache_seconds: float = 5.0  # how long an account's credentials are kept after a login read them


@dataclass(frozen=True, slots=True)
class ModulesConfig:
    """Enabled modules, and each module's [modules.<name>] table (validated by the module loader)."""

    enabled: tuple[str, ...] = ("disco", "ping", "version", "time", "presence", "message", "blocking", "roster", "vcard", "private", "last", "offline", "carbons", "mam", "csi")
    # Read-only even when defaulted: a shared default must not be mutable.
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Config:
    """The whole server configuration; `Config()` is what runs with no file at all."""

    domains: tuple[str, ...] = ("localhost",)
    data_dir: str = "./xmppcore-data"
    log_level: str = "info"
    c2s: C2SConfig = C2SConfig()
    s2s: S2SConfig = S2SConfig()
    components: ComponentsConfig = ComponentsConfig()
    tls: TLSConfig = TLSConfig()
    storage: StorageConfig = StorageConfig()
    auth: AuthConfig = AuthConfig()
    modules: ModulesConfig = ModulesConfig()
    source: str = _DEFAULTS_SOURCE


# --- per-value checks: each returns the (normalised) value, or None when it is invalid -------------

def _domain(text: str) -> str | None:
    # RFC 7622 §3.2 via the JID type, so a hosted domain compares equal to the domainpart of
    # every JID routed to it (case, width and A-labels are normalised the same way).
    try:
        jid = JID.parse(text)
    except InvalidJID:
        return None
    return jid.domain if jid.is_domain else None


def _bind_address(text: str) -> str | None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return text if not text.startswith("[") and _domain(text) is not None else None
    return text


def _non_empty(text: str) -> str | None:
    return text or None


def _ip_address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _host_port(text: str) -> str | None:
    """"host:port" or "[v6]:port" with a port from 1 to 65535."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) <= 65535:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
        return text
    return text if _bind_address(host) is not None and ":" not in host else None


# --- the constraint table ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Rule:
    low: float | None = None     # inclusive bounds
    high: float | None = None
    above: float | None = None   # exclusive lower bound
    off: int | None = None       # one extra value outside the range that means "disabled"
    choices: tuple[str, ...] = ()
    what: str = ""               # what `check` accepts, for the error message
    check: Callable[[str], str | None] | None = None
    non_empty: bool = False      # lists only


_NO_RULE = _Rule()
_PORT = _Rule(low=0, high=65535, off=-1)
_RULES: Mapping[str, _Rule] = {
    "domains": _Rule(what="a domain name", check=_domain, non_empty=True),
    "data_dir": _Rule(what="a non-empty path", check=_non_empty),
    "log_level": _Rule(choices=_LOG_LEVELS),
    "c2s.bind": _Rule(what="an IP address or host name", check=_bind_address, non_empty=True),
    "c2s.port": _PORT,
    "c2s.direct_tls_port": _PORT,
    "c2s.max_stanza_size": _Rule(low=1024, high=16 * 1024 * 1024),
    "c2s.auth_timeout": _Rule(above=0),
    "c2s.max_auth_failures": _Rule(low=2, high=5),  # RFC 6120 §6.4.5: at least 2, no more than 5
    "c2s.keepalive_interval": _Rule(low=0),
    "c2s.sasl_mechanisms": _Rule(choices=_SASL_MECHANISMS, non_empty=True),
    "c2s.max_unauthenticated_per_ip": _Rule(low=1, high=100_000),
    "c2s.sm_resume_timeout": _Rule(low=0, high=86_400),
    "c2s.sm_max_resume_timeout": _Rule(low=1, high=86_400),
    "c2s.sm_max_unacked": _Rule(low=10, high=100_000),
    "s2s.bind": _Rule(what="an IP address or host name", check=_bind_address),
    "s2s.port": _PORT,
    "s2s.direct_tls_port": _PORT,
    "s2s.routes": _Rule(what='"host:port"', check=_host_port),
    "s2s.dns_servers": _Rule(what="an IP address", check=_ip_address),
    "s2s.connect_timeout": _Rule(above=0),
    "s2s.idle_timeout": _Rule(low=0),
    "s2s.max_connections": _Rule(low=1, high=1_000_000),
    "s2s.max_queued_per_domain": _Rule(low=1, high=1_000_000),
    "s2s.max_stanza_size": _Rule(low=1024, high=16 * 1024 * 1024),
    "components.bind": _Rule(what="an IP address or host name", check=_bind_address),
    "components.port": _PORT,
    "components.secrets": _Rule(what="a non-empty secret", check=_non_empty),
    "components.max_stanza_size": _Rule(low=1024, high=16 * 1024 * 1024),
    "components.auth_timeout": _Rule(above=0),
    "storage.driver": _Rule(choices=_STORAGE_DRIVERS),
    "auth.scram_iterations": _Rule(low=4096, high=10_000_000),
    "auth.failure_delay": _Rule(low=0),
    "auth.failure_delay_max": _Rule(low=0),
    "auth.failure_window": _Rule(above=0),
    "auth.cache_seconds": _Rule(low=0, high=3600),
}
_NOT_FROM_FILE = frozenset({"source", "modules.options"})  # filled in by the loader, never by a user
_PATH_KEYS = ("data_dir", "tls.certificate", "tls.key", "storage.path", "s2s.ca_file")
_NOUNS: Mapping[type, str] = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


# --- generic conversion --------------------------------------------------------------------------

def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a table"
    text = repr(list(value)) if isinstance(value, tuple) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _expectation(kind: type, rule: _Rule) -> str:
    if rule.choices:
        return "one of " + ", ".join(repr(choice) for choice in rule.choices)
    text = rule.what or _NOUNS[kind]
    if rule.low is not None and rule.high is not None:
        text += f" from {_number(rule.low)} to {_number(rule.high)}"
    elif rule.low is not None:
        text += f" of at least {_number(rule.low)}"
    elif rule.above is not None:
        text += f" greater than {_number(rule.above)}"
    if rule.off is not None:
        text += f", or {rule.off} to disable"
    return text


def _in_range(number: float, rule: _Rule) -> bool:
    return (math.isfinite(number) and (rule.low is None or number >= rule.low)
            and (rule.high is None or number <= rule.high) and (rule.above is None or number > rule.above))


def _scalar_value(value: Any, kind: type, rule: _Rule) -> Any:
    """The converted value, or None when `value` breaks the type or the rule."""
    if kind is float and type(value) is int:  # an integer is a fine number of seconds
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value if value == rule.off or _in_range(value, rule) else None
    if rule.choices and value not in rule.choices:
        return None
    return rule.check(value) if rule.check is not None and isinstance(value, str) else value


def _convert_scalar(value: Any, kind: type, rule: _Rule, key: str, source: str) -> Any:
    if kind not in _NOUNS:
        raise TypeError(f"{key}: options of type {kind!r} are not supported")
    converted = _scalar_value(value, kind, rule)
    if converted is not None:
        return converted
    reason = f"expected {_expectation(kind, rule)}, got {_show(value)}"
    close = difflib.get_close_matches(value, rule.choices, n=1) if isinstance(value, str) else []
    if close:
        reason += f" (did you mean {close[0]!r}?)"
    raise ConfigError(source, key, reason)


def _convert_list(value: Any, item_kind: type, rule: _Rule, key: str, source: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        hint = f" (write [{json.dumps(value)}])" if isinstance(value, str) else ""
        raise ConfigError(source, key, f"expected a list, got {_show(value)}{hint}")
    if rule.non_empty and not value:
        raise ConfigError(source, key, "expected at least one entry, got []")
    items: list[Any] = []
    for index, item in enumerate(value):
        converted = _convert_scalar(item, item_kind, rule, f"{key}[{index}]", source)
        if converted in items:
            raise ConfigError(source, f"{key}[{index}]", f"duplicate entry {_show(item)}")
        items.append(converted)
    return tuple(items)


def _convert_table(value: Any, kind: Any, key: str, source: str) -> Mapping[str, Any]:
    """A [table] of domain -> value (e.g. s2s.routes): keys are domains, values follow the key's rule."""
    key_kind, item_kind = typing.get_args(kind)
    assert key_kind is str, f"{key}: only tables keyed by domain are supported"
    if not isinstance(value, Mapping):
        raise ConfigError(source, key, f"expected a table, got {_show(value)}")
    table: dict[str, Any] = {}
    for name, item in value.items():
        domain = _domain(name) if isinstance(name, str) else None
        if domain is None:
            raise ConfigError(source, f"{key}.{name}", "expected a domain name as the key")
        table[domain] = _convert_scalar(item, item_kind, _RULES.get(key, _NO_RULE), f"{key}.{name}", source)
    return MappingProxyType(table)


def _convert(value: Any, kind: Any, key: str, source: str, current: Any) -> Any:
    if typing.get_origin(kind) in (Mapping, collections.abc.Mapping):
        return _convert_table(value, kind, key, source)
    if typing.get_origin(kind) is tuple:
        item_kind, ellipsis = typing.get_args(kind)
        assert ellipsis is Ellipsis, f"{key}: only homogeneous tuple[X, ...] options are supported"
        return _convert_list(value, item_kind, _RULES.get(key, _NO_RULE), key, source)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, Mapping):
            raise ConfigError(source, key, f"expected a table, got {_show(value)}")
        return _build(typing.cast(type, kind), value, key + ".", source, current)
    return _convert_scalar(value, kind, _RULES.get(key, _NO_RULE), key, source)


@functools.cache
def _settable_fields(cls: type, prefix: str) -> Mapping[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if prefix + f.name not in _NOT_FROM_FILE}


def _unknown_option(name: str, known: Sequence[str], prefix: str, source: str) -> ConfigError:
    reason = "unknown option"
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        reason += f" (did you mean {close[0]!r}?)"
    elif prefix == "modules.":
        reason += f" (a module's options go in a [modules.{name}] table)"
    return ConfigError(source, prefix + name, reason)


def _build(cls: type, data: Mapping[str, Any], prefix: str, source: str, base: Any) -> Any:
    """An instance of dataclass `cls` from `data`, starting from `base` (or the defaults if None)."""
    fields = _settable_fields(cls, prefix)
    for name in data:
        if name not in fields:
            raise _unknown_option(name, list(fields), prefix, source)
    changes = {
        name: _convert(data[name], kind, prefix + name, source, getattr(base, name, None))
        for name, kind in fields.items() if name in data
    }
    if base is not None:
        return dataclasses.replace(base, **changes)
    for f in dataclasses.fields(cls):
        if f.name not in changes and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(source, prefix + f.name, "required option is missing")
    return cls(**changes)


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(item) for item in value)
    return value


# --- cross-field rules and paths -----------------------------------------------------------------

def _check_cross_fields(config: Config, source: str) -> None:
    tls = config.tls
    if bool(tls.certificate) != bool(tls.key):
        missing, given = ("tls.key", "tls.certificate") if tls.certificate else ("tls.certificate", "tls.key")
        raise ConfigError(source, missing, f"must be set together with {given}")
    if config.storage.driver == "postgres" and not config.storage.dsn:
        raise ConfigError(source, "storage.dsn", "required when storage.driver is 'postgres'")
    s2s = config.s2s
    if s2s.port > 0 and s2s.port == s2s.direct_tls_port:
        raise ConfigError(source, "s2s.direct_tls_port",
                          f"same port as s2s.port ({s2s.port}); choose another, or -1 to disable")
    for domain in config.components.secrets:
        if domain in config.domains:
            raise ConfigError(source, f"components.secrets.{domain}",
                              "is a hosted domain; a component needs a domain of its own")
    c2s = config.c2s
    if c2s.port > 0 and c2s.port == c2s.direct_tls_port:
        raise ConfigError(source, "c2s.direct_tls_port",
                          f"same port as c2s.port ({c2s.port}); choose another, or -1 to disable")
    if c2s.sm_max_resume_timeout < c2s.sm_resume_timeout:
        raise ConfigError(source, "c2s.sm_max_resume_timeout",
                          f"must be at least c2s.sm_resume_timeout ({c2s.sm_resume_timeout})")
    if config.auth.failure_delay_max < config.auth.failure_delay:
        raise ConfigError(source, "auth.failure_delay_max",
                          f"must be at least auth.failure_delay ({_number(config.auth.failure_delay)})")


def _absolute(path: str, base_dir: Path) -> str:
    if not path:
        return path
    expanded = Path(path).expanduser()
    return str(expanded if expanded.is_absolute() else base_dir.absolute() / expanded)


def _replace_at(obj: Any, dotted: str, value: Any) -> Any:
    head, _, rest = dotted.partition(".")
    return dataclasses.replace(obj, **{head: _replace_at(getattr(obj, head), rest, value) if rest else value})


def _get_at(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


# --- public API ----------------------------------------------------------------------------------

def load_config(path: str | Path | None) -> Config:
    """The configuration in TOML file `path`; the defaults when `path` is None."""
    if path is None:
        return Config()
    file = Path(path)
    source = str(path)
    try:
        text = file.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "", "no such file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, "", f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        if match is None:
            raise ConfigError(source, "", f"invalid TOML: {message}") from None
        where = f"line {match[1]}, column {match[2]}"
        raise ConfigError(source, "", f"invalid TOML at {where}: {message[:match.start()]}",
                          line=int(match[1])) from None
    return config_from_mapping(data, source=source, base_dir=file.absolute().parent)


def config_from_mapping(data: Mapping[str, Any], *, source: str, base_dir: Path) -> Config:
    """Validate parsed TOML; relative paths (data_dir even when defaulted) are made absolute from base_dir."""
    modules = data.get("modules")
    options: dict[str, Any] = {}
    if isinstance(modules, Mapping):
        plain_keys = _settable_fields(ModulesConfig, "modules.")
        options = {name: _freeze(table) for name, table in modules.items()
                   if isinstance(table, Mapping) and name not in plain_keys}
        data = {**data, "modules": {name: value for name, value in modules.items() if name not in options}}
    config: Config = _build(Config, data, "", source, Config(source=source))
    config = _replace_at(config, "modules.options", MappingProxyType(options))
    for dotted in _PATH_KEYS:
        config = _replace_at(config, dotted, _absolute(_get_at(config, dotted), base_dir))
    _check_cross_fields(config, source)
    return config


def with_overrides(
    config: Config, *, domains: Sequence[str] | None = None, bind: Sequence[str] | None = None,
    data_dir: str | None = None, c2s_port: int | None = None, direct_tls_port: int | None = None,
    storage_driver: str | None = None, s2s_port: int | None = None, s2s_direct_tls_port: int | None = None,
) -> Config:
    """`config` with command-line values applied, validated like the file (errors name "<command line>")."""
    def given(values: dict[str, Any]) -> dict[str, Any]:
        return {name: value for name, value in values.items() if value is not None and value != {}}

    def as_list(values: Sequence[str] | None) -> Any:  # a bare str is reported, not split into letters
        return values if values is None or isinstance(values, str) else list(values)

    c2s = given({"bind": as_list(bind), "port": c2s_port, "direct_tls_port": direct_tls_port})
    data = given({"domains": as_list(domains), "data_dir": data_dir, "c2s": c2s, "s2s": given({"port": s2s_port, "direct_tls_port": s2s_direct_tls_port}),
                  "storage": given({"driver": storage_driver})})
    updated: Config = _build(Config, data, "", _COMMAND_LINE_SOURCE, config)
    if data_dir is not None:  # typed in a shell, so relative to where the command runs
        updated = dataclasses.replace(updated, data_dir=_absolute(updated.data_dir, Path.cwd()))
    _check_cross_fields(updated, _COMMAND_LINE_SOURCE)
    return updated


def options_from_mapping(options_type: type[_T], data: Mapping[str, Any], *, source: str, key: str) -> _T:
    """Validate a [modules.<name>] table against a module's `Options` dataclass (types + unknown keys).

    `key` is the table's dotted name (e.g. "modules.muc"); a ValueError raised by the dataclass's
    own `__post_init__` becomes a ConfigError on that table.
    """
    try:
        return typing.cast(_T, _build(options_type, data, key + ".", source, None))
    except ValueError as exc:
        raise ConfigError(source, key, str(exc)) from None


def resolved_data_dir(config: Config) -> Path:
    """data_dir as an absolute path (a still-relative one, as in `Config()`, is taken from the cwd)."""
    return Path(_absolute(config.data_dir, Path.cwd()))


def resolved_storage_path(config: Config) -> Path:
    """The sqlite database file: storage.path, or xmppcore.sqlite3 inside data_dir."""
    if config.storage.path:
        return Path(_absolute(config.storage.path, Path.cwd()))
    return resolved_data_dir(config) / _SQLITE_FILE_NAME

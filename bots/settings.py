"""How a bot connects: from the command line and an optional TOML file, validated with clear errors.

A bot runs either as a client account (RFC 6120: ``--jid`` and ``--password-file``, STARTTLS or
direct TLS, XEP-0368) or as an external component (XEP-0114: ``--component DOMAIN`` and
``--secret-file``).  Every command-line flag has a TOML key of the same name with ``_`` for
``-``; the command line wins.  Paths in the file are relative to the file.  A bot's own settings
(:class:`Option`) are flags too, and live in the file's ``[options]`` table.
"""

from __future__ import annotations

import argparse
import enum
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .commands import bare_jid

__all__ = ["CLIENT_PORT", "COMPONENT_PORT", "ConfigError", "Mode", "Option", "Settings", "load_settings",
           "parse_address"]

CLIENT_PORT = 5222     # RFC 6120 §14.7
COMPONENT_PORT = 5347  # the customary XEP-0114 port
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_STRINGS = ("jid", "password_file", "component", "secret_file", "server", "cafile", "log_level")
_FLAGS = ("insecure", "direct_tls")
_DELAYS = ("reconnect_delay", "reconnect_max_delay", "connect_timeout")
_PATHS = ("password_file", "secret_file", "cafile")


class ConfigError(Exception):
    """The configuration is unusable; the message says where and why."""


class Mode(enum.Enum):
    CLIENT = "client"        # an account on a server
    COMPONENT = "component"  # XEP-0114 external component


@dataclass(frozen=True, slots=True)
class Option:
    """A bot's own setting: ``--name`` on the command line, ``name`` under ``[options]``."""

    name: str
    help: str
    default: str | None = None
    required: bool = False
    check: Callable[[str], object] | None = None  # raises ConfigError or ValueError if bad

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the runner needs; ``secret`` is the password or component secret."""

    mode: Mode
    jid: str                                  # account JID (resource optional) or component domain
    secret: str = field(repr=False)
    server: tuple[str, int] | None = None     # None: DNS SRV lookup (clients only, RFC 6120 §3.2)
    cafile: Path | None = None                # None: the system's trust store
    insecure: bool = False                    # testing only: no certificate check at all
    direct_tls: bool = False                  # XEP-0368: TLS from the first byte on ``server``
    admins: frozenset[str] = frozenset()      # bare JIDs allowed every command
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    log_level: str = "INFO"
    reconnect_delay: float = 1.0              # first delay after a lost connection
    reconnect_max_delay: float = 60.0         # the backoff's ceiling
    connect_timeout: float = 30.0             # TCP + TLS + authentication


def _parser(prog: str, description: str, options: Sequence[Option]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", type=Path, help="a TOML file with these settings")
    parser.add_argument("--jid", help="run as this account (user@domain[/resource])")
    parser.add_argument("--password-file", help="file holding the account's password")
    parser.add_argument("--component", metavar="DOMAIN", help="run as this XEP-0114 component")
    parser.add_argument("--secret-file", help="file holding the component's shared secret")
    parser.add_argument("--server", metavar="HOST[:PORT]",
                        help="where to connect (default for an account: DNS of its domain)")
    parser.add_argument("--cafile", help="verify the server's certificate against this PEM file")
    parser.add_argument("--insecure", action="store_true", default=None,
                        help="FOR TESTING ONLY: do not verify the server's certificate")
    parser.add_argument("--direct-tls", action="store_true", default=None,
                        help="the server port speaks TLS from the first byte (XEP-0368)")
    parser.add_argument("--admin", dest="admins", action="append", metavar="JID",
                        help="a bare JID allowed every command (repeatable)")
    parser.add_argument("--log-level", type=str.upper, help="DEBUG, INFO, WARNING or ERROR")
    for delay, text in zip(_DELAYS, ("first wait before connecting again (default 1)",
                                     "longest wait between attempts (default 60)",
                                     "time allowed to connect and log in (default 30)")):
        parser.add_argument("--" + delay.replace("_", "-"), type=float, metavar="SECONDS", help=text)
    for option in options:
        parser.add_argument(option.flag, dest=f"option_{option.name}", help=option.help)
    return parser


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _check_file_values(path: Path, data: Mapping[str, Any], options: Sequence[Option]) -> None:
    known = {*_STRINGS, *_FLAGS, *_DELAYS, "admins", "options"}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{path}: unknown setting {key!r}; known: {', '.join(sorted(known))}")
        wanted: type | tuple[type, ...] = (str if key in _STRINGS else bool if key in _FLAGS
                                           else (int, float) if key in _DELAYS else
                                           list if key == "admins" else dict)
        if not isinstance(value, wanted) or (key in _DELAYS and isinstance(value, bool)):
            raise ConfigError(f"{path}: {key} has the wrong type ({type(value).__name__})")
    names = {option.name for option in options}
    for key, value in data.get("options", {}).items():
        if key not in names:
            raise ConfigError(f"{path}: [options] {key!r} is not an option of this bot"
                              f" (it has: {', '.join(sorted(names)) or 'none'})")
        if not isinstance(value, str):
            raise ConfigError(f"{path}: [options] {key} must be a string")


def _merged(args: argparse.Namespace, options: Sequence[Option]) -> dict[str, Any]:
    """The file's values (paths made absolute), overridden by the flags that were given."""
    values: dict[str, Any] = {}
    if args.config is not None:
        values = _read_toml(args.config)
        _check_file_values(args.config, values, options)
        for key in _PATHS:
            if key in values:
                values[key] = str(args.config.parent / values[key])
    given = {key: value for key, value in vars(args).items() if value is not None}
    file_options = dict(values.pop("options", {}))
    for option in options:
        value = given.pop(f"option_{option.name}", file_options.get(option.name, option.default))
        if value is None and option.required:
            raise ConfigError(f"missing {option.flag} (or {option.name} under [options])")
        if value is not None:
            _check_option(option, value)
            file_options[option.name] = value
    values.update(given)
    values["options"] = file_options
    return values


def _check_option(option: Option, value: str) -> None:
    if option.check is None:
        return
    try:
        option.check(value)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{option.flag} {value!r}: {exc}") from None


def _read_secret(path: str, what: str) -> str:
    try:
        secret = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if not secret:
        raise ConfigError(f"the {what} file {path} is empty")
    return secret


def parse_address(text: str, default_port: int, what: str = "server", *,
                  any_port: bool = False) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT`` as ``(host, port)``; :class:`ConfigError` if
    bad.  ``any_port``: port 0 (for listening: any free port) is allowed."""
    host, colon, port = text.rpartition(":")
    if not colon or "]" in port:  # no port given (an IPv6 literal ends with ']')
        host, port = text, str(default_port)
    host = host.strip("[]")
    lowest = 0 if any_port else 1
    if not host or not port.isdigit() or not lowest <= int(port) < 65536:
        raise ConfigError(f"{what} {text!r}: expected HOST or HOST:PORT with a port {lowest}-65535")
    return host, int(port)


def _identity(values: Mapping[str, Any]) -> tuple[Mode, str, str]:
    jid, component = values.get("jid"), values.get("component")
    if (jid is None) == (component is None):
        raise ConfigError("give exactly one of --jid (an account) or --component (XEP-0114)")
    if isinstance(jid, str):
        if "password_file" not in values:
            raise ConfigError("--jid needs --password-file")
        _check_jid(jid, "jid")
        return Mode.CLIENT, jid, _read_secret(values["password_file"], "password")
    if "secret_file" not in values:
        raise ConfigError("--component needs --secret-file")
    if "server" not in values:
        raise ConfigError("--component needs --server HOST[:PORT] (the server's component port)")
    assert isinstance(component, str)
    if "@" in component or "/" in component:
        raise ConfigError(f"component {component!r}: expected a domain such as bot.example.org")
    _check_jid(component, "component")
    return Mode.COMPONENT, component, _read_secret(values["secret_file"], "secret")


def _check_jid(jid: str, what: str) -> None:
    try:
        bare_jid(jid)
    except ValueError as exc:
        raise ConfigError(f"{what} {jid!r} is not a valid JID: {exc}") from None


def _settings(values: Mapping[str, Any]) -> Settings:
    mode, jid, secret = _identity(values)
    default_port = CLIENT_PORT if mode is Mode.CLIENT else COMPONENT_PORT
    server = parse_address(values["server"], default_port) if "server" in values else None
    cafile = Path(values["cafile"]) if "cafile" in values else None
    if cafile is not None and not cafile.is_file():
        raise ConfigError(f"cafile {cafile} is not a file")
    level = values.get("log_level", "INFO").upper()
    if level not in _LOG_LEVELS:
        raise ConfigError(f"log level {level!r}: use one of {', '.join(_LOG_LEVELS)}")
    admins = values.get("admins", [])
    for admin in admins:
        _check_jid(str(admin), "admin")
    delays = {key: float(values[key]) for key in _DELAYS if key in values}
    for key, delay in delays.items():
        if delay <= 0:
            raise ConfigError(f"{key} must be positive, not {delay:g}")
    if delays.get("reconnect_delay", 1.0) > delays.get("reconnect_max_delay", 60.0):
        raise ConfigError("reconnect_delay must not exceed reconnect_max_delay")
    return Settings(mode, jid, secret, server, cafile, bool(values.get("insecure", False)),
                    bool(values.get("direct_tls", False)), frozenset(bare_jid(a) for a in admins),
                    MappingProxyType(dict(values["options"])), level, **delays)


def load_settings(argv: Sequence[str] | None, *, prog: str, description: str = "",
                  options: Sequence[Option] = ()) -> Settings:
    """Settings from ``argv`` (``sys.argv[1:]`` when ``None``) and the ``--config`` file.

    ``--help`` and malformed flags exit through argparse; anything else wrong raises
    :class:`ConfigError`.
    """
    args = _parser(prog, description, options).parse_args(argv)
    return _settings(_merged(args, options))

"""Tests for xmppcore.config: TOML loading, validation messages, paths, overrides, docs/example."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from xmppcore.config import (
    AuthConfig, C2SConfig, Config, ConfigError, ModulesConfig, StorageConfig, TLSConfig,
    config_from_mapping, load_config, options_from_mapping, resolved_data_dir, resolved_storage_path,
    with_overrides,
)

REPO = Path(__file__).resolve().parents[1]
BASE = Path("/srv/xmpp")


def from_toml(text: str, base_dir: Path = BASE) -> Config:
    return config_from_mapping(tomllib.loads(text), source="xmppcore.toml", base_dir=base_dir)


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        from_toml(text)
    return str(info.value)


def all_options() -> Iterator[tuple[str, Any]]:
    """(dotted key, default) for every option a file can set."""
    for top in dataclasses.fields(Config):
        default = getattr(Config(), top.name)
        if dataclasses.is_dataclass(default):
            for sub in dataclasses.fields(default):
                if (top.name, sub.name) != ("modules", "options"):
                    yield f"{top.name}.{sub.name}", getattr(default, sub.name)
        elif top.name != "source":
            yield top.name, default


# --- defaults ------------------------------------------------------------------------------------

def test_no_file_gives_the_documented_defaults() -> None:
    config = load_config(None)
    assert config == Config()
    assert config.source == "<defaults>"
    assert config.domains == ("localhost",)
    assert config.c2s.bind == ("127.0.0.1",)
    assert (config.c2s.port, config.c2s.direct_tls_port) == (5222, 5223)
    assert config.c2s.sasl_mechanisms[0] == "SCRAM-SHA-256-PLUS"
    assert config.storage.driver == "sqlite"
    assert config.modules.options == {}


def test_defaults_resolve_paths_against_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolved_data_dir(Config()) == tmp_path / "xmppcore-data"
    assert resolved_storage_path(Config()) == tmp_path / "xmppcore-data" / "xmppcore.sqlite3"


def test_an_empty_file_is_the_defaults_with_paths_next_to_it(tmp_path: Path) -> None:
    path = tmp_path / "xmppcore.toml"
    path.write_text("")
    config = load_config(path)
    assert config.source == str(path)
    assert config.data_dir == str(tmp_path / "xmppcore-data")
    assert dataclasses.replace(config, data_dir=Config().data_dir, source="<defaults>") == Config()


def test_config_is_immutable() -> None:
    config = from_toml("[modules.muc]\nrooms = ['a']\n")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.c2s.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.modules.options["muc"]["rooms"] = ()  # type: ignore[index]
    assert config.modules.options["muc"]["rooms"] == ("a",)


def test_the_postgres_dsn_stays_out_of_repr() -> None:
    config = from_toml('[storage]\ndriver = "postgres"\ndsn = "postgresql://u:hunter2@db/x"\n')
    assert config.storage.dsn == "postgresql://u:hunter2@db/x"
    assert "hunter2" not in repr(config)


# --- a full file ---------------------------------------------------------------------------------

FULL = """
domains = ["Example.ORG", "chat.example.org"]
data_dir = "/var/lib/xmppcore"
log_level = "debug"

[c2s]
bind = ["0.0.0.0", "::", "localhost"]
port = 15222
direct_tls_port = -1
tls_required = false
max_stanza_size = 1024
auth_timeout = 5
max_auth_failures = 5
keepalive_interval = 0
sasl_mechanisms = ["SCRAM-SHA-256", "PLAIN"]
max_unauthenticated_per_ip = 7

[tls]
certificate = "certs/fullchain.pem"
key = "/etc/ssl/private/key.pem"

[storage]
driver = "postgres"
path = "db.sqlite3"
dsn = "postgresql://localhost/xmppcore"

[auth]
scram_iterations = 4096
failure_delay = 0.5
failure_delay_max = 0.5
failure_window = 60

[modules]
enabled = ["ping"]

[modules.ping]
interval = 30
peers = ["a", "b"]
"""


def test_a_full_file_sets_every_option(tmp_path: Path) -> None:
    path = tmp_path / "full.toml"
    path.write_text(FULL)
    config = load_config(path)
    assert config.domains == ("example.org", "chat.example.org")  # normalised like JID domainparts
    assert (config.data_dir, config.log_level) == ("/var/lib/xmppcore", "debug")
    assert config.c2s == C2SConfig(
        bind=("0.0.0.0", "::", "localhost"), port=15222, direct_tls_port=-1, tls_required=False,
        max_stanza_size=1024, auth_timeout=5.0, max_auth_failures=5, keepalive_interval=0.0,
        sasl_mechanisms=("SCRAM-SHA-256", "PLAIN"), max_unauthenticated_per_ip=7)
    assert isinstance(config.c2s.auth_timeout, float)
    assert config.tls == TLSConfig(certificate=str(tmp_path / "certs/fullchain.pem"), key="/etc/ssl/private/key.pem")
    assert config.storage == StorageConfig("postgres", str(tmp_path / "db.sqlite3"), "postgresql://localhost/xmppcore")
    assert config.auth == AuthConfig(4096, 0.5, 0.5, 60.0)
    assert config.modules == ModulesConfig(enabled=("ping",), options={"ping": {"interval": 30, "peers": ("a", "b")}})
    assert config.source == str(path)


# --- error messages ------------------------------------------------------------------------------

def test_wrong_type_names_file_key_expectation_and_value() -> None:
    assert error_of('[c2s]\nport = "abc"\n') == (
        "xmppcore.toml: c2s.port: expected an integer from 0 to 65535, or -1 to disable, got 'abc'")


@pytest.mark.parametrize(("text", "message"), [
    ("[c2s]\ntls_required = 1", "c2s.tls_required: expected true or false, got 1"),
    ("[c2s]\nmax_stanza_size = true", "c2s.max_stanza_size: expected an integer from 1024 to 16777216, got true"),
    ("[c2s]\nport = 5222.0", "c2s.port: expected an integer from 0 to 65535, or -1 to disable, got 5222.0"),
    ("[c2s]\nauth_timeout = '30'", "c2s.auth_timeout: expected a number greater than 0, got '30'"),
    ("[auth]\nfailure_window = inf", "auth.failure_window: expected a number greater than 0, got inf"),
    ("[auth]\nfailure_delay = nan", "auth.failure_delay: expected a number of at least 0, got nan"),
    ("log_level = 5", "log_level: expected one of 'debug', 'info', 'warning', 'error', got 5"),
    ("[tls]\ncertificate = ['a']", "tls.certificate: expected a string, got ['a']"),
    ("c2s = 5", "c2s: expected a table, got 5"),
    ("data_dir = ''", "data_dir: expected a non-empty path, got ''"),
])
def test_wrong_types_are_refused(text: str, message: str) -> None:
    assert error_of(text) == f"xmppcore.toml: {message}"


@pytest.mark.parametrize(("key", "bad", "good"), [
    ("c2s.port", -2, 65535), ("c2s.port", 65536, 0), ("c2s.direct_tls_port", 70000, -1),
    ("c2s.max_stanza_size", 1023, 16777216), ("c2s.max_stanza_size", 16777217, 1024),
    ("c2s.auth_timeout", 0, 0.001), ("c2s.max_auth_failures", 1, 2), ("c2s.max_auth_failures", 6, 5),
    ("c2s.keepalive_interval", -0.5, 0), ("c2s.max_unauthenticated_per_ip", 0, 100000),
    ("c2s.max_unauthenticated_per_ip", 100001, 1), ("auth.scram_iterations", 4095, 10_000_000),
    ("auth.scram_iterations", 10_000_001, 4096), ("auth.failure_delay", -1, 0), ("auth.failure_window", 0, 1),
])
def test_ranges_are_enforced_at_both_edges(key: str, bad: float, good: float) -> None:
    table, name = key.split(".")
    with pytest.raises(ConfigError) as info:
        from_toml(f"[{table}]\n{name} = {bad}\n")
    assert info.value.key == key
    assert info.value.reason.startswith("expected ") and info.value.reason.endswith(f"got {bad}")
    assert getattr(getattr(from_toml(f"[{table}]\n{name} = {good}\n"), table), name) == good


def test_bad_choices_list_the_choices_and_suggest_one() -> None:
    assert error_of('[storage]\ndriver = "postgresql"') == (
        "xmppcore.toml: storage.driver: expected one of 'sqlite', 'postgres', 'memory', got 'postgresql'"
        " (did you mean 'postgres'?)")
    assert error_of('log_level = "verbose"').endswith("got 'verbose'")
    assert error_of('[c2s]\nsasl_mechanisms = ["PLAIN", "DIGEST-MD5"]').startswith(
        "xmppcore.toml: c2s.sasl_mechanisms[1]: expected one of 'SCRAM-SHA-256-PLUS', ")


@pytest.mark.parametrize(("text", "message"), [
    ("[c2s]\nprot = 5222", "c2s.prot: unknown option (did you mean 'port'?)"),
    ("domain = ['a.example']", "domain: unknown option (did you mean 'domains'?)"),
    ("[c2]\nport = 1", "c2: unknown option (did you mean 'c2s'?)"),
    ("[auth]\nfailure_dely = 1", "auth.failure_dely: unknown option (did you mean 'failure_delay'?)"),
    ("[modules]\nenable = []", "modules.enable: unknown option (did you mean 'enabled'?)"),
    ("[modules]\nmuc = 5", "modules.muc: unknown option (a module's options go in a [modules.muc] table)"),
    ("[tls]\nzzz = 1", "tls.zzz: unknown option"),
    ("source = 'x'", "source: unknown option (did you mean 'storage'?)"),
])
def test_unknown_options_are_errors_with_a_suggestion(text: str, message: str) -> None:
    assert error_of(text) == f"xmppcore.toml: {message}"


@pytest.mark.parametrize(("text", "message"), [
    ('domains = "example.org"', 'domains: expected a list, got \'example.org\' (write ["example.org"])'),
    ("domains = []", "domains: expected at least one entry, got []"),
    ("[c2s]\nsasl_mechanisms = []", "c2s.sasl_mechanisms: expected at least one entry, got []"),
    ("domains = ['a.example', 'A.Example']", "domains[1]: duplicate entry 'A.Example'"),
    ("domains = ['ok.example', 'exa mple']", "domains[1]: expected a domain name, got 'exa mple'"),
    ("domains = ['user@example.org']", "domains[0]: expected a domain name, got 'user@example.org'"),
    ("[c2s]\nbind = ['1.2.3.4:5222']", "c2s.bind[0]: expected an IP address or host name, got '1.2.3.4:5222'"),
    ("[c2s]\nbind = ['[::1]']", "c2s.bind[0]: expected an IP address or host name, got '[::1]'"),
    ("[modules]\nenabled = ['ping', 3]", "modules.enabled[1]: expected a string, got 3"),
    ("[modules.enabled]\nx = 1", "modules.enabled: expected a list, got a table"),
])
def test_list_errors_point_at_the_entry(text: str, message: str) -> None:
    assert error_of(text) == f"xmppcore.toml: {message}"


@pytest.mark.parametrize(("text", "message"), [
    ('[tls]\ncertificate = "c.pem"', "tls.key: must be set together with tls.certificate"),
    ('[tls]\nkey = "k.pem"', "tls.certificate: must be set together with tls.key"),
    ('[storage]\ndriver = "postgres"', "storage.dsn: required when storage.driver is 'postgres'"),
    ("[c2s]\nport = 5223", "c2s.direct_tls_port: same port as c2s.port (5223); choose another, or -1 to disable"),
    ("[auth]\nfailure_delay = 3\nfailure_delay_max = 2", "auth.failure_delay_max: must be at least auth.failure_delay (3)"),
])
def test_cross_field_rules(text: str, message: str) -> None:
    assert error_of(text) == f"xmppcore.toml: {message}"


def test_ephemeral_and_disabled_ports_may_coincide() -> None:
    assert from_toml("[c2s]\nport = 0\ndirect_tls_port = 0").c2s.port == 0
    assert from_toml("[c2s]\nport = -1\ndirect_tls_port = -1").c2s.direct_tls_port == -1


def test_a_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('domains = ["a.example"]\n[c2s]\nport = \n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 3
    assert str(info.value).startswith(f"{path}: invalid TOML at line 3, column ")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: no such file$"):
        load_config(tmp_path / "missing.toml")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'log_level = "d\xe9bug"\n')
    with pytest.raises(ConfigError, match=r"not UTF-8"):
        load_config(latin1)


def test_config_error_exposes_its_parts() -> None:
    with pytest.raises(ConfigError) as info:
        from_toml("[c2s]\nport = 99999")
    assert (info.value.source, info.value.key, info.value.line) == ("xmppcore.toml", "c2s.port", None)
    assert info.value.reason == "expected an integer from 0 to 65535, or -1 to disable, got 99999"


# --- paths ---------------------------------------------------------------------------------------

def test_relative_paths_are_taken_from_the_file_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "xmppcore.toml"
    path.write_text('data_dir = "../state"\n[tls]\ncertificate = "c.pem"\nkey = "/abs/k.pem"\n'
                    '[storage]\npath = "db/x.sqlite3"\n')
    monkeypatch.chdir(tmp_path)  # and load it through a relative path, from elsewhere
    config = load_config(Path("etc/xmppcore.toml"))
    assert config.source == "etc/xmppcore.toml"
    assert resolved_data_dir(config) == tmp_path / "etc" / ".." / "state"
    assert config.tls.certificate == str(tmp_path / "etc" / "c.pem")
    assert config.tls.key == "/abs/k.pem"
    assert resolved_storage_path(config) == tmp_path / "etc" / "db" / "x.sqlite3"


def test_home_directory_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert from_toml('data_dir = "~/xmpp"').data_dir == str(tmp_path / "xmpp")


def test_storage_path_defaults_to_the_data_dir() -> None:
    config = from_toml('data_dir = "state"')
    assert resolved_storage_path(config) == BASE / "state" / "xmppcore.sqlite3"


# --- overrides -----------------------------------------------------------------------------------

def test_overrides_replace_only_what_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    base = from_toml(FULL)
    config = with_overrides(base, domains=["other.example"], bind=["::1"], data_dir="here", c2s_port=0,
                            direct_tls_port=0, storage_driver="memory")
    assert config.domains == ("other.example",)
    assert config.c2s.bind == ("::1",)
    assert (config.c2s.port, config.c2s.direct_tls_port) == (0, 0)
    assert config.data_dir == str(tmp_path / "here")  # relative to the shell, not the file
    assert config.storage.driver == "memory"
    assert config.c2s.sasl_mechanisms == base.c2s.sasl_mechanisms
    assert config.source == base.source
    assert with_overrides(base) == base


@pytest.mark.parametrize(("overrides", "message"), [
    ({"c2s_port": 70000}, "c2s.port: expected an integer from 0 to 65535, or -1 to disable, got 70000"),
    ({"direct_tls_port": 5222}, "c2s.direct_tls_port: same port as c2s.port (5222); choose another, or -1 to disable"),
    ({"storage_driver": "postgres"}, "storage.dsn: required when storage.driver is 'postgres'"),
    ({"storage_driver": "mysql"}, "storage.driver: expected one of 'sqlite', 'postgres', 'memory', got 'mysql'"),
    ({"domains": []}, "domains: expected at least one entry, got []"),
    ({"domains": "example.org"}, "domains: expected a list, got 'example.org'"),
    ({"bind": ["not an address"]}, "c2s.bind[0]: expected an IP address or host name, got 'not an address'"),
    ({"data_dir": ""}, "data_dir: expected a non-empty path, got ''"),
])
def test_overrides_are_validated_like_the_file(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        with_overrides(Config(), **overrides)
    assert str(info.value).startswith(f"<command line>: {message}")


# --- module options ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _PingOptions:
    interval: float = 60.0
    peers: tuple[str, ...] = ()
    strict: bool = False

    def __post_init__(self) -> None:
        if self.interval > 3600:
            raise ValueError("interval: at most 3600 seconds")


@dataclasses.dataclass(frozen=True)
class _NeedsName:
    name: str


def test_module_options_are_validated_against_their_dataclass() -> None:
    table = from_toml(FULL).modules.options["ping"]
    assert options_from_mapping(_PingOptions, table, source="f.toml", key="modules.ping") == _PingOptions(30.0, ("a", "b"))
    cases: list[tuple[type, dict[str, Any], str]] = [
        (_PingOptions, {"strict": "yes"}, "f.toml: modules.ping.strict: expected true or false, got 'yes'"),
        (_PingOptions, {"intervall": 1}, "f.toml: modules.ping.intervall: unknown option (did you mean 'interval'?)"),
        (_PingOptions, {"peers": [1]}, "f.toml: modules.ping.peers[0]: expected a string, got 1"),
        (_PingOptions, {"interval": 7200}, "f.toml: modules.ping: interval: at most 3600 seconds"),
        (_NeedsName, {}, "f.toml: modules.ping.name: required option is missing"),
    ]
    for options_type, data, message in cases:
        with pytest.raises(ConfigError) as info:
            options_from_mapping(options_type, data, source="f.toml", key="modules.ping")
        assert str(info.value) == message


# --- documentation and example -------------------------------------------------------------------

def test_the_example_file_loads_and_shows_the_defaults() -> None:
    example = REPO / "xmppcore.example.toml"
    config = load_config(example)
    assert config == config_from_mapping({}, source=str(example), base_dir=example.parent)
    text = example.read_text()
    for key, _ in all_options():
        assert re.search(rf"^{re.escape(key.rpartition('.')[2])} = ", text, re.MULTILINE), key


def module_options() -> list[tuple[str, object]]:
    """``modules.<name>.<field>`` and its default, for every module that takes options."""
    import importlib
    import pkgutil

    import xmppcore.modules

    found = []
    for info in pkgutil.iter_modules(xmppcore.modules.__path__):
        module = importlib.import_module(f"xmppcore.modules.{info.name}")
        options = getattr(module, "Options", None)
        if options is not None and hasattr(module, "setup"):
            found += [(f"modules.{info.name}.{f.name}", f.default) for f in dataclasses.fields(options)]
    return found


def test_the_reference_documents_every_option_with_its_default() -> None:
    rows = {match[1]: match[2] for match in re.finditer(
        r"^\| `([a-z0-9_.]+)` \| [^|]+ \| `([^`]*)` \|", (REPO / "docs" / "config.md").read_text(), re.MULTILINE)}
    options = dict(all_options()) | dict(module_options())
    assert set(rows) == set(options)
    for key, default in options.items():
        documented = tomllib.loads(f"value = {rows[key]}")["value"]
        assert (tuple(documented) if isinstance(documented, list) else documented) == default, key


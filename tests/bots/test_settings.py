"""Bot settings from the command line and a TOML file: precedence, paths, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bots import ConfigError, Mode, Option, load_settings
from bots.notifier import OPTIONS as NOTIFIER

OPTIONS = (Option("to", "recipient", required=True), Option("webhook", "address", default="127.0.0.1:8080"))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    write(tmp_path / "bot.pass", "s3cret\n")
    write(tmp_path / "component.secret", "shared")
    write(tmp_path / "ca.pem", "not parsed here")
    return tmp_path


def test_client_from_the_command_line(secrets: Path) -> None:
    settings = load_settings(["--jid", "bot@example.org/r", "--password-file", str(secrets / "bot.pass"),
                              "--server", "127.0.0.1:5333", "--cafile", str(secrets / "ca.pem"),
                              "--admin", "Alice@Example.org", "--admin", "bob@example.org/x",
                              "--log-level", "debug", "--reconnect-max-delay", "5"], prog="t")
    assert (settings.mode, settings.jid, settings.secret) == (Mode.CLIENT, "bot@example.org/r", "s3cret")
    assert settings.server == ("127.0.0.1", 5333)
    assert settings.cafile == secrets / "ca.pem"
    assert settings.admins == {"alice@example.org", "bob@example.org"}
    assert (settings.log_level, settings.reconnect_max_delay, settings.insecure) == ("DEBUG", 5.0, False)
    assert "s3cret" not in repr(settings)


def test_component_with_default_port(secrets: Path) -> None:
    settings = load_settings(["--component", "bot.example.org", "--secret-file",
                              str(secrets / "component.secret"), "--server", "localhost"], prog="t")
    assert (settings.mode, settings.jid, settings.secret) == (Mode.COMPONENT, "bot.example.org", "shared")
    assert settings.server == ("localhost", 5347)


def test_file_paths_are_relative_to_the_file_and_flags_win(secrets: Path) -> None:
    config = write(secrets / "bot.toml", """
jid = "bot@example.org"
password_file = "bot.pass"
server = "[::1]:5999"
direct_tls = true
admins = ["carol@example.org"]
reconnect_delay = 2
[options]
to = "alice@example.org"
""")
    settings = load_settings(["--config", str(config), "--webhook", "127.0.0.1:9"], prog="t", options=OPTIONS)
    assert settings.secret == "s3cret"
    assert (settings.server, settings.direct_tls, settings.reconnect_delay) == (("::1", 5999), True, 2.0)
    assert settings.admins == {"carol@example.org"}
    assert settings.options == {"to": "alice@example.org", "webhook": "127.0.0.1:9"}
    defaulted = load_settings(["--config", str(config)], prog="t", options=OPTIONS)
    assert defaulted.options["webhook"] == "127.0.0.1:8080"
    overridden = load_settings(["--config", str(config), "--to", "dave@example.org"], prog="t", options=OPTIONS)
    assert overridden.options["to"] == "dave@example.org"


@pytest.mark.parametrize(("argv", "message"), [
    ([], "exactly one of --jid"),
    (["--jid", "a@b", "--component", "c.d"], "exactly one of --jid"),
    (["--jid", "a@b"], "--jid needs --password-file"),
    (["--jid", "a@b", "--password-file", "{dir}/missing"], "cannot read the password file"),
    (["--jid", "a@b", "--password-file", "{dir}/empty"], "is empty"),
    (["--jid", "a@@b", "--password-file", "{dir}/bot.pass"], "not a valid JID"),
    (["--jid", "a@b", "--password-file", "{dir}/bot.pass", "--server", "h:99999"], "port 1-65535"),
    (["--jid", "a@b", "--password-file", "{dir}/bot.pass", "--cafile", "{dir}/nope.pem"], "is not a file"),
    (["--jid", "a@b", "--password-file", "{dir}/bot.pass", "--log-level", "loud"], "log level 'LOUD'"),
    (["--jid", "a@b", "--password-file", "{dir}/bot.pass", "--reconnect-delay", "0"], "must be positive"),
    (["--jid", "a@b", "--password-file", "{dir}/bot.pass", "--reconnect-delay", "9",
      "--reconnect-max-delay", "3"], "must not exceed"),
    (["--component", "c.d", "--secret-file", "{dir}/component.secret"], "needs --server"),
    (["--component", "me@c.d", "--secret-file", "{dir}/component.secret", "--server", "h"], "expected a domain"),
])
def test_command_line_errors(secrets: Path, argv: list[str], message: str) -> None:
    write(secrets / "empty", "\n")
    with pytest.raises(ConfigError, match=message):
        load_settings([arg.format(dir=secrets) for arg in argv], prog="t")


@pytest.mark.parametrize(("toml", "message"), [
    ('jid = "a@b"\npasword_file = "x"', "unknown setting 'pasword_file'"),
    ("jid = 5", "jid has the wrong type"),
    ('jid = "a@b"\nreconnect_delay = true', "reconnect_delay has the wrong type"),
    ('jid = "a@b"\nadmins = "alice@b"', "admins has the wrong type"),
    ('jid = "a@b"\npassword_file = "bot.pass"\n[options]\nfrom = "x"', r"\[options\] 'from' is not an option"),
    ('jid = "a@b"\npassword_file = "bot.pass"', "missing --to"),
    ("jid = ", "not valid TOML"),
])
def test_file_errors_name_the_file(secrets: Path, toml: str, message: str) -> None:
    config = write(secrets / "bot.toml", toml)
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(["--config", str(config)], prog="t", options=OPTIONS)
    if "missing --to" not in message:
        assert str(config) in str(caught.value)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(["--config", str(tmp_path / "none.toml")], prog="t")



def test_bot_options_are_checked_when_loaded(secrets: Path) -> None:
    base = ["--jid", "n@example.org", "--password-file", str(secrets / "bot.pass")]
    ok = load_settings([*base, "--to", "alice@example.org/desk", "--webhook", "127.0.0.1:0"],
                       prog="t", options=NOTIFIER)
    assert ok.options == {"to": "alice@example.org/desk", "webhook": "127.0.0.1:0"}
    with pytest.raises(ConfigError, match="--to 'a@@b'"):
        load_settings([*base, "--to", "a@@b"], prog="t", options=NOTIFIER)
    with pytest.raises(ConfigError, match="webhook '127.0.0.1:70000': expected HOST or HOST:PORT with a port 0-65535"):
        load_settings([*base, "--to", "a@b", "--webhook", "127.0.0.1:70000"], prog="t", options=NOTIFIER)

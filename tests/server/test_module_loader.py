"""The module loader (DESIGN: The module contract): names, options, dependency order, unloading."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

import pytest

from tests.server.harness import DEFAULT_MODULES, error_of, xml
from xmppcore.config import Config, ConfigError
from xmppcore.jid import JID
from xmppcore.server import hooks
from xmppcore.server.app import Server
from xmppcore.server.host import Host
from xmppcore.server.iq import IqRequest, IqScope
from xmppcore.server.module_api import ModuleContext
from xmppcore.server.modules import ModuleError, load_modules, module_order, unload_modules
from xmppcore.stanza.model import IqType
from xmppcore.storage import create_driver
from xmppcore.xml.element import Element

Setup = Callable[[ModuleContext], None]


@pytest.fixture
def server() -> Server:
    # Loading only registers: no storage I/O, no listeners, nothing written to disk.
    return Server(Config(), storage=create_driver("memory"))


@pytest.fixture
def host(server: Server) -> Host:
    return server.hosts["localhost"]


@pytest.fixture
def fake_module(monkeypatch: pytest.MonkeyPatch) -> Callable[..., types.ModuleType]:
    """Install ``xmppcore.modules.<name>`` for this test only (the loader imports by name)."""
    def make(name: str, setup: Setup | None = None, depends: tuple[str, ...] = ()) -> types.ModuleType:
        module = types.ModuleType(f"xmppcore.modules.{name}", f"XEP-0000: test module {name}.")
        module.DEPENDS = depends  # type: ignore[attr-defined]
        module.PROTOCOL = ()  # type: ignore[attr-defined]
        if setup is not None:
            module.setup = setup  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, module.__name__, module)
        return module

    return make


def names(modules: list[types.ModuleType]) -> list[str]:
    return [m.__name__.rsplit(".", 1)[1] for m in modules]


async def ping(host: Host) -> Element:
    """The host's answer to a ping (a get is always answered)."""
    stanza = xml("<iq from='alice@localhost/r' to='localhost' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
    reply = await host.iq.dispatch(IqScope.HOST, stanza, JID.parse("alice@localhost/r"), JID.parse("localhost"))
    assert reply is not None
    return reply


# -- names ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "message"), [
    ("no_such_module", "no module named 'no_such_module'"),
    ("Disco", "not a module name"),
    ("../etc", "not a module name"),
    ("server.app", "not a module name"),
])
def test_unknown_module_names_are_refused(server: Server, host: Host, name: str, message: str) -> None:
    with pytest.raises(ModuleError, match=message.replace(".", r"\.")):
        load_modules(server, host, ["disco", name], {})
    assert host.modules == {} and host.disco.features[IqScope.HOST] == []


def test_a_module_without_setup_is_refused(fake_module: Callable[..., types.ModuleType]) -> None:
    fake_module("no_setup")
    with pytest.raises(ModuleError, match="no setup"):
        module_order(["no_setup"])


# -- options -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("options", "key"), [
    ({"version": {"show_oss": True}}, "modules.version.show_oss"),        # unknown key
    ({"version": {"show_os": "yes"}}, "modules.version.show_os"),         # wrong type
    ({"ping": {"interval": 5}}, "modules.ping"),                           # ping takes no options
    ({"muc": {"max_rooms": 5}}, "modules.muc"),                            # not enabled
])
def test_bad_options_name_the_module_and_key(server: Server, host: Host, options: dict[str, dict[str, object]],
                                            key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_modules(server, host, ["version", "ping"], options, source="xmppcore.toml")
    assert caught.value.key == key
    assert str(caught.value).startswith(f"xmppcore.toml: {key}: ")
    assert host.modules == {}


def test_valid_options_reach_the_module(server: Server, host: Host) -> None:
    load_modules(server, host, ["version"], {"version": {"show_os": True}})
    assert host.modules["version"].options.show_os is True


# -- dependencies ---------------------------------------------------------------------------------
def test_dependencies_are_loaded_first(server: Server, host: Host, fake_module: Callable[..., types.ModuleType]) -> None:
    order: list[str] = []

    def setup_for(name: str) -> Setup:
        def setup(mod: ModuleContext) -> None:
            order.append(name)
            if name == "dep_base":
                mod.export({"from": "dep_base"})
            else:
                assert mod.dependency("dep_base") == {"from": "dep_base"}
        return setup

    fake_module("dep_base", setup_for("dep_base"))
    fake_module("dep_middle", setup_for("dep_middle"), depends=("dep_base",))
    fake_module("dep_top", setup_for("dep_top"), depends=("dep_middle", "dep_base"))
    assert names(module_order(["dep_top", "dep_base"])) == ["dep_base", "dep_middle", "dep_top"]
    load_modules(server, host, ["dep_top"], {})
    assert order == ["dep_base", "dep_middle", "dep_top"]
    assert list(host.modules) == order


def test_a_dependency_cycle_is_refused(fake_module: Callable[..., types.ModuleType]) -> None:
    fake_module("cyc_a", lambda mod: None, depends=("cyc_b",))
    fake_module("cyc_b", lambda mod: None, depends=("cyc_a",))
    with pytest.raises(ModuleError, match="dependency cycle: cyc_a -> cyc_b -> cyc_a"):
        module_order(["cyc_a"])


# -- unloading ------------------------------------------------------------------------------------
async def test_unload_removes_features_handlers_and_hooks(server: Server, host: Host) -> None:
    load_modules(server, host, DEFAULT_MODULES, {})
    assert "urn:xmpp:ping" in host.disco.features[IqScope.HOST]
    assert (await ping(host)).get("type") == "result"
    assert host.bus.has_handlers(hooks.MESSAGE_BARE) and host.bus.has_handlers(hooks.SESSION_CLOSED)
    unload_modules(host)
    assert host.modules == {}
    for scope in IqScope:
        assert host.disco.features[scope] == [] and host.disco.identities[scope] == []
    assert error_of(await ping(host)) == ("cancel", "service-unavailable")
    module_hooks: tuple[hooks.Hook[Any], ...] = (
        hooks.MESSAGE_BARE, hooks.PRESENCE_BROADCAST, hooks.PRESENCE_BARE, hooks.SESSION_CLOSED)
    for hook in module_hooks:
        assert not host.bus.has_handlers(hook), hook.name
    # Everything was undone, so loading again raises no duplicate-handler error.
    load_modules(server, host, DEFAULT_MODULES, {})
    assert (await ping(host)).get("type") == "result"


async def test_a_failing_setup_undoes_the_modules_loaded_before_it(
    server: Server, host: Host, fake_module: Callable[..., types.ModuleType],
) -> None:
    def broken(mod: ModuleContext) -> None:
        mod.add_feature("urn:example:broken")
        raise RuntimeError("setup failed")

    fake_module("broken_setup", broken)
    with pytest.raises(RuntimeError, match="setup failed"):
        load_modules(server, host, ["disco", "ping", "message", "broken_setup"], {})
    assert host.modules == {} and host.exports == {}
    assert host.disco.features[IqScope.HOST] == []
    assert not host.bus.has_handlers(hooks.MESSAGE_BARE)
    assert error_of(await ping(host)) == ("cancel", "service-unavailable")


def test_two_modules_claiming_one_iq_key_fail_to_load(
    server: Server, host: Host, fake_module: Callable[..., types.ModuleType],
) -> None:
    async def handler(request: IqRequest) -> None:
        return None

    fake_module("ping_again", lambda mod: mod.iq_handler("urn:xmpp:ping", "ping", handler, types=(IqType.GET,)))
    with pytest.raises(ValueError, match="already registered"):
        load_modules(server, host, ["ping", "ping_again"], {})
    assert host.modules == {}


def test_each_host_has_its_own_registrations(fake_module: Callable[..., types.ModuleType]) -> None:
    server = Server(Config(domains=("localhost", "example.org")), storage=create_driver("memory"))
    one, two = server.hosts["localhost"], server.hosts["example.org"]
    load_modules(server, one, ["ping"], {})
    assert "urn:xmpp:ping" in one.disco.features[IqScope.HOST]
    assert two.disco.features[IqScope.HOST] == []

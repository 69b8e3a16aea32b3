"""Module loader: find ``xmppcore.modules.<name>``, order by ``DEPENDS``, validate options, set up.

Options come from ``[modules.<name>]`` and are checked against the module's ``Options``
dataclass: unknown keys and wrong types are refused at start, naming the module and key.
"""

from __future__ import annotations

import importlib
import re
import types
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..config import ConfigError, options_from_mapping
from .host import Host
from .module_api import ModuleContext

if TYPE_CHECKING:
    from .app import Server

__all__ = ["ModuleError", "load_modules", "unload_modules", "import_module", "module_order", "validate_modules"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ModuleError(Exception):
    """A module cannot be loaded: unknown name, bad options, dependency cycle."""


def import_module(name: str) -> types.ModuleType:
    if not _NAME.match(name):
        raise ModuleError(f"modules.enabled: {name!r} is not a module name")
    try:
        module = importlib.import_module(f"xmppcore.modules.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"xmppcore.modules.{name}":
            raise ModuleError(f"modules.enabled: no module named {name!r}") from None
        raise
    if not callable(getattr(module, "setup", None)):
        raise ModuleError(f"xmppcore.modules.{name} has no setup(mod) function")
    return module


def _short_name(module: types.ModuleType) -> str:
    """``xmppcore.modules.roster`` -> ``roster``: the name used in the configuration."""
    return module.__name__.rsplit(".", 1)[1]


def module_order(names: Iterable[str]) -> list[types.ModuleType]:
    """The enabled modules plus their dependencies, each after what it depends on."""
    ordered: list[types.ModuleType] = []
    done: set[str] = set()
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            raise ModuleError(f"dependency cycle: {' -> '.join(visiting + [name])}")
        visiting.append(name)
        module = import_module(name)
        for dep in getattr(module, "DEPENDS", ()):
            visit(dep)
        visiting.pop()
        done.add(name)
        ordered.append(module)

    for name in names:
        visit(name)
    return ordered


def _options(module: types.ModuleType, name: str, raw: Mapping[str, Any], source: str) -> Any:
    cls = getattr(module, "Options", None)
    if cls is None:
        if raw:
            raise ConfigError(source, f"modules.{name}", "this module takes no options")
        return None
    return options_from_mapping(cls, raw, source=source, key=f"modules.{name}")


def validate_modules(
    names: Iterable[str], options: Mapping[str, Mapping[str, Any]], *, source: str = "<defaults>",
) -> list[tuple[types.ModuleType, Any]]:
    """Each module to load, in order, with its validated options; raises on any problem."""
    names = list(names)
    ordered = module_order(names)
    loaded = {_short_name(m) for m in ordered}
    for name in options:
        if name not in loaded:
            raise ConfigError(source, f"modules.{name}", "options for a module that is not enabled")
    return [
        (module, _options(module, _short_name(module), options.get(_short_name(module), {}), source))
        for module in ordered
    ]


def load_modules(
    server: Server, host: Host, names: Iterable[str], options: Mapping[str, Mapping[str, Any]],
    *, source: str = "<defaults>",
) -> None:
    """Set up every module on ``host``; on failure, unload what was loaded and raise."""
    prepared = validate_modules(names, options, source=source)
    try:
        for module, module_options in prepared:
            name = _short_name(module)
            ctx = ModuleContext(name, host, server, module_options)
            host.modules[name] = ctx
            module.setup(ctx)
    except Exception:
        unload_modules(host)
        raise


def unload_modules(host: Host) -> None:
    for ctx in reversed(list(host.modules.values())):
        ctx.unload()
    host.modules.clear()

"""DESIGN: Four layers — imports flow one way, and the pure core never touches the outside world.

Every file of ``xmppcore/xml``, ``xmppcore/stanza`` and ``xmppcore/protocol`` is parsed (never
imported) and its imports, absolute or relative, anywhere in the file (``TYPE_CHECKING`` blocks
and function bodies included), are checked against the rule.  ``xmppcore/server`` must not
import ``xmppcore.modules``: modules are loaded by name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parent.parent / "xmppcore"
PURE_LAYERS = ("xml", "stanza", "protocol")
# I/O, the clock, and every layer above the pure core (DESIGN rule 1).
FORBIDDEN_IN_PURE = (
    "asyncio", "socket", "ssl", "time",
    "xmppcore.server", "xmppcore.transport", "xmppcore.storage", "xmppcore.cluster", "xmppcore.modules",
)


def module_name(path: Path) -> str:
    """``xmppcore/protocol/sasl/scram.py`` -> ``xmppcore.protocol.sasl.scram``."""
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, name: str, *, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """``(line, absolute module name)`` for each import in ``source`` of module ``name``.

    ``from x import y`` yields both ``x`` and ``x.y`` (``y`` may be a submodule), so
    ``from .. import server`` is caught as well as ``from ..server import Server``.
    """
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                up = len(base_parts) - (node.level - 1)
                assert up > 0, f"{name}:{node.lineno}: relative import beyond the top-level package"
                base = ".".join(base_parts[:up] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}"


def violations(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in paths:
        name = module_name(path)
        source = path.read_text(encoding="utf-8")
        for line, imported in imported_modules(source, name, is_package=path.name == "__init__.py"):
            for banned in forbidden:
                if imported == banned or imported.startswith(banned + "."):
                    found.append(f"{path.relative_to(PACKAGE_ROOT.parent)}:{line}: imports {imported}")
    return sorted(set(found))


def python_files(*layers: str) -> list[Path]:
    return sorted(p for layer in layers for p in (PACKAGE_ROOT / layer).rglob("*.py"))


def test_the_pure_layers_exist() -> None:
    # Guards the walk itself: an empty file list would make the rule pass vacuously.
    for layer in PURE_LAYERS:
        assert python_files(layer), f"no Python files under xmppcore/{layer}"


def test_the_pure_core_imports_no_io_clock_or_upper_layer() -> None:
    assert violations(python_files(*PURE_LAYERS), FORBIDDEN_IN_PURE) == []


def test_xml_and_stanza_never_import_the_protocol_layer() -> None:
    # xml <- stanza <- protocol: the negotiation engine sits on top of the stanza vocabulary.
    assert violations(python_files("xml", "stanza"), ("xmppcore.protocol",)) == []


def test_the_server_never_imports_the_modules() -> None:
    assert python_files("server")
    assert violations(python_files("server"), ("xmppcore.modules",)) == []


# -- the checker can fail ------------------------------------------------------------------------
@pytest.mark.parametrize(("source", "name", "expected"), [
    ("import asyncio", "xmppcore.xml.parser", "asyncio"),
    ("import time as clock", "xmppcore.xml.parser", "time"),
    ("from time import monotonic", "xmppcore.xml.parser", "time.monotonic"),
    ("import xmppcore.server.app", "xmppcore.stanza.model", "xmppcore.server.app"),
    ("from xmppcore.storage import api", "xmppcore.stanza.model", "xmppcore.storage"),
    ("from ..server import Server", "xmppcore.protocol.c2s", "xmppcore.server"),
    ("from .. import transport", "xmppcore.protocol.c2s", "xmppcore.transport"),
    ("from ...cluster.redis import Bus", "xmppcore.protocol.sasl.scram", "xmppcore.cluster.redis"),
    ("if TYPE_CHECKING:\n    from ..storage.api import StorageDriver", "xmppcore.xml.element", "xmppcore.storage.api"),
    ("def later():\n    import ssl", "xmppcore.protocol.stream", "ssl"),
])
def test_the_checker_sees_every_form_of_import(source: str, name: str, expected: str) -> None:
    found = [imported for _, imported in imported_modules(source, name)]
    assert expected in found
    assert any(f == banned or f.startswith(banned + ".") for f in found for banned in FORBIDDEN_IN_PURE)


@pytest.mark.parametrize(("source", "name"), [
    ("from ..xml.element import Element", "xmppcore.protocol.c2s"),
    ("from . import scram", "xmppcore.protocol.sasl.__init__"),
    ("import datetime\nimport timeit_not_time", "xmppcore.stanza.model"),
    ("from .errors import StanzaError", "xmppcore.stanza.model"),
])
def test_the_checker_allows_imports_within_the_core(source: str, name: str) -> None:
    found = [imported for _, imported in imported_modules(source, name)]
    assert not any(f == banned or f.startswith(banned + ".") for f in found for banned in FORBIDDEN_IN_PURE)


def test_relative_imports_in_a_package_init_resolve_from_the_package() -> None:
    found = [imported for _, imported in imported_modules("from ..server import x", "xmppcore.protocol.sasl",
                                                          is_package=True)]
    assert "xmppcore.protocol.server" in found

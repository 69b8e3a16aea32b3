"""A hosted domain: its event bus, IQ table, service-discovery registry and loaded modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..xml.element import Element
from .hooks import EventBus
from .iq import IqScope, IqTable

if TYPE_CHECKING:
    from .module_api import ModuleContext

__all__ = ["Host", "DiscoRegistry", "Identity"]


@dataclass(frozen=True, slots=True)
class Identity:
    """An XEP-0030 identity."""

    category: str
    type: str
    name: str = ""


@dataclass
class DiscoRegistry:
    """Features and identities that modules declare, per scope; disco answers from these."""

    features: dict[IqScope, list[str]] = field(default_factory=lambda: {s: [] for s in IqScope})
    identities: dict[IqScope, list[Identity]] = field(default_factory=lambda: {s: [] for s in IqScope})


class Host:
    """One virtual host."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        self.bus = EventBus()
        self.iq = IqTable()
        self.disco = DiscoRegistry()
        self.modules: dict[str, ModuleContext] = {}
        self.exports: dict[str, Any] = {}
        # Stream features offered to clients after authentication (e.g. roster versioning).
        self.stream_features: list[Element] = []

"""Chat commands: the registry, the parser that turns a line of chat into a call, help, access.

A command is a function whose first parameter receives the :class:`~bots.framework.Context` of
the message and whose other parameters are filled, in order, from the words after the command's
name (split like a shell does, so ``"New York"`` is one word) and converted to their annotated
type: ``int``, ``float`` or ``str`` (no annotation means ``str``).  A parameter with a default is
optional; ``*rest: str`` takes the remaining words.  A line that does not fit gets the command's
usage back.

Access is by bare JID (RFC 7622 §3): a command registered with ``allowed=None`` is open to
everyone; with a collection of JIDs, only those JIDs and the bot's admins may use it (an empty
collection: admins only).  ``help`` lists only what the asker may use.

This module does no I/O: :meth:`CommandRegistry.resolve` answers with an :class:`Invocation`
to run or a :class:`Reply` to send, and the bot does the rest.
"""

from __future__ import annotations

import enum
import inspect
import re
import shlex
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass

import slixmpp

__all__ = [
    "HELP", "Command", "CommandError", "CommandRegistry", "Invocation", "Parameter", "Refusal",
    "Reply", "Resolution", "UsageError", "bare_jid",
]

HELP = "help"  # the built-in command; it cannot be registered
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_TYPES: dict[type, str] = {int: "a whole number", float: "a number", str: "a word"}


class CommandError(Exception):
    """Raised by a command to tell the user what went wrong; the message is sent as the reply."""


class UsageError(CommandError):
    """The words do not fit the command's parameters."""


def bare_jid(jid: str) -> str:
    """The normalised bare JID (RFC 7622 §3.2–3.3); ``ValueError`` for an invalid JID."""
    bare = str(slixmpp.JID(jid).bare)
    if not bare:
        raise ValueError(f"not a JID: {jid!r}")
    return bare


@dataclass(frozen=True, slots=True)
class Parameter:
    """One parameter filled from the chat line."""

    name: str
    kind: type           # int, float or str
    required: bool
    variadic: bool       # *rest: takes the remaining words

    def convert(self, word: str) -> object:
        try:
            return self.kind(word)
        except ValueError:
            raise UsageError(f"{self.name} must be {_TYPES[self.kind]}, not {word!r}") from None

    @property
    def usage(self) -> str:
        if self.variadic:
            return f"[{self.name}...]"
        return f"<{self.name}>" if self.required else f"[{self.name}]"


@dataclass(frozen=True, slots=True)
class Command:
    """A registered command."""

    name: str
    help: str
    handler: Callable[..., object]
    parameters: tuple[Parameter, ...]
    allowed: frozenset[str] | None  # bare JIDs; None: everyone

    @property
    def usage(self) -> str:
        return " ".join([self.name, *(p.usage for p in self.parameters)])

    def permits(self, jid: str, admins: Collection[str]) -> bool:
        """Whether ``jid`` (any form) may use this command."""
        if self.allowed is None:
            return True
        bare = bare_jid(jid)
        return bare in admins or bare in self.allowed

    def convert(self, words: Sequence[str]) -> tuple[object, ...]:
        """The handler's arguments after the context; :class:`UsageError` if they do not fit."""
        values: list[object] = []
        remaining = list(words)
        for parameter in self.parameters:
            if parameter.variadic:
                values.extend(parameter.convert(word) for word in remaining)
                remaining = []
            elif remaining:
                values.append(parameter.convert(remaining.pop(0)))
            elif parameter.required:
                raise UsageError(f"missing {parameter.name}")
        if remaining:
            raise UsageError(f"too many arguments: {' '.join(remaining)}")
        return tuple(values)


class Refusal(enum.Enum):
    """Why a line did not become an invocation."""

    UNKNOWN = "unknown"   # no such command
    DENIED = "denied"     # the sender may not use it
    USAGE = "usage"       # the words do not fit its parameters


@dataclass(frozen=True, slots=True)
class Reply:
    """Text to send back without running anything: help, or a refusal."""

    text: str
    refusal: Refusal | None = None


@dataclass(frozen=True, slots=True)
class Invocation:
    """A command to run with these converted arguments (after the context)."""

    command: Command
    arguments: tuple[object, ...]


Resolution = Invocation | Reply


def _parameters(name: str, handler: Callable[..., object]) -> tuple[Parameter, ...]:
    """The chat parameters of ``handler`` (all but the first, which takes the context)."""
    signature = inspect.signature(handler, eval_str=True)
    found = list(signature.parameters.values())
    if not found or found[0].kind not in (found[0].POSITIONAL_ONLY, found[0].POSITIONAL_OR_KEYWORD):
        raise TypeError(f"command {name!r}: the first parameter must take the context")
    parameters = []
    for param in found[1:]:
        kind = str if param.annotation is param.empty else param.annotation
        if kind not in _TYPES:
            raise TypeError(f"command {name!r}: parameter {param.name!r} is {kind!r}; "
                            "use int, float or str")
        if param.kind in (param.KEYWORD_ONLY, param.VAR_KEYWORD):
            raise TypeError(f"command {name!r}: keyword-only parameter {param.name!r} cannot "
                            "be filled from chat")
        parameters.append(Parameter(param.name, kind, required=param.default is param.empty,
                                    variadic=param.kind is param.VAR_POSITIONAL))
    return tuple(parameters)


class CommandRegistry:
    """The commands of one bot, in registration order."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def add(self, name: str, handler: Callable[..., object], *, help: str,
            allowed: Collection[str] | None = None) -> Command:
        """Register ``handler`` as ``name``; ``ValueError``/``TypeError`` for a bad definition."""
        if not _NAME.match(name) or name == HELP:
            raise ValueError(f"command name {name!r}: use lower-case letters, digits, '-' and '_' "
                             f"(at most 32), and not {HELP!r}")
        if name in self._commands:
            raise ValueError(f"command {name!r} is already registered")
        access = None if allowed is None else frozenset(bare_jid(jid) for jid in allowed)
        command = Command(name, help.strip(), handler, _parameters(name, handler), access)
        self._commands[name] = command
        return command

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands.values())

    def __contains__(self, name: object) -> bool:
        return name in self._commands

    def names_command(self, text: str) -> bool:
        """Whether the first word of ``text`` is ``help`` or a registered command."""
        words = text.split()
        return bool(words) and (words[0].lower() == HELP or words[0].lower() in self._commands)

    def usable_by(self, jid: str, admins: Collection[str]) -> list[Command]:
        return [command for command in self if command.permits(jid, admins)]

    def resolve(self, text: str, sender: str, admins: Collection[str]) -> Resolution | None:
        """What to do with a line of chat from ``sender``; ``None`` when it names no command.

        ``admins`` are normalised bare JIDs (see :func:`bare_jid`).
        """
        try:
            words = shlex.split(text)
        except ValueError:  # unbalanced quotes
            words = text.split()
            if words and words[0].lower() in self._commands:
                usage = self._commands[words[0].lower()].usage
                return Reply(f"unbalanced quotes; usage: {usage}", Refusal.USAGE)
        if not words:
            return None
        name, rest = words[0].lower(), words[1:]
        if name == HELP:
            return Reply(self.help_text(sender, admins, rest))
        command = self._commands.get(name)
        if command is None:
            return None
        if not command.permits(sender, admins):
            return Reply(f"Not allowed: {name}", Refusal.DENIED)
        try:
            return Invocation(command, command.convert(rest))
        except UsageError as exc:
            return Reply(f"{exc}; usage: {command.usage}", Refusal.USAGE)

    def unknown(self, text: str) -> Reply:
        """The answer to a line that names no command."""
        word = text.split()[0] if text.split() else ""
        return Reply(f"Unknown command {word!r}; send '{HELP}' for the list.", Refusal.UNKNOWN)

    def help_text(self, sender: str, admins: Collection[str], topic: Sequence[str] = ()) -> str:
        """``help``: the commands ``sender`` may use, or one command's usage and description."""
        usable = self.usable_by(sender, admins)
        if topic:
            wanted = topic[0].lower()
            for command in usable:
                if command.name == wanted:
                    return f"{command.usage}\n{command.help}".rstrip()
            return f"No command {wanted!r}; send '{HELP}' for the list."
        lines = ["Commands:", f"  {HELP} [command] — list commands, or describe one"]
        lines += [f"  {command.usage} — {command.help.splitlines()[0] if command.help else ''}"
                  for command in usable]
        return "\n".join(lines)

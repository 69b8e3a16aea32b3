"""The command registry without a network: definitions, parsing, help and access by bare JID."""

from __future__ import annotations

import pytest

from bots import Bot, CommandError, Context
from bots.commands import CommandRegistry, Invocation, Refusal, Reply

ALICE = "alice@example.org/phone"
BOB = "bob@example.org/laptop"
ADMIN = "root@example.org"


def weather(ctx: object, city: str, days: int = 1, *extra: str) -> str:
    return f"{city} {days} {extra}"


def scale(ctx: object, factor: float) -> str:
    return str(factor)


@pytest.fixture
def registry() -> CommandRegistry:
    commands = CommandRegistry()
    commands.add("weather", weather, help="Forecast for a city\nLonger text.")
    commands.add("scale", scale, help="Scale by a factor", allowed=["Bob@Example.ORG/ignored"])
    commands.add("reboot", lambda ctx: "ok", help="Admins only", allowed=())
    return commands


def resolve(registry: CommandRegistry, text: str, sender: str = ALICE) -> Invocation | Reply | None:
    return registry.resolve(text, sender, frozenset({ADMIN}))


def test_words_are_converted_to_the_annotated_types(registry: CommandRegistry) -> None:
    found = resolve(registry, 'Weather "New York" 3 a b')
    assert isinstance(found, Invocation)
    assert found.command.name == "weather"
    assert found.arguments == ("New York", 3, "a", "b")
    scaled = resolve(registry, "scale 2.5", BOB)
    assert isinstance(scaled, Invocation) and scaled.arguments == (2.5,)


def test_optional_parameters_may_be_left_out(registry: CommandRegistry) -> None:
    found = resolve(registry, "weather Paris")
    assert isinstance(found, Invocation) and found.arguments == ("Paris",)


@pytest.mark.parametrize(("text", "problem"), [
    ("weather", "missing city"),
    ("weather Paris soon", "days must be a whole number, not 'soon'"),
    ('weather "Paris', "unbalanced quotes"),
])
def test_words_that_do_not_fit_get_the_usage(registry: CommandRegistry, text: str, problem: str) -> None:
    found = resolve(registry, text)
    assert isinstance(found, Reply) and found.refusal is Refusal.USAGE
    assert found.text.startswith(problem)
    assert found.text.endswith("usage: weather <city> [days] [extra...]")


def test_too_many_words(registry: CommandRegistry) -> None:
    found = resolve(registry, "scale 1 2", ADMIN)
    assert isinstance(found, Reply)
    assert found.text == "too many arguments: 2; usage: scale <factor>"


def test_a_line_naming_no_command_is_not_resolved(registry: CommandRegistry) -> None:
    assert resolve(registry, "hello there") is None
    assert resolve(registry, "   ") is None
    assert not registry.names_command("hello there")
    assert registry.names_command("HELP me") and registry.names_command("scale 2")
    assert registry.unknown("hello there").text == "Unknown command 'hello'; send 'help' for the list."


def test_access_is_by_bare_jid_and_admins_may_do_everything(registry: CommandRegistry) -> None:
    assert isinstance(resolve(registry, "scale 2", "bob@example.org/other"), Invocation)
    assert isinstance(resolve(registry, "scale 2", "root@EXAMPLE.org/x"), Invocation)
    denied = resolve(registry, "scale 2", ALICE)
    assert denied == Reply("Not allowed: scale", Refusal.DENIED)
    assert resolve(registry, "reboot", BOB) == Reply("Not allowed: reboot", Refusal.DENIED)
    assert isinstance(resolve(registry, "reboot", ADMIN), Invocation)


def test_help_lists_only_what_the_asker_may_use(registry: CommandRegistry) -> None:
    for_alice = resolve(registry, "help", ALICE)
    assert isinstance(for_alice, Reply) and for_alice.refusal is None
    assert for_alice.text.splitlines() == [
        "Commands:",
        "  help [command] — list commands, or describe one",
        "  weather <city> [days] [extra...] — Forecast for a city",
    ]
    for_admin = resolve(registry, "help", ADMIN)
    assert isinstance(for_admin, Reply)
    assert [line.split()[0] for line in for_admin.text.splitlines()[2:]] == ["weather", "scale", "reboot"]


def test_help_on_one_command(registry: CommandRegistry) -> None:
    assert resolve(registry, "help weather") == Reply(
        "weather <city> [days] [extra...]\nForecast for a city\nLonger text.")
    hidden = resolve(registry, "help reboot", ALICE)
    assert hidden == Reply("No command 'reboot'; send 'help' for the list.")


@pytest.mark.parametrize(("name", "handler", "message"), [
    ("Weather", weather, "command name 'Weather'"),
    ("help", weather, "command name 'help'"),
    ("list", lambda: "", "the first parameter must take the context"),
    ("flag", lambda ctx, on: None, None),
])
def test_bad_definitions_are_refused(name: str, handler: object, message: str | None) -> None:
    commands = CommandRegistry()
    if message is None:  # an unannotated parameter is a str: accepted
        commands.add(name, handler, help="")  # type: ignore[arg-type]
        return
    with pytest.raises((ValueError, TypeError), match=message):
        commands.add(name, handler, help="")  # type: ignore[arg-type]


def test_unsupported_annotations_and_keyword_only_parameters_are_refused() -> None:
    def toggle(ctx: object, on: bool) -> None: ...
    def tagged(ctx: object, *, tag: str) -> None: ...

    commands = CommandRegistry()
    with pytest.raises(TypeError, match="use int, float or str"):
        commands.add("toggle", toggle, help="")
    with pytest.raises(TypeError, match="keyword-only"):
        commands.add("tagged", tagged, help="")
    commands.add("weather", weather, help="")
    with pytest.raises(ValueError, match="already registered"):
        commands.add("weather", weather, help="")
    with pytest.raises(ValueError):
        commands.add("scale", scale, help="", allowed=["not a jid@@"])


# ------------------------------------------------------------ the bot's side, still no network


def make_bot() -> Bot:
    bot = Bot("unit", admins=[ADMIN])

    @bot.command("add", help="Add two numbers")
    async def add(ctx: Context, a: int, b: int) -> int:
        return a + b

    @bot.command("fail", help="Refuses politely", allowed=["bob@example.org"])
    def fail(ctx: Context) -> str:
        raise CommandError("no, because")

    @bot.command("crash", help="A bug")
    def crash(ctx: Context) -> str:
        raise RuntimeError("bug")

    @bot.command("quiet", help="Answers nothing")
    def quiet(ctx: Context) -> None:
        return None

    return bot


async def test_run_command_answers_with_the_result_or_the_refusal() -> None:
    bot = make_bot()
    alice, bob = Context(bot, ALICE), Context(bot, BOB)
    assert await bot.run_command(alice, "add 2 40") == "42"
    assert await bot.run_command(alice, "add two 40") == "a must be a whole number, not 'two'; usage: add <a> <b>"
    assert await bot.run_command(alice, "fail") == "Not allowed: fail"
    assert await bot.run_command(bob, "fail") == "no, because"
    assert await bot.run_command(alice, "crash") == "Sorry, crash failed."
    assert await bot.run_command(alice, "quiet") is None
    assert await bot.run_command(alice, "dance") == "Unknown command 'dance'; send 'help' for the list."


def test_subscription_policy_follows_who_the_bot_answers() -> None:
    restricted = Bot("restricted", admins=[ADMIN])
    restricted.command("only-bob", help="", allowed=["bob@example.org"])(lambda ctx: "")
    assert restricted.may_subscribe(BOB) and restricted.may_subscribe(ADMIN)
    assert not restricted.may_subscribe(ALICE)
    chatty = Bot("chatty")
    chatty.on_chat(lambda ctx, text: text)
    assert chatty.may_subscribe(ALICE)
    assert make_bot().may_subscribe(ALICE)  # it has open commands


def test_a_bot_that_is_not_running_says_so() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        _ = make_bot().xmpp

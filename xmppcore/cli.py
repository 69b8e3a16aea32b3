"""The ``xmppcore`` command: run the server and manage its accounts.

    xmppcore serve | adduser JID | passwd JID | deluser JID | users | check-config

Every subcommand reads the TOML file given by ``--config`` (none: built-in defaults) and
takes ``--data-dir`` and ``--domain`` to override it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import importlib
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .config import Config, ConfigError, load_config, resolved_data_dir, with_overrides
from .jid import JID, InvalidJID
from .server.app import Server
from .server.auth import AccountError
from .server.modules import ModuleError, load_modules, unload_modules, validate_modules
from .storage.api import StorageError

__all__ = ["main"]

log = logging.getLogger("xmppcore")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML configuration file (default: built-in defaults)")
    common.add_argument("--data-dir", metavar="DIR", help="where the database, certificate and keys live "
                        "(default: ./xmppcore-data, or the config's data_dir)")
    common.add_argument("--domain", metavar="NAME", action="append",
                        help="a domain to host (repeatable; replaces the config's domains; default localhost)")

    top = argparse.ArgumentParser(prog="xmppcore", description="xmppcore: an XMPP server.")
    top.add_argument("--version", action="version", version=f"xmppcore {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", parents=[common], help="run the server",
                           description="Run the server until SIGINT or SIGTERM.")
    serve.add_argument("--bind", metavar="ADDRESS", action="append",
                       help="address to listen on (repeatable; default 127.0.0.1)")
    serve.add_argument("--c2s-port", type=int, metavar="PORT",
                       help="client STARTTLS port (default 5222; 0 = any free port; -1 = off)")
    serve.add_argument("--direct-tls-port", type=int, metavar="PORT",
                       help="client direct TLS port, XEP-0368 (default 5223; 0 = any free port; -1 = off)")
    serve.add_argument("--s2s-port", type=int, metavar="PORT",
                       help="server-to-server STARTTLS port for federation (default 5269; 0 = any free port;"
                            " -1 = no federation listeners, direct TLS included; others are still reached)")
    serve.add_argument("--storage", choices=("sqlite", "postgres", "memory"),
                       help="storage driver (default sqlite)")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                       help="log level (default: the config's log_level, info)")

    for name, text in (("adduser", "create an account"), ("passwd", "change an account's password")):
        cmd = sub.add_parser(name, parents=[common], help=text, description=f"{text.capitalize()}.")
        cmd.add_argument("jid", help="the account, e.g. alice@localhost")
        cmd.add_argument("--password-file", metavar="FILE",
                         help="read the password from the first line of FILE ('-' = standard input) "
                              "instead of prompting")
    deluser = sub.add_parser("deluser", parents=[common], help="delete an account", description="Delete an account.")
    deluser.add_argument("jid", help="the account, e.g. alice@localhost")
    sub.add_parser("users", parents=[common], help="list the accounts of every hosted domain",
                   description="List accounts, one JID per line.")
    sub.add_parser("check-config", parents=[common], help="validate the configuration and exit",
                   description="Load and validate the configuration (and module options); exit 0 when valid.")
    return top


def _config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    return with_overrides(
        config,
        domains=args.domain,
        data_dir=args.data_dir,
        bind=getattr(args, "bind", None),
        c2s_port=getattr(args, "c2s_port", None),
        direct_tls_port=getattr(args, "direct_tls_port", None),
        storage_driver=getattr(args, "storage", None),
        s2s_port=getattr(args, "s2s_port", None),
        # -1 turns off listening for servers altogether (both federation listeners).
        s2s_direct_tls_port=-1 if getattr(args, "s2s_port", None) == -1 else None,
    )


def _account(config: Config, text: str) -> tuple[str, str]:
    try:
        jid = JID.parse(text)
    except InvalidJID as exc:
        raise AccountError(f"{text!r} is not a valid JID: {exc}") from None
    if not jid.local or jid.resource:
        raise AccountError(f"{text!r} must be a bare JID like alice@{config.domains[0]}")
    if jid.domain not in config.domains:
        raise AccountError(
            f"{jid.domain} is not hosted here (domains: {', '.join(config.domains)}); "
            "add it to the config's domains or pass --domain")
    return jid.local, jid.domain


def _read_password(args: argparse.Namespace) -> str:
    if args.password_file:
        if args.password_file == "-":
            text = sys.stdin.readline()
        else:
            text = Path(args.password_file).read_text(encoding="utf-8")
        return text.splitlines()[0] if text.strip("\r\n") else ""
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise AccountError("the passwords differ")
    return first


async def _accounts_command(args: argparse.Namespace, config: Config) -> int:
    server = Server(config)
    await server.open()
    try:
        accounts = server.accounts
        if args.command == "users":
            for domain in config.domains:
                for user in await accounts.users(domain):
                    print(f"{user}@{domain}")
            return 0
        user, domain = _account(config, args.jid)
        if args.command == "deluser":
            # The modules delete the account's data (hooks.ACCOUNT_DELETED); loading them only
            # registers handlers, it starts nothing.
            for host in server.hosts.values():
                load_modules(server, host, config.modules.enabled, config.modules.options, source=config.source)
            await accounts.delete(domain, user)
            print(f"deleted {user}@{domain}")
        elif args.command == "adduser":
            user = await accounts.create(domain, user, _read_password(args))
            print(f"created {user}@{domain}")
        else:
            await accounts.set_password(domain, user, _read_password(args))
            print(f"changed the password of {user}@{domain}")
        return 0
    finally:
        for host in server.hosts.values():
            unload_modules(host)
        await server.storage.close()


# Young-generation allocations between two runs of the cyclic garbage collector (default 700).
_GC_YOUNG_THRESHOLD = 50_000


def _tune_collector() -> None:
    """Run the cyclic garbage collector less often (docs/performance.md).

    A routed message allocates a few dozen objects and leaves no cycles behind, so at the default
    threshold the collector scanned the young generation thousands of times a second under load
    (measured in docs/performance.md: throughput, and pauses in the latency tail).  What the server
    built while starting is moved out of its sight for good (``gc.freeze``).
    """
    gc.freeze()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


async def _serve(config: Config) -> int:
    server = Server(config)
    await server.start()
    _tune_collector()
    for address, port in server.c2s_addresses:
        print(f"xmppcore: c2s (STARTTLS) on {address}:{port}", flush=True)
    for address, port in server.direct_tls_addresses:
        print(f"xmppcore: c2s (direct TLS) on {address}:{port}", flush=True)
    for address, port in server.federation.addresses:
        print(f"xmppcore: s2s (STARTTLS) on {address}:{port}", flush=True)
    for address, port in server.federation.direct_tls_addresses:
        print(f"xmppcore: s2s (direct TLS) on {address}:{port}", flush=True)
    for address, port in server.components.addresses:
        print(f"xmppcore: components (XEP-0114) on {address}:{port}", flush=True)
    print(f"xmppcore: serving {', '.join(config.domains)}; data in {resolved_data_dir(config)}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    return 0


def _run(coro: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop where it is installed (it is a dependency on CPython/POSIX), else asyncio."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.run(coro)
    result: int = uvloop.run(coro)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _config(args)
        level = getattr(args, "log_level", None) or config.log_level
        if args.command != "serve" and not getattr(args, "log_level", None):
            level = "warning"  # account commands print their own one-line outcome
        logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if args.command == "check-config":
            validate_modules(config.modules.enabled, config.modules.options, source=config.source)
            print(f"{config.source}: OK ({', '.join(config.domains)})")
            return 0
        if args.command == "serve":
            return _run(_serve(config))
        return _run(_accounts_command(args, config))
    except (ConfigError, ModuleError, AccountError) as exc:
        print(f"xmppcore: {exc}", file=sys.stderr)
        return 2
    except (StorageError, OSError) as exc:
        print(f"xmppcore: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

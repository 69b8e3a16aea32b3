"""RFC 6120 servers to run the conformance scenarios against: xmppcore and the ejabberd reference.

A :class:`Target` is started once per test session (or report) and gives an :class:`Endpoint`:
where to connect, the domain, the CA file that verifies its certificate (the name checked is
the domain, RFC 6125), and the accounts alice, bob and carol with one shared password.

- :class:`XmppcoreTarget` runs the real server in this process, on its own event loop in a
  thread, on ephemeral 127.0.0.1 ports for domain ``localhost`` with a fresh data directory.
- :class:`EjabberdTarget` drives ``ejabberd-config/ejabberd.sh`` (``start``, ``status``,
  ``certfile``, ``stop``): ejabberd on 127.0.0.2:5222 (STARTTLS) and :5223 (direct TLS) for
  ``ejabberd.test``.  Without ``ejabberdctl`` it is unavailable (tests skip) unless
  ``XMPPCORE_REQUIRE_EJABBERD=1``, which makes that an error.  It is stopped at the end only if
  this process started it (``XMPPCORE_KEEP_EJABBERD=1`` keeps it running for the next run).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import subprocess
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from xmppcore.config import Config, ModulesConfig, config_from_mapping
from xmppcore.server.app import Server
from xmppcore.xml.element import Element
from xmppcore.xml.namespaces import NS_CLIENT

from ..integration.rawclient import RawClient
from .model import ACCOUNTS, TARGET_NAMES

__all__ = [
    "CONFORMANCE_PASSWORD", "CONFORMANCE_EXTRA_MODULES", "REQUIRE_EJABBERD_ENV", "Endpoint", "Target", "TargetUnavailable",
    "XmppcoreTarget", "EjabberdTarget", "TargetPool", "make_target",
]

CONFORMANCE_PASSWORD = "conformance-secret"
REQUIRE_EJABBERD_ENV = "XMPPCORE_REQUIRE_EJABBERD"
KEEP_EJABBERD_ENV = "XMPPCORE_KEEP_EJABBERD"
REPO_ROOT = Path(__file__).resolve().parents[2]
NS_REGISTER = "jabber:iq:register"  # XEP-0077
# Modules that are off by default but that scenarios exercise (register.toml: XEP-0077), with the
# options the scenarios need: they register several accounts from 127.0.0.1 within minutes.
CONFORMANCE_EXTRA_MODULES: Mapping[str, Mapping[str, object]] = MappingProxyType({
    "register": MappingProxyType({"throttle_window": 0}),
})


class TargetUnavailable(Exception):
    """The server cannot run here (not installed); the reason says what is missing."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How to reach a started server and who may log in."""

    host: str
    starttls_port: int
    direct_tls_port: int
    domain: str
    cafile: Path
    accounts: Mapping[str, str]  # username -> password
    password: str = CONFORMANCE_PASSWORD

    @property
    def unknown_user(self) -> str:
        """A bare JID on the domain with no account."""
        return f"nobody-here@{self.domain}"

    @property
    def unhosted_domain(self) -> str:
        """A domain the server does not serve (.invalid never resolves, RFC 2606 §2)."""
        return "unhosted.invalid"

    def placeholders(self) -> dict[str, str]:
        values = {"domain": self.domain, "password": self.password, "unknown_user": self.unknown_user,
                  "unhosted_domain": self.unhosted_domain}
        values.update({user: f"{user}@{self.domain}" for user in self.accounts})
        return values


class Target(ABC):
    """A server the scenarios run against; ``start()`` once, ``endpoint`` while it runs."""

    name: str = ""

    def __init__(self) -> None:
        self._endpoint: Endpoint | None = None

    @property
    def endpoint(self) -> Endpoint:
        if self._endpoint is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._endpoint

    @abstractmethod
    def start(self) -> Endpoint:
        """Start the server (blocking) with the accounts; raises :class:`TargetUnavailable`."""

    @abstractmethod
    def stop(self) -> None:
        """Stop what ``start`` started."""

    @abstractmethod
    async def create_account(self, username: str, password: str) -> None:
        """Create one more account on the running server."""


class XmppcoreTarget(Target):
    """The real server, in this process on its own loop, so any caller's loop can talk to it."""

    name = "xmppcore"

    def __init__(self) -> None:
        super().__init__()
        self._data = tempfile.TemporaryDirectory(prefix="xmppcore-conformance-")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Endpoint:
        ready: concurrent.futures.Future[Endpoint] = concurrent.futures.Future()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve(ready)),
                                        name="xmppcore-conformance", daemon=True)
        self._thread.start()
        self._endpoint = ready.result(timeout=60)
        return self._endpoint

    async def _serve(self, ready: concurrent.futures.Future[Endpoint]) -> None:
        try:
            server = self._server = Server(self._config())
            await server.start()
            for user in ACCOUNTS:
                await server.accounts.create("localhost", user, CONFORMANCE_PASSWORD)
        except BaseException as exc:
            ready.set_exception(exc)
            raise
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        ready.set_result(Endpoint(
            host="127.0.0.1", starttls_port=server.c2s_addresses[0][1],
            direct_tls_port=server.direct_tls_addresses[0][1], domain="localhost",
            cafile=Path(self._data.name) / "cert.pem",
            accounts=MappingProxyType({user: CONFORMANCE_PASSWORD for user in ACCOUNTS})))
        try:
            await self._stopping.wait()
        finally:
            await server.stop()

    def _config(self) -> Config:
        return config_from_mapping({
            "domains": ["localhost"],
            "data_dir": self._data.name,
            "c2s": {"bind": ["127.0.0.1"], "port": 0, "direct_tls_port": 0},
            "s2s": {"port": -1, "direct_tls_port": -1},
            # Fast SCRAM and no brake on failures: SASL scenarios fail on purpose.
            "auth": {"scram_iterations": 4096, "failure_delay": 0.0, "failure_delay_max": 0.0},
            "storage": {"driver": "sqlite"},
            "modules": {
                "enabled": [*ModulesConfig().enabled, *CONFORMANCE_EXTRA_MODULES],
                **{name: dict(options) for name, options in CONFORMANCE_EXTRA_MODULES.items()},
            },
        }, source="<conformance>", base_dir=Path(self._data.name))

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._data.cleanup()

    async def create_account(self, username: str, password: str) -> None:
        assert self._loop is not None and self._server is not None, "not started"
        creating = self._server.accounts.create(self.endpoint.domain, username, password)
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(creating, self._loop))


class EjabberdTarget(Target):
    """The reference ejabberd, run by the lead's ``ejabberd-config/ejabberd.sh``."""

    name = "ejabberd"
    HOST, STARTTLS_PORT, DIRECT_TLS_PORT, DOMAIN = "127.0.0.2", 5222, 5223, "ejabberd.test"

    def __init__(self, script: Path = REPO_ROOT / "ejabberd-config" / "ejabberd.sh") -> None:
        super().__init__()
        self._script = script
        self._started_here = False

    def start(self) -> Endpoint:
        if shutil.which("ejabberdctl") is None:
            raise TargetUnavailable("ejabberdctl is not installed (apt-get install -y ejabberd)")
        if not self._script.is_file():
            raise TargetUnavailable(f"{self._script} does not exist")
        if self._run("status", check=False).returncode != 0:
            self._run("start", timeout=180)
            self._started_here = True
        cafile = Path(self._run("certfile").stdout.strip())
        if not cafile.is_file():
            raise RuntimeError(f"{self._script} certfile printed {cafile}, which is not a file")
        self._endpoint = Endpoint(
            host=self.HOST, starttls_port=self.STARTTLS_PORT, direct_tls_port=self.DIRECT_TLS_PORT,
            domain=self.DOMAIN, cafile=cafile,
            accounts=MappingProxyType({user: CONFORMANCE_PASSWORD for user in ACCOUNTS}))
        return self._endpoint

    def _run(self, command: str, *, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["bash", str(self._script), command], capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"{self._script} {command} exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return done

    def stop(self) -> None:
        if self._started_here and os.environ.get(KEEP_EJABBERD_ENV) != "1":
            self._run("stop", check=False)

    async def create_account(self, username: str, password: str) -> None:
        """XEP-0077 §3.1 in-band registration on a TLS-protected, unauthenticated stream."""
        e = self.endpoint
        client = await RawClient.connect(e.host, e.starttls_port, domain=e.domain)
        try:
            await client.open_stream()
            await client.starttls(e.cafile)
            iq = Element("iq", NS_CLIENT, {"type": "set", "id": "register-1"})
            query = iq.add("query", NS_REGISTER)
            query.add("username", text=username)
            query.add("password", text=password)
            await client.send_element(iq)
            reply = await client.next_element()
            if reply.get("type") != "result":
                raise RuntimeError(f"registering {username}@{e.domain} failed: {reply!r}")
        finally:
            client.close()


def make_target(name: str) -> Target:
    targets: dict[str, type[Target]] = {"xmppcore": XmppcoreTarget, "ejabberd": EjabberdTarget}
    return targets[name]()


class TargetPool:
    """Starts each target on first use, remembers why one is unavailable, stops them all once.

    ``XMPPCORE_REQUIRE_EJABBERD=1`` turns ejabberd being unavailable into an error.
    """

    def __init__(self) -> None:
        self._started: dict[str, Target] = {}
        self._unavailable: dict[str, str] = {}
        self._broken: dict[str, str] = {}  # failed to start: every later use fails the same way

    def get(self, name: str) -> Target:
        """The started target; :class:`TargetUnavailable` to skip, RuntimeError when broken."""
        assert name in TARGET_NAMES, name
        if name in self._unavailable:
            raise TargetUnavailable(self._unavailable[name])
        if name in self._broken:
            raise RuntimeError(self._broken[name])
        if name not in self._started:
            self._started[name] = self._start(name)
        return self._started[name]

    def _start(self, name: str) -> Target:
        target = make_target(name)
        try:
            target.start()
        except TargetUnavailable as exc:
            if name == "ejabberd" and os.environ.get(REQUIRE_EJABBERD_ENV) == "1":
                self._broken[name] = f"{REQUIRE_EJABBERD_ENV}=1 but ejabberd cannot run: {exc}"
                raise RuntimeError(self._broken[name]) from exc
            self._unavailable[name] = str(exc)
            raise
        except Exception as exc:
            target.stop()
            self._broken[name] = f"{name} did not start: {type(exc).__name__}: {exc}"
            raise RuntimeError(self._broken[name]) from exc
        return target

    def close(self) -> None:
        for target in self._started.values():
            target.stop()
        self._started.clear()

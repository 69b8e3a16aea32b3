"""The server: hosts, storage, listeners and lifecycle (DESIGN: Server runtime)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import ssl
import time
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ..config import Config, resolved_data_dir, resolved_storage_path
from .. import unpredictable
from ..jid import JID
from ..stanza.errors import StreamCondition
from ..storage.api import StorageDriver, create_driver
from ..transport.tcp import StreamTransport
from ..transport.tls import ensure_self_signed_certificate, server_ssl_context
from . import hooks
from .auth import AccountManager
from .c2s import ClientConnection
from .host import Host
from .modules import load_modules, unload_modules
from .router import Router
from .components import Components
from .s2s import Federation
from .sessions import SessionRegistry
from .stream_management import StreamManagementRuntime
from .throttle import FailureThrottle

__all__ = ["Server"]

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 5.0  # seconds session-end handlers get at shutdown


class Server:
    """One xmppcore node."""

    def __init__(self, config: Config, *, storage: StorageDriver | None = None) -> None:
        self.config = config
        self.storage = storage if storage is not None else self._make_storage(config)
        self.accounts = AccountManager(self.storage, iterations=config.auth.scram_iterations,
                                       cache_seconds=config.auth.cache_seconds)
        self.sessions = SessionRegistry(resource_factory=lambda: f"xmppcore-{unpredictable.token_hex(4)}")
        self.hosts = {domain: Host(domain) for domain in config.domains}
        self.accounts.on_deleted(self._account_deleted)
        self.router = Router(self.hosts, self.sessions, self.accounts)
        self.stream_management = StreamManagementRuntime(self)  # XEP-0198 resumable sessions
        self.throttle = FailureThrottle(
            base_delay=config.auth.failure_delay, max_delay=config.auth.failure_delay_max,
            window=config.auth.failure_window,
        )
        self.components = Components(self)
        self.router.components = self.components
        self.federation = Federation(self)
        self.router.remote = self.federation.send
        self.tls_context: ssl.SSLContext | None = None
        self.certificate_files: tuple[Path | None, Path | None] = (None, None)
        self.secret = secrets.token_bytes(32)  # replaced by the persistent one in open()
        self._direct_tls_context: ssl.SSLContext | None = None
        self._listeners: list[asyncio.Server] = []
        self._connections: set[ClientConnection] = set()
        self._unauthenticated: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.c2s_addresses: list[tuple[str, int]] = []
        self.direct_tls_addresses: list[tuple[str, int]] = []

    @staticmethod
    def _make_storage(config: Config) -> StorageDriver:
        kind = config.storage.driver
        if kind == "sqlite":
            return create_driver("sqlite", path=str(resolved_storage_path(config)))
        if kind == "postgres":
            return create_driver("postgres", dsn=config.storage.dsn)
        return create_driver(kind)

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        """Storage and modules, without listening (enough for account commands)."""
        self.secret = _load_or_create_secret(resolved_data_dir(self.config) / "secret.key")
        await self.storage.open()

    async def start(self) -> None:
        """Open storage, load modules, create TLS contexts, listen."""
        await self.open()
        self._setup_tls()
        for host in self.hosts.values():
            load_modules(self, host, self.config.modules.enabled, self.config.modules.options,
                         source=self.config.source)
        await self._listen()
        cert, key = self.certificate_files
        assert cert is not None and key is not None
        await self.federation.start(cert, key)
        await self.components.start()
        log.info("xmppcore serving %s on %s", ", ".join(self.hosts),
                 ", ".join(f"{a}:{p}" for a, p in self.c2s_addresses + self.direct_tls_addresses))
        if self.federation.addresses or self.federation.direct_tls_addresses:
            log.info("federation listening on %s", ", ".join(
                f"{a}:{p}" for a, p in self.federation.addresses + self.federation.direct_tls_addresses))
        if self.components.addresses:
            log.info("components (%s) on %s", ", ".join(sorted(self.config.components.secrets)),
                     ", ".join(f"{a}:{p}" for a, p in self.components.addresses))

    def _setup_tls(self) -> None:
        tls = self.config.tls
        if tls.certificate:
            cert, key = Path(tls.certificate), Path(tls.key)
        else:
            cert, key = ensure_self_signed_certificate(resolved_data_dir(self.config), list(self.hosts))
        self.certificate_files = (cert, key)
        self.tls_context = server_ssl_context(cert, key)
        self._direct_tls_context = server_ssl_context(cert, key, alpn=("xmpp-client",))

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        c2s = self.config.c2s
        for address in c2s.bind:
            if c2s.port >= 0:
                srv = await loop.create_server(
                    lambda: StreamTransport(lambda t: self._accept(t, direct_tls=False)),
                    address, c2s.port, reuse_address=True, backlog=1024)
                self._listeners.append(srv)
                self.c2s_addresses.extend(_bound(srv))
            if c2s.direct_tls_port >= 0 and self._direct_tls_context is not None:
                srv = await loop.create_server(
                    lambda: StreamTransport(lambda t: self._accept(t, direct_tls=True)),
                    address, c2s.direct_tls_port, ssl=self._direct_tls_context,
                    reuse_address=True, backlog=1024, ssl_handshake_timeout=30.0)
                self._listeners.append(srv)
                self.direct_tls_addresses.extend(_bound(srv))

    def _accept(self, transport: StreamTransport, *, direct_tls: bool) -> ClientConnection:
        conn = ClientConnection(self, transport, direct_tls=direct_tls)
        self._connections.add(conn)
        return conn

    async def stop(self) -> None:
        """Stop listening, end every stream with ``system-shutdown``, close storage."""
        for srv in self._listeners:
            srv.close()
        await self.federation.stop()
        await self.components.stop()
        for conn in list(self._connections):
            conn.close(StreamCondition.SYSTEM_SHUTDOWN)
        self.stream_management.stop()  # sessions waiting to be resumed end too
        for srv in self._listeners:
            await srv.wait_closed()
        self._listeners.clear()
        if self._tasks:
            # Let session-end work finish (last activity, presence, offline bookkeeping)
            # before the modules and storage go away; a stuck handler is cut off.
            await asyncio.wait(list(self._tasks), timeout=SHUTDOWN_GRACE)
        for task in list(self._tasks):
            task.cancel()
        for host in self.hosts.values():
            unload_modules(host)
        await self.storage.close()

    async def serve_forever(self) -> None:
        await asyncio.Event().wait()

    async def _account_deleted(self, domain: str, username: str) -> None:
        """Every module of the host deletes what it keeps for the account (ACCOUNT_DELETED)."""
        host = self.hosts.get(domain)
        if host is not None:
            await host.bus.fire(hooks.ACCOUNT_DELETED, hooks.AccountEvent(JID(username, domain, "")))

    # -- services for connections --------------------------------------------------------------
    def is_hosted(self, domain: str) -> bool:
        return domain in self.hosts

    def serves(self, domain: str) -> bool:
        """Hosted, or a configured component's (what federation answers for)."""
        return self.router.is_local(domain)

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background, owned by the server."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def admit_unauthenticated(self, conn: ClientConnection) -> bool:
        """Count a new unauthenticated connection; False when its address has too many."""
        if self._unauthenticated[conn.peer] >= self.config.c2s.max_unauthenticated_per_ip:
            return False
        self._unauthenticated[conn.peer] += 1
        conn.counted_unauthenticated = True
        return True

    def release_unauthenticated(self, conn: ClientConnection) -> None:
        if conn.counted_unauthenticated:
            conn.counted_unauthenticated = False
            self._unauthenticated[conn.peer] -= 1
            if self._unauthenticated[conn.peer] <= 0:
                del self._unauthenticated[conn.peer]

    def connection_ended(self, conn: ClientConnection) -> None:
        self._connections.discard(conn)


def _load_or_create_secret(path: Path) -> bytes:
    """32 random bytes kept in the data directory (mode 0600), made on first start."""
    try:
        data = path.read_bytes()
        if len(data) == 32:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    data = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
    return data


def _bound(srv: asyncio.Server) -> list[tuple[str, int]]:
    return [(str(s.getsockname()[0]), int(s.getsockname()[1])) for s in srv.sockets]

"""The servers bench/compare.py measures: xmppcore, and Debian's ejabberd and Prosody, alike.

A ``ServerUnderTest`` is set up once per ``compare.py`` run (a fresh data directory, its
accounts and the ``presence`` scenario's rosters), then every scenario run gets a newly started
server process with archiving on or off (``begin_run``), stopped after the run (``end_run``):
so no run inherits another's sessions, garbage or warmed-up caches, and ``idle`` reads the
memory of a process whose allocator has not yet got freed memory to reuse.

- xmppcore: ``xmppcore serve`` (bench/msg_mam.py's benchmark configuration, with or without
  ``mam``); accounts and rosters are written through its own storage before it starts.
- ejabberd and Prosody run from ``bench/refconfig/`` in run directories of their own under
  /tmp, on 127.0.0.5 and 127.0.0.6, port 15222, domains ``ejabberd.bench`` and
  ``prosody.bench``: apart from the conformance instances (127.0.0.2/.3, ejabberd.test and
  prosody.test), which are never touched.  Accounts are registered in-band and rosters made over
  XMPP (bench/provision.py), both persisting in their data directories.  Making 10,000
  accounts and 1,000 rosters takes minutes on these servers, so the data directory they leave
  (server stopped) is kept under /tmp/xmppcore-bench-cache and copied into the next run
  directory asked for the same (counts, server version, bench/refconfig/), unless
  ``reuse_setup=False``: every ``compare.py`` run still begins from that clean copy.

Every server process is pinned to the server CPU from birth (the affinity is inherited by all its
threads); ejabberd's VM also runs one scheduler (``+S 1:1``, bench/refconfig/ejabberdctl.cfg).
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.loadgen import Target
from bench.msg_mam import XmppcoreProcess, _cpu_seconds, _pin_threads, bench_config, create_accounts, to_toml
from bench.provision import provision_rosters, register_accounts
from bench.refprocess import (
    SetupCache,
    accepting,
    alive,
    dpkg_version,
    run_command,
    stop_process,
)
from bench.scenarios_presence import PresenceParams, create_rosters

__all__ = ["CACHE_ROOT", "PRESENCE_PREFIX", "REFERENCES", "SERVERS", "EjabberdServer", "ProsodyServer", "ServerUnderTest",
           "XmppcoreServer", "installed", "make"]

REFCONFIG = Path(__file__).resolve().parent / "refconfig"
PRESENCE_PREFIX = "presence"  # the presence scenario's own accounts: rosters would slow the others
CACHE_ROOT = Path(os.environ.get("XMPPCORE_BENCH_CACHE", "/tmp/xmppcore-bench-cache"))
_START_TIMEOUT = 60.0


class ServerUnderTest:
    """One server as the suite drives it; subclasses say how it is set up, started and stopped."""

    name = "?"

    def __init__(self, cpu: int | None) -> None:
        self.cpu = cpu
        self.target = Target()
        self.archive = "?"   # how archiving stores, when it is on
        self.setup_note = ""  # how setup made the accounts and rosters

    def version(self) -> str:
        return self.name

    async def setup(self, accounts: int, presence: PresenceParams | None) -> None:
        """A fresh data directory with accounts 1..``accounts`` and, if asked, the rosters."""
        raise NotImplementedError

    async def begin_run(self, *, mam: bool) -> Target:
        """A newly started server process with archiving ``mam``; where it listens."""
        raise NotImplementedError

    @property
    def pid(self) -> int:
        """The process whose memory and CPU are measured."""
        raise NotImplementedError

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.pid)

    async def end_run(self) -> None:
        """After a run: the process stopped."""

    async def shutdown(self) -> None:
        """Stop whatever this object started (xmppcore: and remove its temporary data)."""


# -- xmppcore ------------------------------------------------------------------------------------
class XmppcoreServer(ServerUnderTest):
    """``xmppcore serve`` from this checkout, a new process per run over one data directory."""

    name = "xmppcore"

    def __init__(self, cpu: int | None) -> None:
        super().__init__(cpu)
        self.archive = "SQLite (WAL, group commit)"
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: XmppcoreProcess | None = None

    async def setup(self, accounts: int, presence: PresenceParams | None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="xmppcore-compare-")
        workdir = Path(self._tmp.name)
        config_file = workdir / "xmppcore.toml"
        config_file.write_text(to_toml(bench_config(workdir / "data", mam=True)))
        await create_accounts(config_file, self.target, accounts)
        if presence is not None:
            users = Target(user_prefix=PRESENCE_PREFIX)
            await create_accounts(config_file, users, presence.users)
            await create_rosters(config_file, users, presence)
        self.setup_note = "accounts and rosters written through its own storage"

    async def begin_run(self, *, mam: bool) -> Target:
        assert self._tmp is not None, "setup first"
        self._process = XmppcoreProcess(Path(self._tmp.name), mam=mam, cpu=self.cpu, target=self.target)
        try:
            return await self._process.start(0)
        except BaseException:
            await self._process.stop()
            raise

    @property
    def pid(self) -> int:
        assert self._process is not None and self._process.proc is not None
        return self._process.proc.pid

    async def end_run(self) -> None:
        if self._process is not None:
            await self._process.stop()
            self._process = None

    async def shutdown(self) -> None:
        await self.end_run()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


# -- what ejabberd and Prosody share ----------------------------------------------------------------
class _ReferenceServer(ServerUnderTest):
    """A Debian-packaged server run from our own configuration in its own run directory."""

    address = "127.0.0.5"
    port = 15222
    domain = "reference.bench"
    user = "root"   # the system user the package's server runs as, who must own the run directory
    data_dir = "data"  # what setup makes, under the run directory

    def __init__(self, cpu: int | None, *, reuse_setup: bool = True) -> None:
        super().__init__(cpu)
        self.reuse_setup = reuse_setup  # restore accounts and rosters an earlier setup left in the cache
        self.run_dir = Path(os.environ.get(f"XMPPCORE_BENCH_{self.name.upper()}_DIR", f"/tmp/xmppcore-bench-{self.name}"))
        self.target = Target(host=self.address, port=self.port, domain=self.domain)
        self._pid: int | None = None
        self._mam: bool | None = None
        self._pinned = True  # False while setting up: provisioning may use every CPU

    # subclasses: the configuration and the package's own start command
    def _layout(self, mam: bool) -> None:
        raise NotImplementedError

    async def _launch(self) -> None:
        raise NotImplementedError

    def _find_pid(self) -> int | None:
        raise NotImplementedError

    def _log_tail(self) -> str:
        logs = sorted(self.run_dir.glob("logs/*"))
        return "".join(p.read_text(errors="replace")[-2000:] for p in logs if p.is_file())

    async def _run(self, *command: str, as_user: bool = False) -> str:
        """A control command, pinned (but for setting up) so the server it starts inherits that."""
        return await run_command(*command, cpu=self.cpu if self._pinned else None,
                                 user=self.user if as_user else None, cwd=self.run_dir)

    def _own_run_dir(self) -> None:
        if os.getuid() == 0:
            shutil.chown(self.run_dir, self.user, self.user)
            for path in self.run_dir.rglob("*"):
                shutil.chown(path, self.user, self.user)

    async def _start(self, mam: bool) -> None:
        self._layout(mam)
        self._own_run_dir()
        await self._launch()
        launched = time.monotonic()
        while not await accepting(self.address, self.port):
            waited = time.monotonic() - launched
            if waited > _START_TIMEOUT or (waited > 10 and self._find_pid() is None):  # it died starting
                await self._stop()
                raise RuntimeError(f"{self.name} did not start listening on {self.address}:{self.port}:\n{self._log_tail()}")
            await asyncio.sleep(0.1)  # polling its port, with a deadline
        self._pid, self._mam = self._find_pid(), mam
        if self._pid is None:
            raise RuntimeError(f"{self.name} listens but its process was not found")
        if self.cpu is not None and self._pinned:
            _pin_threads(self._pid, {self.cpu}, {})  # inherited already; this makes sure

    async def _stop(self) -> None:
        pid = self._pid or self._find_pid()
        if pid is not None:
            await stop_process(pid)
        self._pid = self._mam = None

    async def setup(self, accounts: int, presence: PresenceParams | None) -> None:
        await self._stop()  # one an interrupted run left behind: found by its run directory
        shutil.rmtree(self.run_dir, ignore_errors=True)
        cache = SetupCache(CACHE_ROOT / self.name)
        key = cache.key(self.version(), accounts, presence, self.target, PRESENCE_PREFIX,
                        sorted((p.name, p.read_text()) for p in REFCONFIG.iterdir()))
        self.run_dir.mkdir(parents=True)
        if self.reuse_setup and cache.restore(key, self.run_dir / self.data_dir):
            self.setup_note = f"accounts and rosters as made by an earlier run ({cache.root / key})"
            return
        self._pinned = False
        try:
            await self._start(mam=False)
            await register_accounts(self.target, range(1, accounts + 1))
            if presence is not None:
                users = Target(host=self.address, port=self.port, domain=self.domain, user_prefix=PRESENCE_PREFIX)
                await register_accounts(users, range(1, presence.users + 1))
                await provision_rosters(users, presence)
        finally:
            await self._stop()  # the runs start it again, pinned
            self._pinned = True
        cache.store(key, self.run_dir / self.data_dir)
        self.setup_note = f"accounts registered in-band{', rosters made over XMPP' if presence else ''}"

    async def begin_run(self, *, mam: bool) -> Target:
        await self._stop()
        await self._start(mam)
        return self.target

    @property
    def pid(self) -> int:
        assert self._pid is not None, "not running"
        return self._pid

    async def end_run(self) -> None:
        await self._stop()

    async def shutdown(self) -> None:
        await self._stop()


class EjabberdServer(_ReferenceServer):
    """ejabberd 23.01 from Debian, driven by ``ejabberdctl`` with our --config-dir."""

    name = "ejabberd"
    address = "127.0.0.5"
    domain = "ejabberd.bench"
    user = "ejabberd"
    data_dir = "spool"  # Mnesia

    def __init__(self, cpu: int | None, *, reuse_setup: bool = True) -> None:
        super().__init__(cpu, reuse_setup=reuse_setup)
        # SQL on SQLite needs Debian's erlang-p1-sqlite3; without it the archive is in Mnesia.
        self.sqlite = bool(glob.glob("/usr/lib/erlang/lib/p1_sqlite3-*/ebin/sqlite3.beam")
                           + glob.glob("/usr/lib/*/erlang/lib/p1_sqlite3-*/ebin/sqlite3.beam"))
        self.archive = "mod_mam, SQL on SQLite" if self.sqlite else "mod_mam, Mnesia (erlang-p1-sqlite3 missing)"

    def version(self) -> str:
        return f"ejabberd {dpkg_version('ejabberd')}"

    def _ctl(self) -> list[str]:
        return ["ejabberdctl", "--config-dir", str(self.run_dir / "config"), "--spool", str(self.run_dir / "spool"),
                "--logs", str(self.run_dir / "logs")]

    def _layout(self, mam: bool) -> None:
        config = self.run_dir / "config"
        for sub in ("config", "spool", "logs"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        sql = mam_module = ""
        if mam:
            db = "sql" if self.sqlite else "mnesia"
            if self.sqlite:
                sql = f'sql_type: sqlite\nsql_database: "{self.run_dir / "spool" / "archive.db"}"\n'
            mam_module = f"  mod_mam:\n    db_type: {db}\n    default: always\n"
        text = (REFCONFIG / "ejabberd.yml").read_text()
        for key, value in (("@RUN_DIR@", str(self.run_dir)), ("@ADDRESS@", self.address), ("@PORT@", str(self.port)),
                           ("@DOMAIN@", self.domain), ("@SQL@", sql), ("@MAM@", mam_module)):
            text = text.replace(key, value)
        (config / "ejabberd.yml").write_text(text)
        schedulers = "+S 1:1 +SDcpu 1:1" if self._pinned else ""
        (config / "ejabberdctl.cfg").write_text((REFCONFIG / "ejabberdctl.cfg").read_text().replace("@SCHEDULERS@", schedulers))
        shutil.copy(REFCONFIG / "inetrc", config)

    async def _launch(self) -> None:
        await self._run(*self._ctl(), "start", as_user=True)  # returns once the detached VM is spawned

    def _find_pid(self) -> int | None:
        spool = str(self.run_dir / "spool").encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"beam.smp" in cmdline and spool in cmdline and alive(int(entry.name)):
                return int(entry.name)
        return None


class ProsodyServer(_ReferenceServer):
    """Prosody 0.12 from Debian, driven by ``prosodyctl --config``."""

    name = "prosody"
    address = "127.0.0.6"
    domain = "prosody.bench"
    user = "prosody"

    def __init__(self, cpu: int | None, *, reuse_setup: bool = True) -> None:
        super().__init__(cpu, reuse_setup=reuse_setup)
        # mod_storage_sql on SQLite needs Debian's lua-dbi-sqlite3; without it: internal (files).
        self.sqlite = bool(glob.glob("/usr/lib/*/lua/5.4/dbd/sqlite3.so"))
        self.archive = "mod_mam, SQL on SQLite" if self.sqlite else "mod_mam, internal storage (lua-dbi-sqlite3 missing)"

    def version(self) -> str:
        return f"Prosody {dpkg_version('prosody')}"

    def _layout(self, mam: bool) -> None:
        for sub in ("data", "logs", "certs"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        storage, mam_module = 'storage = "internal"', ""
        if mam:
            mam_module = '"mam";'
            storage = ('default_storage = "internal"\nstorage = { archive = "sql" }\n'
                       'sql = { driver = "SQLite3", database = "archive.sqlite" }\n' if self.sqlite else
                       'storage = "internal"\n') + 'default_archive_policy = true\narchive_expires_after = "never"'
        text = (REFCONFIG / "prosody.cfg.lua").read_text()
        for key, value in (("@RUN_DIR@", str(self.run_dir)), ("@ADDRESS@", self.address), ("@PORT@", str(self.port)),
                           ("@DOMAIN@", self.domain), ("@STORAGE@", storage), ("@MAM_MODULE@", mam_module)):
            text = text.replace(key, value)
        (self.run_dir / "prosody.cfg.lua").write_text(text)

    async def _launch(self) -> None:
        await self._run("prosodyctl", "--config", str(self.run_dir / "prosody.cfg.lua"), "start")

    def _find_pid(self) -> int | None:
        try:
            pid = int((self.run_dir / "prosody.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            ours = b"prosody" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if ours and alive(pid) else None


REFERENCES: dict[str, type[_ReferenceServer]] = {"ejabberd": EjabberdServer, "prosody": ProsodyServer}
SERVERS = ("xmppcore", *REFERENCES)
_CONTROL = {"ejabberd": "ejabberdctl", "prosody": "prosodyctl"}


def installed() -> list[str]:
    """xmppcore, and each reference server whose control command is on PATH."""
    return [name for name in SERVERS if name not in _CONTROL or shutil.which(_CONTROL[name])]


def make(name: str, cpu: int | None, *, reuse_setup: bool = True) -> ServerUnderTest:
    """Server ``name`` measured on ``cpu``; ``reuse_setup=False``: make accounts and rosters anew."""
    if name == "xmppcore":
        return XmppcoreServer(cpu)
    return REFERENCES[name](cpu, reuse_setup=reuse_setup)

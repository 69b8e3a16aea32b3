"""bench/provision.py, bench/refservers.py and compare.py's table, against the real server (issue 8).

Accounts are registered in-band (XEP-0077, over STARTTLS as xmppcore requires) and rosters made
by subscription exchanges (RFC 6121 §3) against xmppcore in process; the presence scenario then
proves the rosters by delivering every update.  The table's ratio and the checks that make a
comparison unsound are shown on made-up summaries.  No timing is asserted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.compare import Results, problems, scenarios, table
from bench.loadgen import Target, login_all
from bench.msg_mam import bench_config, create_accounts, to_toml
from bench.provision import ProvisionError, provision_rosters, register_accounts
from bench.scenarios_presence import PresenceParams, run_presence
from xmppcore.config import load_config
from xmppcore.server.app import Server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def start(tmp_path: Path, *, register: bool, accounts: int = 0) -> tuple[Server, Target]:
    """A benchmark-configured server; with ``register``, in-band registration on and unthrottled."""
    data = bench_config(tmp_path / "data", mam=False)
    data["c2s"]["tls_required"] = register  # xmppcore offers registration over TLS only (§10)
    if register:
        data["modules"]["enabled"] = [*data["modules"]["enabled"], "register"]
    text = to_toml(data) + ("\n[modules.register]\nthrottle_window = 0.0\n" if register else "")
    config_file = tmp_path / "xmppcore.toml"
    config_file.write_text(text)
    await create_accounts(config_file, Target(), accounts)
    server = Server(load_config(config_file))
    await server.start()
    return server, Target(port=server.c2s_addresses[0][1], starttls=register)


async def test_registered_accounts_log_in(tmp_path: Path) -> None:
    server, target = await start(tmp_path, register=True, accounts=2)  # bench1, bench2 exist already
    try:
        made = await register_accounts(target, range(1, 8), streams=2, batch=3)
        clients = await login_all(target, range(1, 8))
        for client in clients:
            client.close()
    finally:
        await server.stop()
    assert made == 5  # the two that existed answered <conflict/>, which counts as made already
    assert len(clients) == 7


async def test_a_refused_registration_is_an_error(tmp_path: Path) -> None:
    server, target = await start(tmp_path, register=False)  # no registration offered at all
    try:
        with pytest.raises(ProvisionError, match="registering reg1"):
            await register_accounts(target, [1])
    finally:
        await server.stop()


async def test_rosters_made_over_xmpp_carry_presence(tmp_path: Path) -> None:
    params = PresenceParams(users=6, contacts=4, rounds=2, concurrency=3, timeout=20.0)
    server, target = await start(tmp_path, register=False, accounts=params.users)
    try:
        await provision_rosters(target, params, timeout=30.0)  # checks every roster itself
        result = await run_presence(target, params)
    finally:
        await server.stop()
    assert (result.expected, result.delivered) == (48, 48)  # 6 users × 2 rounds × 4 contacts


def test_the_table_says_how_many_times_better_xmppcore_is() -> None:
    suite = scenarios()
    results: Results = {
        "xmppcore": {"msg": [{"rate": 3000.0}, {"rate": 2000.0}, {"rate": 9000.0}],
                     "idle": [{"kib_per_session": 20.0}], "msglat500": [{"error": "boom"}]},
        "ejabberd": {"msg": [{"rate": 1000.0}], "idle": [{"kib_per_session": 30.0}],
                     "msglat500": [{"p99_ms": 1.0}]},
    }
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in table(results, suite).splitlines() if line.startswith("| ") and "---" not in line}
    assert rows["scenario"] == ["metric", "better", "xmppcore", "ejabberd", "xmppcore vs ejabberd"]
    assert rows["msg"] == ["msg/s", "higher", "3,000", "1,000", "3.00×"]  # the median of xmppcore's runs
    assert rows["idle"] == ["KiB/session", "lower", "20.00", "30.00", "1.50×"]  # less memory is better
    assert rows["msglat500"] == ["ms p99", "lower", "failed", "1.00", "—"]


def test_problems_name_what_makes_a_run_unsound() -> None:
    suite = scenarios()
    results: Results = {"prosody": {
        "msg": [{"rate": 1.0, "lost": 0, "stamped": 3, "archived_pct": 1.0}],
        "msgmam": [{"rate": 1.0, "lost": 2, "stamped": 5, "archived_pct": 50.0}],
        "login": [{"rate": 1.0, "failures": 0}, {"error": "RuntimeError('down')"}],
    }}
    found = problems(results, suite)
    assert found == [
        "prosody msg run 1: 1.0 % archived with archiving off",
        "prosody msgmam run 1: lost 2",
        "prosody msgmam run 1: 50.0 % archived with archiving on",
        "prosody login run 2: RuntimeError('down')",
    ]

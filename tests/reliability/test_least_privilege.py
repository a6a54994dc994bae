"""The least-privilege role printed by ``cloudstack-sidecar role`` (``sidecar.cli.role.ROLE_APIS``)
is enough for every command, and nothing less is: a key limited to exactly those APIs runs
check, report, cleanup and the service; without archiveAlerts the sidecar acts on nothing and
says which API is missing.

The systemd unit's exposure (hardening) is tested in tests/test_systemd_units.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from reliakit import Zygote, base_env, check_invariants, read_ledger

from cloudstack_simulator import Simulator
from sidecar.cli.role import ROLE_APIS


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """History plus a fresh host crash, with the virtual clock ending at about real time (so
    ``check`` finds no clock skew and real-clock signatures are valid)."""
    simulator = Simulator(hosts=4, vms_per_host=3, start=datetime.now(UTC) - timedelta(hours=1))
    simulator.seed_history(alerts=400, duplicate_ratio=0.3)
    simulator.run_scenario("host-crash")
    simulator.clock.advance(max(0.0, time.time() - 30 - simulator.clock.time()))
    with simulator.serve():
        yield simulator


def env_for(sim: Simulator, tmp_path: Path, key: str, secret: str) -> dict[str, str]:
    return base_env(tmp_path / "home", CLOUDSTACK_ENDPOINT=sim.endpoint or "",
                    CLOUDSTACK_KEY=key, CLOUDSTACK_SECRET=secret,
                    SIDECAR_LEDGER_URL=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
                    SIDECAR_ARCHIVE_BATCH_SIZE="20")


def test_the_printed_role_is_enough_for_every_command(
    zygote: Zygote, sim: Simulator, tmp_path: Path
) -> None:
    key, secret = sim.create_key(role=set(ROLE_APIS), account="admin")
    env = env_for(sim, tmp_path, key, secret)
    expected = [
        (["check"], 0),
        (["check", "--format", "json"], 0),
        (["report"], 3),  # duplicates found
        (["cleanup"], 0),
        (["run", "--once", "--dry-run"], 0),
        (["cleanup", "--apply"], 0),
        (["report"], 0),  # nothing left
        (["run", "--once"], 0),
    ]
    for argv, code in expected:
        result = zygote.run(argv, env, tmp_path)
        assert result.code == code, (argv, result.output)
        assert "not allowed" not in result.output and "does not allow" not in result.output
    assert '"missing_apis": []' in zygote.run(["check", "--format", "json"], env,
                                              tmp_path).stdout
    # Every call was one the role allows (the simulator refuses others with a 401). check's
    # clock-skew probe signs listCapabilities calls that expire on purpose: their 401s only.
    assert set(sim.stats.calls) <= set(ROLE_APIS)
    refused = {command for command, statuses in sim.stats.statuses.items() if 401 in statuses}
    assert refused <= {"listCapabilities"}
    assert check_invariants(sim, f"sqlite:///{tmp_path / 'ledger.sqlite3'}", complete=True) == []


def test_without_archive_alerts_nothing_is_archived_and_the_missing_api_is_named(
    zygote: Zygote, sim: Simulator, tmp_path: Path
) -> None:
    key, secret = sim.create_key(role=set(ROLE_APIS) - {"archiveAlerts"}, account="admin")
    env = env_for(sim, tmp_path, key, secret)
    checked = zygote.run(["check"], env, tmp_path)
    assert checked.code == 1
    assert "not allowed: archiveAlerts" in checked.stdout
    applied = zygote.run(["cleanup", "--apply"], env, tmp_path)
    assert applied.code != 0
    assert "archiveAlerts" in applied.stderr
    assert "the account's role does not allow this API" in applied.stderr
    assert not sim.stats.archive_count
    # The intents stay on record for the run that has the permission; none claims success.
    view = read_ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    assert not view.having("done", "already-gone")

"""``run --once`` against a real Alertmanager: one alert per host failure, and its resolve.

Starts ``prometheus-alertmanager`` on a loopback port with a webhook receiver served here;
skips when the binary is missing (CI installs it: see .ci/run).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from amkit import Receiver, active_alerts, missing_binary, private_alertmanager, wait_for
from wiringkit import cli_env, ledger_url, run_cli, served, sim_with_history

pytestmark = pytest.mark.skipif(missing_binary() is not None, reason=str(missing_binary()))

CRASHED = "kvm-02"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


def with_status(receiver: Receiver, status: str) -> list[dict[str, Any]]:
    return [n for n in receiver.notifications if n["status"] == status]


def test_a_host_crash_with_duplicate_rounds_is_one_alert_one_notification_and_resolves(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = sim_with_history(0, scenario=None)
    sim.start_scenario("host-crash", host=CRASHED)  # comes back 900 s after it died
    sim.clock.advance(200)  # Down: every investigation and the fence sent "Host is down"
    failure = sim.truth.failures[-1]
    assert failure.rounds >= 2, "the scenario must repeat 'Host is down' for this test"
    assert sim.host(CRASHED).status == "Down"

    with private_alertmanager(tmp_path, receiver) as am, served(sim) as endpoint:
        env = {**cli_env(sim, endpoint, ledger_url(tmp_path)),
               "SIDECAR_ALERTMANAGER_URL": am, "STATE_DIRECTORY": str(tmp_path / "state")}
        first = run_cli(["run", "--once"], env, monkeypatch)
        assert first.code == 0, first.err

        firing = wait_for("the firing notification", lambda: with_status(receiver, "firing"))
        alerts = active_alerts(am, "CloudStackHostFailure")
        assert len(alerts) == 1
        labels = alerts[0]["labels"]
        assert labels["host"] == CRASHED and labels["severity"] == "critical"
        assert labels["cloudstack"] == "127.0.0.1" and labels["zone"] and labels["pod"]
        annotations = alerts[0]["annotations"]
        assert annotations["rounds"] == str(failure.rounds)
        assert annotations["duplicate_rounds"] == str(failure.rounds - 1)
        assert sim.key not in str(alerts) and sim.secret not in str(alerts)

        sim.clock.run_until_idle()  # the host reconnects and is Up again
        assert sim.host(CRASHED).status == "Up"
        second = run_cli(["run", "--once"], env, monkeypatch)
        assert second.code == 0, second.err

        resolved = wait_for("the resolved notification",
                            lambda: with_status(receiver, "resolved"))
    assert len(firing) == 1 and len(firing[0]["alerts"]) == 1
    assert [n["groupKey"] for n in receiver.notifications] == [firing[0]["groupKey"]] * 2
    assert len(resolved) == 1 and resolved[0]["alerts"][0]["labels"]["host"] == CRASHED
    assert resolved[0]["alerts"][0]["status"] == "resolved"


def test_the_readme_alertmanager_config_passes_amtool_check_config(tmp_path: Path) -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (it ships with prometheus-alertmanager)")
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    found = re.search(r"An Alertmanager route for host failures.*?```yaml\n(.*?)```", readme,
                      re.S)
    assert found, "README.md lost its Notifications config snippet"
    config = tmp_path / "alertmanager.yml"
    # The snippet's e-mail receiver needs the SMTP globals every real config has.
    config.write_text("global:\n  smtp_smarthost: 'localhost:25'\n  smtp_from: 'am@example.org'\n"
                      + found.group(1))
    done = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "CloudStackHostFailure" in found.group(1)

"""``run``: cycles, the quiet-cycle budget, dry run, systemd notifications and a clean stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from wiringkit import cli_env, context, ledger_url, run_cli, served, sim_with_history, spawn_cli

from cloudstack_simulator import Simulator
from sidecar.cloudstack.listing import ELIGIBLE_NAMES
from sidecar.ledger import Ledger
from sidecar.ops.service.cycle import Service
from sidecar.ops.service.metrics import Metrics
from sidecar.ops.service.scheduler import SignalWatcher
from sidecar.support.errors import LedgerUnavailable


@pytest.fixture
def sim() -> Simulator:
    """1,500 alerts of history and a host that crashed (and came back) a moment ago."""
    return sim_with_history(1500)


@pytest.fixture
def service_for(tmp_path: Path) -> Iterator[list[Service]]:
    """Services made by a test, closed after it."""
    made: list[Service] = []
    yield made
    for service in made:
        service.close()


def new_service(made: list[Service], sim: Simulator, endpoint: str, url: str, *,
                dry_run: bool = False) -> Service:
    service = Service(context(sim, endpoint, url), dry_run=dry_run, metrics=Metrics())
    made.append(service)
    asyncio.run(service.verify())
    return service


def recent_duplicates(sim: Simulator) -> set[str]:
    """Truth duplicates within the service's 24 h memory (older ones are cleanup's job)."""
    now = sim.clock.time()
    recent = {f.id for f in sim.truth.failures if now - f.started < 86400}
    return {d for f in sim.truth.failures if f.id in recent for d in f.duplicate_ids}


def test_a_cycle_archives_the_recent_duplicates_and_a_quiet_cycle_costs_host_pages_and_one_call_per_name(  # noqa: E501
    sim: Simulator, tmp_path: Path, service_for: list[Service]
) -> None:
    wanted = recent_duplicates(sim)
    assert wanted
    with served(sim) as endpoint:
        service = new_service(service_for, sim, endpoint, ledger_url(tmp_path))
        first = service.run_cycle()
        assert first.ok, first.message
        assert first.counts["archived"] == len(wanted)
        assert set(sim.stats.archive_count) == wanted
        assert "leader" in first.message

        sim.stats.reset()
        quiet = service.run_cycle()
        assert quiet.ok, quiet.message
        calls = dict(sim.stats.calls)
    host_pages = 1  # 6 hosts fit one page of 500
    assert calls == {"listHosts": host_pages, "listAlerts": len(ELIGIBLE_NAMES)}
    assert quiet.counts.get("new_alerts", 0) == 0
    assert {r.params["name"] for r in sim.stats.requests if r.command == "listAlerts"} == set(
        ELIGIBLE_NAMES
    )


def test_new_duplicates_of_a_later_failure_are_archived_by_the_next_cycle_canonicals_kept(
    sim: Simulator, tmp_path: Path, service_for: list[Service]
) -> None:
    url = ledger_url(tmp_path)
    with served(sim) as endpoint:
        service = new_service(service_for, sim, endpoint, url)
        assert service.run_cycle().ok
        before = set(sim.stats.archive_count)
        run = sim.run_scenario("host-crash", host="kvm-03")
        failure = sim.truth.failures[-1]
        assert failure.host == "kvm-03" and run.done
        result = service.run_cycle()
        assert result.ok, result.message
    archived = set(sim.stats.archive_count) - before
    assert archived == set(failure.duplicate_ids)
    assert not archived & set(failure.canonical_ids)
    with Ledger(url, holder="auditor", migrate=False, create=False) as ledger:
        assert ledger.verify() == []


def test_a_dry_run_cycle_observes_and_plans_but_archives_nothing(
    sim: Simulator, tmp_path: Path, service_for: list[Service]
) -> None:
    url = ledger_url(tmp_path)
    with served(sim) as endpoint:
        service = new_service(service_for, sim, endpoint, url, dry_run=True)
        result = service.run_cycle()
    assert result.ok, result.message
    assert result.plan is not None and set(result.plan.archive) == recent_duplicates(sim)
    assert "dry run" in result.message
    assert sim.stats.calls["archiveAlerts"] == 0
    assert service.metrics.registry.get_sample_value("cloudstack_sidecar_dry_run") == 1
    with Ledger(url, holder="auditor", migrate=False, create=False) as ledger:
        assert ledger.actions() == []
        assert ledger.lease() is None
        assert len(ledger.alert_sightings()) > 0
        assert ledger.runs()[-1].mode == "dry-run"


def test_a_cycle_failing_in_the_ledger_reports_that_error_not_the_failure_to_record_its_end(
    sim: Simulator, tmp_path: Path, service_for: list[Service], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def failing(message: str) -> Callable[..., NoReturn]:
        def fail(*_args: object, **_kwargs: object) -> NoReturn:
            raise LedgerUnavailable(message)
        return fail

    with served(sim) as endpoint:
        service = new_service(service_for, sim, endpoint, ledger_url(tmp_path))
        monkeypatch.setattr(service.ledger, "acquire_lease", failing("the lease timed out"))
        monkeypatch.setattr(service.ledger, "finish_run", failing("the run's end timed out"))
        with caplog.at_level(logging.WARNING):
            result = service.run_cycle()

    assert not result.ok and result.exit_code == 4
    assert result.message == "the lease timed out; the next cycle retries"
    assert "could not record the failed cycle in the ledger: the run's end timed out" in (
        caplog.text
    )
    sample = service.metrics.registry.get_sample_value
    assert sample("cloudstack_sidecar_cycle_failures_total", {"reason": "ledger"}) == 1
    assert sample("cloudstack_sidecar_cycle_failures_total", {"reason": "internal"}) == 0


def test_the_vms_of_a_failed_host_are_polled_while_its_ha_is_under_way_and_then_no_more(
    tmp_path: Path, service_for: list[Service]
) -> None:
    sim = sim_with_history(0, scenario=None)
    sim.start_scenario("host-crash", host="kvm-02", recover_after=None)
    sim.clock.advance(160)  # Down, HA rounds scheduled, no VM restarted yet
    with served(sim) as endpoint:
        service = new_service(service_for, sim, endpoint, ledger_url(tmp_path))
        assert service.run_cycle().ok  # primes: the full VM inventory
        sim.stats.reset()
        assert service.run_cycle().ok  # HA under way: the failed host's VMs
        polled = sim.stats.calls["listVirtualMachines"]
        sim.clock.run_until_idle()  # HA restarted every HA VM elsewhere; the host stays Down
        assert service.run_cycle().ok  # new "HA starting VM" alerts: the inventory again
        sim.stats.reset()
        assert service.run_cycle().ok
        after = sim.stats.calls["listVirtualMachines"]
    assert polled == 1
    assert [r.params.get("hostid") for r in sim.stats.requests
            if r.command == "listVirtualMachines"] == []
    assert after == 0
    assert sim.host("kvm-02").status == "Down"


def test_metrics_count_cycles_archives_and_api_calls(
    sim: Simulator, tmp_path: Path, service_for: list[Service]
) -> None:
    with served(sim) as endpoint:
        service = new_service(service_for, sim, endpoint, ledger_url(tmp_path))
        assert service.run_cycle().ok
    text = service.metrics.render().decode()
    archived = sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
        if line.startswith("cloudstack_sidecar_archived_total{")
    )
    assert archived == len(recent_duplicates(sim))
    assert 'cloudstack_sidecar_cycles_total{outcome="ok"} 1.0' in text
    assert 'cloudstack_sidecar_api_calls_total{code="200",command="listAlerts"}' in text
    assert "cloudstack_sidecar_lease_held 1.0" in text
    assert "cloudstack_sidecar_dry_run 0.0" in text


def test_metrics_count_the_duplicates_whose_archiving_failed_by_family(
    sim: Simulator, tmp_path: Path, service_for: list[Service]
) -> None:
    # A 431 that names no id fails the whole batch (nothing to bisect, nothing gone).
    sim.faults.add("error", "archiveAlerts", status=431, text="invalid parameter",
                   cserrorcode=4350)
    with served(sim) as endpoint:
        service = new_service(service_for, sim, endpoint, ledger_url(tmp_path))
        result = service.run_cycle()
    text = service.metrics.render().decode()
    failed = sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
        if line.startswith("cloudstack_sidecar_archive_failures_total{")
    )
    assert result.counts["failed"] == len(recent_duplicates(sim)) > 0
    assert failed == result.counts["failed"]
    assert "cloudstack_sidecar_archived_total{" not in text


def test_run_once_acts_and_run_once_dry_run_archives_nothing(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with served(sim) as endpoint:
        dry = run_cli(["run", "--once", "--dry-run"],
                      cli_env(sim, endpoint, ledger_url(tmp_path, "dry.sqlite3")), monkeypatch)
        assert dry.code == 0, dry.err
        assert sim.stats.calls["archiveAlerts"] == 0
        acting = run_cli(["run", "--once"], cli_env(sim, endpoint, ledger_url(tmp_path)),
                         monkeypatch)
        assert acting.code == 0, acting.err
    assert set(sim.stats.archive_count) == recent_duplicates(sim)
    assert "cycle ok: dry run;" in dry.err
    assert "cycle ok: leader;" in acting.err


def _notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    if len(path) > 100:  # AF_UNIX paths are limited to 108 bytes
        path = os.path.join(tempfile.mkdtemp(prefix="sd-"), "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(60)  # generous: a loaded CI machine; never a fixed sleep
    return sock, path


def _wait_for(sock: socket.socket, field: str, seen: list[str]) -> str:
    """Receive datagrams until one carries ``field`` (e.g. ``READY=1``); returns it."""
    while True:
        message = sock.recv(4096).decode()
        seen.append(message)
        if any(line.startswith(field) for line in message.splitlines()):
            return message


def test_run_notifies_systemd_ready_status_watchdog_and_stops_cleanly_on_sigterm(
    sim: Simulator, tmp_path: Path
) -> None:
    sock, path = _notify_socket(tmp_path)
    seen: list[str] = []
    with served(sim) as endpoint:
        env = cli_env(sim, endpoint, ledger_url(tmp_path), poll_interval=3600)
        env["NOTIFY_SOCKET"] = path
        proc = spawn_cli(["run"], env)
        try:
            ready = _wait_for(sock, "READY=1", seen)
            assert "STATUS=CloudStack 4.19.2.0" in ready
            status = _wait_for(sock, "STATUS=ok: leader;", seen)
            watchdog = _wait_for(sock, "WATCHDOG=1", seen)
            proc.send_signal(signal.SIGTERM)
            stopping = _wait_for(sock, "STOPPING=1", seen)
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
            sock.close()
    assert proc.returncode == 0, err
    order = [seen.index(m) for m in (ready, status, watchdog, stopping)]
    assert order == sorted(order)
    assert "received SIGTERM" in err and "stopped" in err
    assert "Traceback" not in err
    assert set(sim.stats.archive_count) == recent_duplicates(sim)
    # The lease is released on a clean stop: another sidecar may act at once.
    with Ledger(ledger_url(tmp_path), holder="auditor", migrate=False, create=False) as ledger:
        lease = ledger.lease()
        assert lease is not None and not lease.valid_at(lease.renewed_at)


def test_the_signal_watcher_runs_its_callback_off_the_main_thread() -> None:
    got: list[tuple[int, str]] = []
    done = threading.Event()

    def on_signal(signum: int) -> None:
        got.append((signum, threading.current_thread().name))
        done.set()

    previous = signal.getsignal(signal.SIGTERM)
    watcher = SignalWatcher(on_signal)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert done.wait(10)
    finally:
        watcher.close()
    assert got == [(signal.SIGTERM, "signal-watcher")]
    assert signal.getsignal(signal.SIGTERM) is previous

"""Secrets (API key, secret, request signatures) never appear in output, logs, exceptions,
reports, metrics or the ledger.

Every command runs as a real process with a known key and secret under maximum log verbosity
(SIDECAR_LOG_LEVEL=DEBUG, text and JSON logs), on good days and bad ones (faults, a wrong
secret, a 401 mid-run); then all of its output, the ledger's export and the ledger database's
bytes (with its WAL) are searched for the key, the secret, every signature the simulator
received, and their URL-encoded forms.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from reliakit import Zygote, base_env, fast_settings, make_context

from cloudstack_simulator import Simulator
from sidecar.cloudstack.client import CloudStackClient
from sidecar.cloudstack.config import CloudStackConfig
from sidecar.cloudstack.errors import CloudStackError
from sidecar.cloudstack.limits import ClientLimits
from sidecar.ops.service.cycle import Service
from sidecar.ops.service.metrics import Metrics

#: Distinctive credentials; the secret has characters that URL-encode (+ / =).
KEY = "kEy4sidecarTEST" + "Qw3rTy9u" * 7
SECRET = "s3cr3t+sidecar/TEST=" + "Zx8Cv7Bn" * 7


def forms(value: str) -> set[str]:
    """A value as it could leak: raw, URL-encoded both ways, lower-cased (signing lowercases)."""
    out = {value, quote(value, safe=""), quote_plus(value), value.lower()}
    return {v for v in out if len(v) >= 8}


class Leaks:
    """Collects every text and byte string a test produced, and looks for secrets in them."""

    def __init__(self, sim: Simulator) -> None:
        self.signatures: set[str] = set()
        self.texts: list[tuple[str, str]] = []
        original = sim.authenticate

        def spy(params: dict[str, str]) -> Any:
            for name, value in params.items():
                if name.lower() == "signature":
                    self.signatures.add(value)
            return original(params)

        sim.authenticate = spy  # type: ignore[method-assign]

    def add(self, where: str, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode("latin-1")
        self.texts.append((where, text))

    def found(self) -> list[str]:
        needles = forms(KEY) | forms(SECRET)
        for signature in self.signatures:
            needles |= forms(signature)
        return [f"{where}: contains {needle[:12]}…"
                for where, text in self.texts for needle in needles if needle in text]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    # 40 minutes behind: the two host-crash scenarios below (~15 min each) stay in the past,
    # so that signatures made with our clock are still valid.
    simulator = Simulator(hosts=4, vms_per_host=3, key=KEY, secret=SECRET,
                          start=datetime.now(UTC) - timedelta(minutes=40))
    simulator.seed_history(alerts=300, duplicate_ratio=0.3)
    with simulator.serve():
        yield simulator


def test_no_command_leaks_the_key_secret_or_signatures(
    zygote: Zygote, sim: Simulator, tmp_path: Path
) -> None:
    leaks = Leaks(sim)
    home = tmp_path / "home"  # made by tests/conftest.py
    ledger = tmp_path / "ledger.sqlite3"
    env = base_env(home, CLOUDSTACK_ENDPOINT=sim.endpoint or "", CLOUDSTACK_KEY=KEY,
                   CLOUDSTACK_SECRET=SECRET, SIDECAR_LEDGER_URL=f"sqlite:///{ledger}",
                   SIDECAR_LOG_LEVEL="DEBUG", SIDECAR_RETRY_BACKOFF="0",
                   SIDECAR_ARCHIVE_BATCH_SIZE="10")
    as_json = {**env, "SIDECAR_LOG_FORMAT": "json"}
    # The same credentials from an ini file (cs's other way), in the working directory.
    ini = tmp_path / "cloudstack.ini"
    ini.write_text(f"[cloudstack]\nendpoint = {sim.endpoint}\nkey = {KEY}\nsecret = {SECRET}\n")
    ini.chmod(0o600)
    from_ini = {k: v for k, v in env.items() if not k.startswith("CLOUDSTACK_")}
    wrong_secret = {**env, "CLOUDSTACK_SECRET": SECRET[::-1]}

    codes: list[int] = []

    def run(argv: list[str], environment: dict[str, str], setup: object = None) -> None:
        if callable(setup):
            setup()
        result = zygote.run(argv, environment, tmp_path)
        codes.append(result.code)
        leaks.add(f"`{' '.join(argv)}` stdout", result.stdout)
        leaks.add(f"`{' '.join(argv)}` stderr", result.stderr)
        sim.faults.clear()

    run(["check"], env)
    run(["check", "--format", "json"], from_ini)
    run(["check"], wrong_secret)
    run(["report"], env)
    run(["report", "--format", "json"], as_json)
    run(["report", "--format", "csv"], env, lambda: sim.faults.add("error", "listAlerts",
                                                                  status=530, times=2))
    run(["cleanup"], from_ini)
    run(["cleanup", "--apply", "--format", "json"], as_json, lambda: (
        sim.faults.add("error", "archiveAlerts", status=503, times=1),
        sim.faults.add("reset", "listAlerts", times=2),
        sim.faults.add("malformed_json", "archiveAlerts", times=1),
        sim.faults.add("archived_by_other", times=1),
    ))
    run(["cleanup", "--apply"], env, lambda: sim.faults.add("unauthorized", "archiveAlerts",
                                                           times=1))
    run(["cleanup", "--apply"], env)
    run(["run", "--once", "--log-level", "DEBUG"], env, lambda: sim.run_scenario("host-crash"))
    run(["run", "--once", "--log-format", "json"], as_json,
        lambda: (sim.run_scenario("host-crash"), sim.faults.add("html", "listHosts", times=1)))
    run(["run", "--once"], wrong_secret)
    run(["ledger", "show"], env)
    run(["ledger", "show", "--format", "json"], env)
    run(["ledger", "export", "--format", "jsonl"], env)
    run(["ledger", "export", "--format", "csv"], env)
    run(["ledger", "verify"], env)
    run(["role", "--format", "cs"], env)

    for path in sorted(tmp_path.glob("ledger.sqlite3*")):
        leaks.add(f"ledger file {path.name}", path.read_bytes())
    assert leaks.signatures, "the simulator saw no signed request"
    # The good days really were good: cleanups, reports and service cycles did their work.
    # (the faulty cleanup may end "incomplete", exit 1; the next one finishes the work)
    assert codes[3:5] == [3, 3] and codes[7] in (0, 1) and codes[9:11] == [0, 0], codes
    assert sim.stats.archive_count
    assert len(leaks.texts) > 30
    assert leaks.found() == []


def test_exceptions_reprs_and_metrics_never_carry_the_secrets(
    sim: Simulator, tmp_path: Path
) -> None:
    leaks = Leaks(sim)
    config = CloudStackConfig(sim.endpoint or "", KEY, SECRET)
    leaks.add("repr(config)", repr(config) + str(config))

    async def failing_calls() -> None:
        limits = ClientLimits.from_settings(fast_settings("sqlite://"))
        async with CloudStackClient(config, limits=limits) as cs:
            leaks.add("repr(client)", repr(cs))
            for kind, options in (("unauthorized", {}), ("error", {"status": 530}),
                                  ("html", {}), ("malformed_json", {}), ("reset", {})):
                sim.faults.add(kind, "listAlerts", times=10, **options)
                try:
                    await cs.list_alerts(name="ALERT.USERVM")
                except CloudStackError as exc:
                    leaks.add(f"{kind} error", f"{exc}\n{exc!r}\n{exc.detail}")
                    leaks.add(f"{kind} traceback", "".join(traceback.format_exception(exc)))
                sim.faults.clear()

    asyncio.run(failing_calls())

    # A service cycle that works and one that fails, with metrics.
    sim.run_scenario("host-crash")
    metrics = Metrics()
    service = Service(make_context(sim, fast_settings(f"sqlite:///{tmp_path / 'l.sqlite3'}")),
                      dry_run=False, metrics=metrics)
    try:
        ok = service.run_cycle()
        sim.faults.add("unauthorized", "*", times=100)
        failed = service.run_cycle()
    finally:
        service.close()
    leaks.add("cycle messages", f"{ok.message}\n{failed.message}")
    leaks.add("metrics", metrics.render())
    assert leaks.signatures
    assert leaks.found() == []

"""TLS: verification is on by default, a private CA works through the ini's ``verify``, and only
cs's explicit ``dangerous_no_tls_verify`` turns it off, with a warning at every start.

The simulator serves HTTPS with a certificate for 127.0.0.1 signed by a throwaway CA made with
``openssl`` (conftest.tls_files).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from reliakit import CliResult, TlsFiles, Zygote, base_env

from cloudstack_simulator import Simulator


@pytest.fixture
def tls_sim(tls_files: TlsFiles) -> Iterator[Simulator]:
    sim = Simulator(hosts=2, vms_per_host=2, start=datetime.now(UTC))
    sim.seed_history(alerts=200, duplicate_ratio=0.3)
    with sim.serve(tls=tls_files.server_context()) as endpoint:
        assert endpoint.startswith("https://127.0.0.1:")
        yield sim


def ini_env(tmp_path: Path, sim: Simulator, extra: str = "") -> dict[str, str]:
    ini = tmp_path / "cs.ini"
    ini.write_text(f"[cloudstack]\nendpoint = {sim.endpoint}\nkey = {sim.key}\n"
                   f"secret = {sim.secret}\n{extra}")
    ini.chmod(0o600)
    return base_env(tmp_path / "home", CLOUDSTACK_CONFIG=str(ini),
                    SIDECAR_LEDGER_URL=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
                    SIDECAR_MAX_RETRIES="0")


def run(zygote: Zygote, argv: list[str], env: dict[str, str], cwd: Path) -> CliResult:
    result = zygote.run(argv, env, cwd)
    assert "Traceback" not in result.output
    return result


def test_verification_is_on_by_default(zygote: Zygote, tls_sim: Simulator,
                                       tmp_path: Path) -> None:
    result = run(zygote, ["check"], ini_env(tmp_path, tls_sim), tmp_path)
    assert result.code == 5
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: listCapabilities at 127.0.0.1:{tls_sim.port}: cannot reach "
                           f"{tls_sim.endpoint} (")
    assert "CERTIFICATE_VERIFY_FAILED" in line or "certificate verify failed" in line
    assert not tls_sim.stats.calls  # no request got through the failed handshake


def test_a_private_ca_named_by_verify_is_trusted(zygote: Zygote, tls_sim: Simulator,
                                                  tls_files: TlsFiles, tmp_path: Path) -> None:
    env = ini_env(tmp_path, tls_sim, f"verify = {tls_files.ca}\n")
    checked = run(zygote, ["check"], env, tmp_path)
    assert checked.code == 0, checked.output
    assert "TLS certificate verification is OFF" not in checked.output
    # The whole flow over TLS: archive the duplicates.
    cleaned = run(zygote, ["cleanup", "--apply"], env, tmp_path)
    assert cleaned.code == 0, cleaned.output
    assert set(tls_sim.stats.archive_count) == tls_sim.truth.duplicate_ids


def test_a_ca_that_did_not_sign_the_certificate_is_refused(
    zygote: Zygote, tls_sim: Simulator, tls_files: TlsFiles, tmp_path: Path
) -> None:
    # The server certificate itself is not a CA: trusting it as one must not work.
    env = ini_env(tmp_path, tls_sim, f"verify = {tls_files.cert}\n")
    result = run(zygote, ["check"], env, tmp_path)
    assert result.code == 5
    assert "certificate verify failed" in result.stderr.lower()


def test_dangerous_no_tls_verify_works_and_warns_at_every_start(
    zygote: Zygote, tls_sim: Simulator, tmp_path: Path
) -> None:
    env = ini_env(tmp_path, tls_sim, "dangerous_no_tls_verify = true\n")
    for argv in (["check"], ["report"], ["run", "--once", "--dry-run"]):
        result = run(zygote, argv, env, tmp_path)
        assert result.code in (0, 3), (argv, result.output)
        warnings = [line for line in result.stderr.splitlines()
                    if "TLS certificate verification is OFF" in line]
        assert len(warnings) == 1, (argv, result.stderr)
        assert (tls_sim.endpoint or "?") in warnings[0]


@pytest.mark.parametrize("value", ["false", "no", "0"])
def test_verify_false_does_not_turn_verification_off(
    zygote: Zygote, tls_sim: Simulator, tmp_path: Path, value: str
) -> None:
    env = ini_env(tmp_path, tls_sim, f"verify = {value}\n")
    result = run(zygote, ["check"], env, tmp_path)
    assert result.code == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: verify = {value} in [cloudstack] of {tmp_path / 'cs.ini'} does not turn TLS "
        "verification off: set dangerous_no_tls_verify = true if you really mean it"
    )


def test_a_missing_ca_bundle_is_named(zygote: Zygote, tls_sim: Simulator,
                                      tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ca.pem"
    result = run(zygote, ["check"], ini_env(tmp_path, tls_sim, f"verify = {missing}\n"),
                 tmp_path)
    assert result.code == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: CA bundle {missing} (verify in [cloudstack] of {tmp_path / 'cs.ini'}) does "
        "not exist"
    )

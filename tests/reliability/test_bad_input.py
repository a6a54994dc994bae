"""Every user-facing error of README's error table: the exact one-line message prefix on stderr,
the exit code, no traceback, from a real ``cloudstack-sidecar`` process (``reliakit.Zygote``).

README's table abridges the messages; where the real prefix differs from the table (it starts
with the command and host, for instance) the test pins the real one and the report says so.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliakit import CliResult, Zygote, base_env

from cloudstack_simulator import Simulator
from sidecar.cli.role import ROLE_APIS
from sidecar.ledger import Ledger


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A served simulator whose clock is now (so ``check`` sees no skew)."""
    from datetime import UTC, datetime

    simulator = Simulator(hosts=2, vms_per_host=1, start=datetime.now(UTC))
    with simulator.serve():
        yield simulator


def run(zygote: Zygote, argv: list[str], env: dict[str, str], cwd: Path) -> CliResult:
    result = zygote.run(argv, env, cwd)
    assert "Traceback" not in result.output, result.output
    return result


def error_line(result: CliResult) -> str:
    """The one ``error:`` line (the last line of stderr)."""
    lines = result.stderr.strip().splitlines()
    assert lines, f"no error on stderr (exit {result.code}): {result.stdout}"
    return lines[-1]


def sim_env(sim: Simulator, home: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    values = {
        "CLOUDSTACK_ENDPOINT": sim.endpoint or "",
        "CLOUDSTACK_KEY": sim.key,
        "CLOUDSTACK_SECRET": sim.secret,
        "SIDECAR_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        "SIDECAR_RETRY_BACKOFF": "0",
    }
    values.update(extra)
    return base_env(home, **values)


def write_ini(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- credentials and endpoint ----------------------------------------------------------------


def test_no_credentials_at_all(zygote: Zygote, home: Path, tmp_path: Path) -> None:
    result = run(zygote, ["check"], base_env(home), tmp_path)
    assert result.code == 2
    assert error_line(result).startswith(
        "error: no CloudStack credentials found: create ~/.cloudstack.ini with a [cloudstack] "
        "section"
    )
    assert result.stderr.strip().count("\n") == 0


def test_an_unknown_region(zygote: Zygote, home: Path, tmp_path: Path) -> None:
    ini = write_ini(tmp_path / "cs.ini", "[cloudstack]\nendpoint = http://127.0.0.1:9/client/api\n"
                    "key = some-key\nsecret = some-secret\n")
    result = run(zygote, ["check", "--region", "lab"],
                 base_env(home, CLOUDSTACK_CONFIG=str(ini)), tmp_path)
    assert result.code == 2
    assert error_line(result).startswith(f"error: region 'lab' is not a section of {ini}")


def test_an_endpoint_in_the_environment_hides_the_ini_credentials(
    zygote: Zygote, home: Path, tmp_path: Path
) -> None:
    ini = write_ini(tmp_path / "cs.ini", "[cloudstack]\nendpoint = http://127.0.0.1:9/client/api\n"
                    "key = some-key\nsecret = some-secret\n")
    env = base_env(home, CLOUDSTACK_CONFIG=str(ini),
                   CLOUDSTACK_ENDPOINT="http://127.0.0.1:9/client/api")
    result = run(zygote, ["check"], env, tmp_path)
    assert result.code == 2
    assert error_line(result).startswith(
        "error: CLOUDSTACK_ENDPOINT is set, so cs ignores cloudstack.ini"
    )


@pytest.mark.parametrize("endpoint", ["ftp://ms/client/api", "ms.example:8080/client/api",
                                      "http:///client/api"])
def test_an_endpoint_that_is_not_an_http_url(
    zygote: Zygote, home: Path, tmp_path: Path, endpoint: str
) -> None:
    ini = write_ini(tmp_path / "cs.ini", f"[cloudstack]\nendpoint = {endpoint}\n"
                    "key = some-key\nsecret = some-secret\n")
    result = run(zygote, ["check"], base_env(home, CLOUDSTACK_CONFIG=str(ini)), tmp_path)
    assert result.code == 2
    line = error_line(result)
    assert line.startswith(f"error: endpoint {endpoint!r} in [cloudstack] of {ini}")
    assert "is not an http(s) URL with a host" in line


@pytest.mark.parametrize("command", [["check"], ["report"], ["run", "--once"]])
def test_an_unreachable_endpoint(
    zygote: Zygote, home: Path, tmp_path: Path, command: list[str]
) -> None:
    port = free_port()
    env = base_env(home, CLOUDSTACK_ENDPOINT=f"http://127.0.0.1:{port}/client/api",
                   CLOUDSTACK_KEY="some-key", CLOUDSTACK_SECRET="some-secret",
                   SIDECAR_LEDGER_URL=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
                   SIDECAR_MAX_RETRIES="0")
    result = run(zygote, command, env, tmp_path)
    assert result.code == 5
    # README abridges this as "cannot reach <url> (…)"; the line names the command first.
    assert error_line(result).startswith(
        f"error: listCapabilities at 127.0.0.1:{port}: cannot reach "
        f"http://127.0.0.1:{port}/client/api ("
    )


def test_an_unreachable_endpoint_is_reported_in_one_line_even_after_retries(
    zygote: Zygote, home: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = base_env(home, CLOUDSTACK_ENDPOINT=f"http://127.0.0.1:{port}/client/api",
                   CLOUDSTACK_KEY="some-key", CLOUDSTACK_SECRET="some-secret",
                   SIDECAR_RETRY_BACKOFF="0")
    result = run(zygote, ["check"], env, tmp_path)
    assert result.code == 5
    # "Every user error is one line on stderr starting with error:" (README).
    assert result.stderr.strip().splitlines() == [error_line(result)]


REJECTED = (
    "CloudStack error 401: unable to verify user credentials and/or request signature: "
    "CloudStack rejected the credentials or the request signature: wrong API key or secret, "
    "a disabled or locked user/account, or clock skew"
)


@pytest.mark.parametrize(("what", "command"), [
    ("wrong key", ["check"]), ("wrong secret", ["check"]), ("disabled account", ["check"]),
    ("wrong secret", ["run", "--once"]), ("disabled account", ["cleanup", "--apply"]),
])
def test_rejected_credentials(
    zygote: Zygote, home: Path, tmp_path: Path, sim: Simulator, what: str, command: list[str]
) -> None:
    key, secret = sim.key, sim.secret
    if what == "wrong key":
        key = "x" * len(key)
    elif what == "wrong secret":
        secret = "y" * len(secret)
    else:
        key, secret = sim.create_key()
        sim.disable_key(key)
    env = sim_env(sim, home, tmp_path, CLOUDSTACK_KEY=key, CLOUDSTACK_SECRET=secret)
    result = run(zygote, command, env, tmp_path)
    assert result.code == 5
    assert error_line(result).startswith(
        f"error: listCapabilities at 127.0.0.1:{sim.port}: {REJECTED}"
    )
    assert archived_nothing(sim)


def archived_nothing(sim: Simulator) -> bool:
    return not sim.stats.archive_count


def test_a_role_without_an_api_the_sidecar_needs(
    zygote: Zygote, home: Path, tmp_path: Path, sim: Simulator
) -> None:
    key, secret = sim.create_key(role=set(ROLE_APIS) - {"listAlerts"})
    env = sim_env(sim, home, tmp_path, CLOUDSTACK_KEY=key, CLOUDSTACK_SECRET=secret)
    result = run(zygote, ["report"], env, tmp_path)
    assert result.code == 5
    assert error_line(result).startswith(
        f"error: listAlerts at 127.0.0.1:{sim.port}: CloudStack error 401, cserrorcode 9999: "
        "The given command 'listAlerts' either does not exist, is not available for user.: "
        "the account's role does not allow this API"
    )
    # ``check`` names every missing API in its table and exits 1 (README says 5: see report).
    checked = run(zygote, ["check"], env, tmp_path)
    assert checked.code == 1
    assert "not allowed: listAlerts" in checked.stdout


def test_an_html_page_instead_of_the_api(
    zygote: Zygote, home: Path, tmp_path: Path, sim: Simulator
) -> None:
    sim.faults.add("html", times=1)
    result = run(zygote, ["check"], sim_env(sim, home, tmp_path), tmp_path)
    assert result.code == 5
    assert error_line(result).startswith(
        f"error: listCapabilities at 127.0.0.1:{sim.port}: expected CloudStack JSON from "
        f"{sim.endpoint} but got HTTP 200 text/html"
    )


@pytest.mark.parametrize(("version", "command"), [
    ("4.18.1.0", ["check"]), ("4.23.0.0", ["check"]), ("5.0.0.0", ["run", "--once"]),
    ("4.18.0.0", ["cleanup", "--apply"]), ("4.18.0.0", ["report"]),
])
def test_an_unsupported_cloudstack_version(
    zygote: Zygote, home: Path, tmp_path: Path, sim: Simulator, version: str,
    command: list[str],
) -> None:
    sim.seed_history(alerts=100)  # duplicates it must not touch
    sim.profile = dataclasses.replace(sim.profile, version=version)
    result = run(zygote, command, sim_env(sim, home, tmp_path), tmp_path)
    assert result.code == 2
    assert error_line(result).startswith(f"error: CloudStack {version} is not supported")
    assert archived_nothing(sim)


@pytest.mark.parametrize("version", ["4.19.0.0", "4.20.1.0", "4.22.0.0"])
def test_supported_cloudstack_versions_pass_the_check(
    zygote: Zygote, home: Path, tmp_path: Path, sim: Simulator, version: str
) -> None:
    sim.profile = dataclasses.replace(sim.profile, version=version)
    result = run(zygote, ["check"], sim_env(sim, home, tmp_path), tmp_path)
    assert result.code == 0, result.output


# -- ledger and state directory ------------------------------------------------------------


def test_a_ledger_url_with_an_unknown_driver(
    zygote: Zygote, home: Path, tmp_path: Path, sim: Simulator
) -> None:
    env = sim_env(sim, home, tmp_path, SIDECAR_LEDGER_URL="nosuch://db/ledger")
    result = run(zygote, ["report"], env, tmp_path)
    assert result.code == 4
    # README abridges the ledger errors as "cannot open the ledger <url> (…)".
    assert error_line(result).startswith(
        "error: the ledger URL 'nosuch://db/ledger' names an unsupported database driver"
    )


def test_a_ledger_server_that_is_not_there_with_its_password_masked(
    zygote: Zygote, home: Path, tmp_path: Path, sim: Simulator
) -> None:
    port = free_port()
    url = f"postgresql+psycopg://sidecar:hunter2secret@127.0.0.1:{port}/ledger"
    result = run(zygote, ["report"], sim_env(sim, home, tmp_path, SIDECAR_LEDGER_URL=url),
                 tmp_path)
    assert result.code == 4
    assert error_line(result).startswith(
        "error: cannot use the ledger at "
        f"postgresql+psycopg://sidecar:***@127.0.0.1:{port}/ledger ("
    )
    assert "hunter2secret" not in result.output


def test_a_state_directory_that_cannot_be_created(
    zygote: Zygote, home: Path, tmp_path: Path, sim: Simulator
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    env = sim_env(sim, home, tmp_path, STATE_DIRECTORY=str(blocker / "state"))
    del env["SIDECAR_LEDGER_URL"]  # the default ledger lives in the state directory
    result = run(zygote, ["report"], env, tmp_path)
    assert result.code == 4
    # README abridges this as "state directory … is not writable …".
    assert error_line(result).startswith(
        f"error: cannot create the ledger file {blocker / 'state' / 'ledger.sqlite3'} "
        "(Not a directory): make its directory writable"
    )


# -- the sidecar's own settings ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "commands"),
    [
        ("poll_interval = = 3\n", "error: config file {path} is not valid TOML (",
         [["check"], ["run", "--once"]]),
        ("pol_interval = 30\n",
         "error: unknown setting 'pol_interval' in {path}: see sidecar.toml.example for the "
         "valid names", [["report"], ["cleanup", "--apply"]]),
        ("poll_interval = 1\n",
         "error: setting 'poll_interval' in {path} is 1.0, outside 5..86400: set a value in "
         "that range", [["run", "--once"], ["check"]]),
        ("max_concurrency = 100\n",
         "error: setting 'max_concurrency' in {path} is 100, outside 1..64: set a value in that "
         "range", [["cleanup", "--apply"], ["report"]]),
    ],
    ids=["malformed TOML", "unknown setting", "out of range (float)", "out of range (int)"],
)
def test_bad_settings_files(
    zygote: Zygote, home: Path, tmp_path: Path, sim: Simulator, text: str, expected: str,
    commands: list[list[str]],
) -> None:
    path = tmp_path / "sidecar.toml"
    path.write_text(text)
    for command in commands:
        result = run(zygote, [*command, "--config", str(path)], sim_env(sim, home, tmp_path),
                     tmp_path)
        assert result.code == 2, command
        assert error_line(result).startswith(expected.format(path=path)), command
    assert not sim.stats.calls  # nothing was sent before the settings were valid


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("SIDECAR_POLL_INTERVL", "30",
         "error: unknown setting SIDECAR_POLL_INTERVL in the environment: unset it or fix the "
         "name"),
        ("SIDECAR_ARCHIVE_BATCH_SIZE", "0",
         "error: setting 'archive_batch_size' in SIDECAR_ARCHIVE_BATCH_SIZE is 0, outside "
         "1..20000: set a value in that range"),
        ("SIDECAR_DRY_RUN", "maybe",
         "error: setting 'dry_run' in SIDECAR_DRY_RUN has the invalid value 'maybe'"),
    ],
)
def test_bad_settings_in_the_environment(
    zygote: Zygote, home: Path, tmp_path: Path, sim: Simulator, name: str, value: str,
    expected: str,
) -> None:
    result = run(zygote, ["report"], sim_env(sim, home, tmp_path, **{name: value}), tmp_path)
    assert result.code == 2
    assert error_line(result).startswith(expected)


def test_another_sidecar_holding_the_lease(
    zygote: Zygote, home: Path, tmp_path: Path, sim: Simulator
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    with Ledger(url, holder="other-host:4242") as other:
        assert other.acquire_lease(600) is not None
    result = run(zygote, ["cleanup", "--apply"], sim_env(sim, home, tmp_path), tmp_path)
    assert result.code == 2
    assert error_line(result).startswith(
        "error: another sidecar holds the ledger lease and is acting"
    )
    assert archived_nothing(sim)

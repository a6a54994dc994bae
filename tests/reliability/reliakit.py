"""Helpers of the reliability suite (imported as ``reliakit``; also used by bench/soak_crash.py).

* fast settings and contexts for sidecars talking to an embedded simulator;
* an invariant checker comparing the simulator's ground truth with the ledger;
* an intent auditor: at every archiveAlerts request, every id must already be ``sent`` in the
  ledger (no CloudStack action without its intent row);
* a zygote: a pre-imported Python process that forks ``cloudstack-sidecar <argv>`` children in
  ~10 ms instead of paying ~1.5 s of imports per run, so crash trials can SIGKILL real processes;
* per-test PostgreSQL / MariaDB databases (as tests/ledger/conftest.py makes them).
"""

from __future__ import annotations

import json
import os
import select
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from dbkit import server_database as _server_database
from sqlalchemy import select as sql_select

from cloudstack_simulator import Simulator
from cloudstack_simulator.api import ApiError, Call
from sidecar.cloudstack.client import CloudStackClient
from sidecar.cloudstack.config import CloudStackConfig
from sidecar.ledger import Ledger
from sidecar.ledger.engine import create_ledger_engine
from sidecar.ledger.schema import ACTIONS
from sidecar.ops.context import Context
from sidecar.support.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

#: Environment variables naming the test database servers (CI sets them).


# -- settings and contexts ----------------------------------------------------------------------


def fast_settings(ledger_url: str, **overrides: Any) -> Settings:
    """Settings for tests: no backoff sleeps, no client-side rate limit; the request timeout
    is generous (a loaded CI machine is slow) unless a test about hangs shortens it."""
    values: dict[str, Any] = {
        "ledger_url": ledger_url,
        "request_timeout": 5.0,
        "max_retries": 3,
        "retry_backoff": 0.0,
        "requests_per_second": 1000.0,
        "max_concurrency": 4,
        "archive_batch_size": 25,
        "cycle_deadline": 60.0,
        "lease_ttl": 600.0,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class NamedContext(Context):
    """A Context whose ledgers carry a chosen holder name.

    Several sidecars in one test process would otherwise share the holder of this process.
    """

    holder: str = "sidecar-a"
    #: Passed to every client it makes (e.g. ``wall_clock``, ``transport``).
    client_options: dict[str, Any] = field(default_factory=dict)

    def client(self, **kwargs: Any) -> CloudStackClient:
        return super().client(**{**self.client_options, **kwargs})

    def ledger(self, *, holder: str | None = None) -> Ledger:
        return super().ledger(holder=holder or self.holder)


def make_context(
    sim: Simulator,
    settings: Settings,
    *,
    holder: str = "sidecar-a",
    key: str | None = None,
    secret: str | None = None,
    **client_options: Any,
) -> NamedContext:
    """A context for a sidecar talking to the serving ``sim`` (main key unless told);
    ``client_options`` go to every client it makes."""
    assert sim.endpoint is not None, "start the simulator first"
    config = CloudStackConfig(
        sim.endpoint, key or sim.key, secret or sim.secret, timeout=settings.request_timeout,
        verify=shared_tls_context(),
    )
    return NamedContext(settings, config, holder=holder, client_options=client_options)


class NoDateTransport(httpx.AsyncHTTPTransport):
    """Drops every answer's ``Date`` header, as upstream's Jetty sends none: clock tests must
    not lean on the simulator's (a proxy in front may add one; that is the client's bonus)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if "Date" in response.headers:
            del response.headers["Date"]
        return response


_TLS: list[ssl.SSLContext] = []


def shared_tls_context() -> ssl.SSLContext:
    """One default (verifying) TLS context for every in-process client: building one loads the
    CA bundle, ~0.15 s per client, and the simulator speaks plain HTTP anyway."""
    if not _TLS:
        _TLS.append(ssl.create_default_context())
    return _TLS[0]


def fast_directory(fallback: Path) -> Path:
    """A fresh directory on tmpfs when there is one (SQLite's fsync per commit is free there),
    else ``fallback``."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="sidecar-rel-", dir=shm))
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def migrated_template(directory: Path) -> Path:
    """A migrated, empty SQLite ledger to copy (a migration costs ~0.3 s)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "template.sqlite3"
    if not path.exists():
        Ledger(sqlite_url(directory, path.name), holder="template").close()
    return path


def history_sim(
    seed: int, alerts: int = 600, *, profile: str = "4.19.2", send_date: bool = False
) -> Simulator:
    """A small simulator with a seeded alert history (about 27 % duplicates); ``send_date``
    adds a ``Date`` header, as a proxy in front would."""
    sim = Simulator(profile=profile, seed=seed, hosts=4, vms_per_host=3, send_date=send_date)
    sim.seed_history(alerts=alerts, duplicate_ratio=0.3)
    return sim


def recent_sim(seed: int, *, hosts: int = 4, vms_per_host: int = 3,
               hours_behind: float = 1.0) -> Simulator:
    """A simulator whose clock is ``hours_behind`` real time (for service cycles, whose alert
    memory is the last 24 h of real time; behind, so that real-clock ``expires`` stay valid)."""
    start = datetime.now(UTC) - timedelta(hours=hours_behind)
    return Simulator(profile="4.19.2", seed=seed, hosts=hosts, vms_per_host=vms_per_host,
                     start=start)


def sqlite_url(directory: Path, name: str = "ledger.sqlite3") -> str:
    return f"sqlite:///{directory / name}"


# -- in-process runs ----------------------------------------------------------------------------


@dataclass
class Attempt:
    """One in-process ``cleanup --apply``: its totals (and why it is incomplete), or the error
    it ended with."""

    totals: dict[str, int] | None
    error: BaseException | None
    problem: str = ""


def cleanup(ctx: Context, *, max_actions: int | None = None) -> Attempt:
    """Run ``cleanup --apply`` in-process; errors are returned, not raised."""
    import asyncio

    from rich.console import Console

    from sidecar.cli.progress import Reporter
    from sidecar.ops.cleanup import run_cleanup

    reporter = Reporter(Console(stderr=True, quiet=True), enabled=False)
    try:
        result = asyncio.run(run_cleanup(
            ctx, apply=True, families=None, since=None, until=None, max_actions=max_actions,
            reporter=reporter,
        ))
    except Exception as exc:  # the caller judges which errors are acceptable
        return Attempt(None, exc)
    return Attempt(dict(result.totals), None, str(getattr(result, "problem", "")))


def check(ctx: Context) -> tuple[bool, str]:
    """Run ``check``'s use case in-process (its CloudStack part): (ok, error or "")."""
    import asyncio

    from sidecar.ops.check import run_check

    result = asyncio.run(run_check(ctx.cloudstack, ctx.settings, **_client_seams(ctx)))
    return result.ok, result.error or ""


def report(ctx: Context) -> tuple[bool, str]:
    """Run ``report``'s use case in-process: (ok, error or "")."""
    import asyncio

    from sidecar.cloudstack.errors import CloudStackError
    from sidecar.ops.report import gather_plan

    try:
        asyncio.run(gather_plan(ctx))
    except CloudStackError as exc:
        return False, str(exc)
    return True, ""


def run_once(ctx: Context) -> tuple[bool, str]:
    """Run one service cycle (``run --once``) in-process: (ok, message)."""
    from sidecar.ops.service.cycle import Service

    service = Service(ctx, dry_run=False)
    try:
        result = service.run_cycle()
    finally:
        service.close()
    return result.ok, result.message


def cleanup_complete(ctx: Context) -> tuple[bool, str]:
    """Run ``cleanup --apply`` in-process: (complete, error or problem)."""
    attempt = cleanup(ctx)
    if attempt.error is not None:
        return False, str(attempt.error)
    return settled(attempt), attempt.problem


def _client_seams(ctx: Context) -> dict[str, Any]:
    """The options a NamedContext gives its clients that ``run_check`` takes too."""
    options = getattr(ctx, "client_options", {})
    return {k: v for k, v in options.items() if k in ("transport", "wall_clock")}


#: Every sidecar command that talks to CloudStack, run in-process: (ok, message).
COMMANDS: dict[str, Callable[[Context], tuple[bool, str]]] = {
    "check": check,
    "report": report,
    "cleanup": cleanup_complete,
    "run --once": run_once,
}


def settled(attempt: Attempt) -> bool:
    """A cleanup that finished with nothing failed or left over."""
    return (
        attempt.totals is not None
        and not attempt.totals.get("failed")
        and not attempt.problem
    )


# -- invariants ---------------------------------------------------------------------------------


@dataclass
class LedgerView:
    """Every action row's state, by alert id, and ``ledger verify``'s findings."""

    states: dict[str, str]
    problems: list[str]

    def having(self, *states: str) -> set[str]:
        return {a for a, s in self.states.items() if s in states}


def read_ledger(url: str) -> LedgerView:
    """Open the ledger read-mostly (as ``ledger verify`` does) and collect action states."""
    with Ledger(url, holder="auditor", migrate=False, create=False) as ledger:
        return LedgerView({r.alert_id: r.state for r in ledger.actions()}, ledger.verify())


def archived_by_us(sim: Simulator) -> set[str]:
    """Alerts the sidecar archived (archive UPDATEs not made by a simulated other admin)."""
    stats = sim.stats
    return {u for u in stats.archive_count if u not in stats.archived_out_of_band}


def check_invariants(sim: Simulator, url: str, *, complete: bool,
                     view: LedgerView | None = None) -> list[str]:
    """Issue 8's invariants; returns one line per violation (empty = all hold).

    Always: nothing archived twice; nothing archived that is not a proven duplicate; every
    alert we archived has a ledger row ``done`` or ``already-gone``; every ``done`` row is
    archived in CloudStack; every ``already-gone`` row is no longer live; every ``failed`` row
    is still live. With ``complete``: no unresolved rows, ``ledger verify`` is clean and no
    proven duplicate is left live. ``view``: the ledger as already read (saves a read).
    """
    problems: list[str] = []
    twice = sim.stats.archived_more_than_once()
    if twice:
        problems.append(f"{len(twice)} alerts archived more than once, e.g. {twice[0]}")
    ours = archived_by_us(sim)
    duplicates = sim.truth.duplicate_ids
    wrong = ours - duplicates
    if wrong:
        problems.append(f"{len(wrong)} archived alerts are not proven duplicates, e.g. "
                        f"{sorted(wrong)[0]}")
    view = view if view is not None else read_ledger(url)
    settled = view.having("done", "already-gone")
    unrecorded = ours - settled - (view.having("sent") if not complete else set())
    if unrecorded:
        problems.append(f"{len(unrecorded)} alerts archived by us have no done/already-gone row, "
                        f"e.g. {sorted(unrecorded)[0]}")
    no_row = ours - set(view.states)
    if no_row:
        problems.append(f"{len(no_row)} alerts archived without any ledger row")
    done_not_archived = {a for a in view.having("done") if not sim.is_archived(a)}
    if done_not_archived:
        problems.append(f"{len(done_not_archived)} 'done' rows whose alert is not archived")
    live = live_ids(sim)
    gone_but_live = view.having("already-gone") & live
    if gone_but_live:
        problems.append(f"{len(gone_but_live)} 'already-gone' rows whose alert is still live")
    failed_not_live = view.having("failed") - live
    if failed_not_live:
        problems.append(f"{len(failed_not_live)} 'failed' rows whose alert is no longer live")
    if complete:
        problems.extend(f"ledger verify: {p}" for p in view.problems)
        left = duplicates & live
        if left:
            problems.append(f"{len(left)} proven duplicates are still live, e.g. {sorted(left)[0]}")
    return problems


def live_ids(sim: Simulator) -> set[str]:
    """Ids of every live (unarchived, undeleted) alert."""
    return {item["id"] for item in sim.alerts_as_api()}


class IntentAuditor:
    """Checks, at the moment each archiveAlerts request reaches the simulator, that every id in
    it has an action row in state ``sent`` (write-ahead: no action without its intent).

    Also lets a test run a callback at a chosen request (``on_request``), e.g. to break the
    ledger or kill the sidecar at that exact moment.
    """

    def __init__(self, sim: Simulator, ledger_url: str) -> None:
        self.sim = sim
        self.engine = create_ledger_engine(ledger_url)
        self.violations: list[str] = []
        self.archive_requests = 0
        self.requests = 0
        self.on_request: Callable[[Call, int], None] | None = None
        self._original = sim.run_hooks
        self._lock = threading.Lock()
        sim.run_hooks = self._hook  # type: ignore[method-assign]

    def close(self) -> None:
        self.sim.run_hooks = self._original  # type: ignore[method-assign]
        self.engine.dispose()

    def _hook(self, call: Call) -> None:
        with self._lock:
            self.requests += 1
            number = self.requests
        if call.command == "archiveAlerts":
            with self._lock:
                self.archive_requests += 1
            ids = [i for i in call.params.get("ids", "").split(",") if i]
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sql_select(ACTIONS.c.alert_id, ACTIONS.c.state).where(
                        ACTIONS.c.alert_id.in_(ids)
                    )
                ).all()
            states = {r[0]: r[1] for r in rows}
            bad = [i for i in ids if states.get(i) != "sent"]
            if bad:
                self.violations.append(
                    f"archiveAlerts request {self.archive_requests}: {len(bad)} of {len(ids)} "
                    f"ids not 'sent' in the ledger, e.g. {bad[0]} ({states.get(bad[0])})"
                )
        if self.on_request is not None:
            self.on_request(call, number)
        self._original(call)


def abort_request(text: str = "aborted by the test harness") -> ApiError:
    """An error that keeps the simulator from running the command (nothing changes)."""
    return ApiError(530, text)


# -- the zygote ----------------------------------------------------------------------------------

_ZYGOTE = r"""
import json, os, sys, traceback
import cs, requests  # cs.read_config imports requests on first use
import sidecar.cli.app
import sidecar.cli.check, sidecar.ops.cleanup, sidecar.ops.report
import sidecar.cli.service, sidecar.ops.service.scheduler, sidecar.cli.ledger
from sidecar.cli.app import main

reply = sys.stdout
while True:
    line = sys.stdin.readline()
    if not line:
        break
    req = json.loads(line)
    if req["op"] == "run":
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                os.chdir(req["cwd"])
                os.environ.clear()
                os.environ.update(req["env"])
                for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
                    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    os.dup2(out, fd)
                    os.close(out)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                try:
                    main(req["argv"])
                    code = 0
                except SystemExit as exc:
                    if exc.code is None:
                        code = 0
                    elif isinstance(exc.code, int):
                        code = exc.code
                    else:
                        print(exc.code, file=sys.stderr)
                        code = 1
            except BaseException:
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        reply.write(json.dumps({"pid": pid}) + "\n")
        reply.flush()
    elif req["op"] == "ping":
        reply.write(json.dumps({"pong": os.getpid()}) + "\n")
        reply.flush()
    elif req["op"] == "wait":
        _, status = os.waitpid(req["pid"], 0)
        reply.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
        reply.flush()
"""


@dataclass
class CliResult:
    """What a ``cloudstack-sidecar`` process did."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Child:
    """A running ``cloudstack-sidecar`` process forked by the zygote."""

    pid: int
    stdout: Path
    stderr: Path
    killed: bool = False

    def kill(self) -> None:
        """SIGKILL it (idempotent; the process may have ended already)."""
        if self.killed:
            return
        self.killed = True
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Zygote:
    """Forks ``cloudstack-sidecar`` processes from one interpreter that imported it once."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self._lock = threading.Lock()
        self._count = 0

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def _ask(self, request: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        if timeout is not None:
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                raise TimeoutError
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the zygote died")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ready(self) -> None:
        """Wait until the zygote has finished its imports."""
        with self._lock:
            self._ask({"op": "ping"}, timeout=120)

    def start(self, argv: list[str], env: Mapping[str, str], workdir: Path) -> Child:
        """Fork ``cloudstack-sidecar argv`` with exactly ``env``, running in ``workdir``."""
        with self._lock:
            self._count += 1
            n = self._count
            out, err = workdir / f"run{n}.out", workdir / f"run{n}.err"
            answer = self._ask({"op": "run", "argv": argv, "env": dict(env), "cwd": str(workdir),
                                "stdout": str(out), "stderr": str(err)})
        return Child(int(answer["pid"]), out, err)

    def wait(self, child: Child, timeout: float = 120.0) -> CliResult:
        """Wait for the child (SIGKILL it after ``timeout`` s: a hung run fails the test)."""
        with self._lock:
            try:
                answer = self._ask({"op": "wait", "pid": child.pid}, timeout=timeout)
            except TimeoutError:
                child.kill()
                assert self.proc.stdout is not None
                answer = json.loads(self.proc.stdout.readline())
                answer["code"] = f"hung for {timeout} s"
        code = answer["code"]
        if not isinstance(code, int):
            raise AssertionError(f"cloudstack-sidecar {code}")
        return CliResult(code, child.stdout.read_text(errors="replace"),
                         child.stderr.read_text(errors="replace"))

    def run(self, argv: list[str], env: Mapping[str, str], workdir: Path,
            timeout: float = 120.0) -> CliResult:
        """Run ``cloudstack-sidecar argv`` to the end."""
        return self.wait(self.start(argv, env, workdir), timeout)


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """A minimal environment for a sidecar process: PATH, an isolated HOME, and ``extra``."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "COLUMNS": "200",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(extra)
    return env


def sim_env(sim: Simulator, home: Path, ledger_url: str, **extra: str) -> dict[str, str]:
    """Environment for a sidecar talking to ``sim`` with its main key, fast settings."""
    assert sim.endpoint is not None
    return base_env(
        home,
        CLOUDSTACK_ENDPOINT=sim.endpoint,
        CLOUDSTACK_KEY=sim.key,
        CLOUDSTACK_SECRET=sim.secret,
        SIDECAR_LEDGER_URL=ledger_url,
        SIDECAR_REQUESTS_PER_SECOND="1000",
        SIDECAR_RETRY_BACKOFF="0",
        SIDECAR_REQUEST_TIMEOUT="10",
        **extra,
    )


def run_module(argv: list[str], env: Mapping[str, str], cwd: Path,
               timeout: float = 120.0) -> CliResult:
    """``python -m sidecar argv`` as a plain subprocess (the real entry point, real imports)."""
    proc = subprocess.run([sys.executable, "-m", "sidecar", *argv], env=dict(env), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it (conftest)."""

    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


# -- database servers ----------------------------------------------------------------------------


def server_database(backend: str) -> AbstractContextManager[str]:
    """A fresh, uniquely named database on the server named by SIDECAR_TEST_*_URL (dropped
    afterwards); the caller skips when the variable is unset."""
    return _server_database(backend, prefix="sidecar_rel")

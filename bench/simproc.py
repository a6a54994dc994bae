"""Shared bench plumbing: the simulator in its own process, bounded child runs, machine facts.

The simulator runs as ``cloudstack-sidecar simulator`` in a process of its own (so it never
shares a GIL or an rusage with what is measured). Its request stats, live counts and ground
truth come from its non-API control routes (``GET /_sim/stats``, ``POST /_sim/scenario``, see
``cloudstack_simulator/server.py``) and from ``--stats-file`` when it stops. Every process started
here is stopped here, by its pid, within a bounded time.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Per-call latency injected into every simulated API call (the issue's 10 ms).
LATENCY_MS = 10.0
#: The alert names the sidecar lists (sidecar.model.constants.DEDUP_ELIGIBLE_NAMES, sorted).
HA_NAMES = (
    "ALERT.COMPUTE.HOST",
    "ALERT.HA.ACTION",
    "ALERT.SERVICE.CONSOLEPROXY",
    "ALERT.SERVICE.DOMAINROUTER",
    "ALERT.SERVICE.SSVM",
    "ALERT.USERVM",
)
#: listAlerts rows per page (``default.page.size``).
PAGE_SIZE = 500
#: ``request.content.size`` default of the management server's Jetty (apache/cloudstack
#: ServerDaemon.java): the largest form body one POST may carry.
MAX_FORM_BYTES = 1_048_576
#: A uuid plus its URL-encoded comma separator (``%2C``) in an ``ids=`` form value.
BYTES_PER_ID = 36 + 3
#: Room left for the other form fields of an archiveAlerts POST (command, apiKey of 86
#: characters, response, signatureVersion, expires, signature).
FORM_OVERHEAD = 512
IDS_PER_POST = (MAX_FORM_BYTES - FORM_OVERHEAD) // BYTES_PER_ID


def sidecar_command() -> list[str]:
    """``cloudstack-sidecar`` of this interpreter's environment (the installed entry point)."""
    script = Path(sys.executable).parent / "cloudstack-sidecar"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sidecar"]


def min_calls(live_by_name: dict[str, int], duplicates: int) -> dict[str, Any]:
    """The fewest API calls any correct tool needs: list every HA alert once, archive by POST.

    ``sum over HA names of ceil(live / 500) + ceil(duplicates / ids per POST)``.
    """
    pages = {n: -(-live_by_name.get(n, 0) // PAGE_SIZE) for n in HA_NAMES}
    posts = -(-duplicates // IDS_PER_POST)
    return {
        "pages": sum(pages.values()),
        "pages_by_name": pages,
        "archive_posts": posts,
        "ids_per_post": IDS_PER_POST,
        "total": sum(pages.values()) + posts,
        "formula": (
            f"sum over {len(HA_NAMES)} HA names of ceil(live/{PAGE_SIZE}) = {sum(pages.values())}"
            f" pages + ceil({duplicates}/{IDS_PER_POST}) = {posts} POSTs, where "
            f"{IDS_PER_POST} = floor(({MAX_FORM_BYTES} - {FORM_OVERHEAD}) / ({BYTES_PER_ID}))"
        ),
    }


@dataclass
class ChildResult:
    """A finished (or killed) child process and its own rusage."""

    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    peak_rss_mb: float
    timed_out: bool
    stdout: str
    stderr: str

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def to_json(self) -> dict[str, Any]:
        return {
            "returncode": self.returncode,
            "timed_out": self.timed_out,
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "cpu_user_s": round(self.user_s, 3),
            "cpu_sys_s": round(self.sys_s, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }


def run_child(
    cmd: list[str], *, env: dict[str, str], cwd: Path, timeout: float, name: str
) -> ChildResult:
    """Run ``cmd`` to completion (killed after ``timeout`` s); rusage from ``os.wait4``."""
    out_path, err_path = cwd / f"{name}.stdout", cwd / f"{name}.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err)
        deadline = started + timeout
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                timed_out = True
                os.kill(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from reaping again
    return ChildResult(
        returncode=proc.returncode,
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,  # Linux: KiB
        timed_out=timed_out,
        stdout=out_path.read_text(encoding="utf-8", errors="replace"),
        stderr=err_path.read_text(encoding="utf-8", errors="replace"),
    )


@dataclass
class SimProcess:
    """``cloudstack-sidecar simulator`` in its own process, with 10 ms latency per call."""

    workdir: Path
    alerts: int = 0
    seed: int = 7
    hosts: int | None = None
    vms_per_host: int | None = None
    duplicate_ratio: float = 0.3
    latency_ms: float = LATENCY_MS
    start_timeout: float = 300.0
    #: More ``simulator`` flags, e.g. ``["--failures-per-hour", "4"]`` for a busy cloud.
    extra: list[str] = field(default_factory=list)
    ini: Path = field(init=False)
    stats_file: Path = field(init=False)
    endpoint: str = field(init=False, default="")
    history: dict[str, Any] = field(init=False, default_factory=dict)
    start_s: float = field(init=False, default=0.0)
    _proc: subprocess.Popen[bytes] | None = field(init=False, default=None)
    _log: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ini = self.workdir / "cloudstack.ini"
        self.stats_file = self.workdir / "sim-stats.json"

    def __enter__(self) -> SimProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start, seed, and wait until the endpoint is written."""
        # --send-date: the steady bench runs the server clock ahead of ours, and the sidecar
        # reads the server's clock (the one it plans on) from Date, as a proxy in front adds.
        cmd = [*sidecar_command(), "simulator", "--port", "0", "--seed", str(self.seed),
               "--latency-ms", f"{self.latency_ms:g}", "--write-ini", str(self.ini),
               "--stats-file", str(self.stats_file), "--send-date"]  # fmt: skip
        if self.alerts:
            cmd += ["--alerts", str(self.alerts), "--duplicate-ratio", f"{self.duplicate_ratio:g}"]
        if self.hosts is not None:
            cmd += ["--hosts", str(self.hosts)]
        if self.vms_per_host is not None:
            cmd += ["--vms-per-host", str(self.vms_per_host)]
        cmd += self.extra
        log_path = self.workdir / "simulator.log"
        self._log = log_path.open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSTACK_", "SIDECAR_"))}
        started = time.perf_counter()
        self._proc = subprocess.Popen(
            cmd, cwd=self.workdir, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        deadline = started + self.start_timeout
        text = ""
        while " simulator (" not in text:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the simulator exited early:\n{log_path.read_text()[-2000:]}")
            if time.perf_counter() > deadline:
                self.stop()
                raise RuntimeError(f"the simulator did not start in {self.start_timeout:g} s")
            time.sleep(0.1)
            text = log_path.read_text(encoding="utf-8", errors="replace")
        self.start_s = time.perf_counter() - started
        self.endpoint = re.search(r" on (http://\S+)", text).group(1)  # type: ignore[union-attr]
        seeded = re.search(
            r"history: (\d+) alerts \((\d+) live\), (\d+) duplicates in (\d+) incidents, "
            r"seeded in ([\d.]+) s",
            text,
        )
        if seeded:
            keys = ("alerts", "live", "duplicates", "incidents")
            self.history = {k: int(seeded.group(i + 1)) for i, k in enumerate(keys)}
            self.history["seed_s"] = float(seeded.group(5))
        busy = re.search(
            r"busy cloud: (\d+) h at [\d.]+ failures/h on \d+ hosts, (\d+) genuine second "
            r"restarts, (\d+) VMs expunged",
            text,
        )
        if busy:
            keys = ("span_hours", "second_restarts", "expunged")
            self.history.update({k: int(busy.group(i + 1)) for i, k in enumerate(keys)})

    @property
    def base(self) -> str:
        return self.endpoint.removesuffix("/client/api")

    def _control(self, method: str, path: str, timeout: float = 120.0) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.base}{path}", method=method, data=b"" if method
                                         == "POST" else None)
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            data: dict[str, Any] = json.loads(answer.read())
        return data

    def stats(self, *, ids: bool = False) -> dict[str, Any]:
        """``GET /_sim/stats``: calls, maxima, bytes, live counts and the truth score."""
        return self._control("GET", "/_sim/stats" + ("?ids=1" if ids else ""))

    def reset(self) -> None:
        """Forget the request stats measured so far."""
        self._control("POST", "/_sim/stats/reset")

    def scenario(self, name: str, advance: float) -> dict[str, Any]:
        """Start a scenario and advance the virtual clock by ``advance`` seconds."""
        return self._control("POST", f"/_sim/scenario?name={name}&advance={advance:g}")

    def stop(self) -> dict[str, Any] | None:
        """SIGTERM the simulator (by pid, SIGKILL after 30 s); returns its stats file if any."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.stats_file.exists():
            data: dict[str, Any] = json.loads(self.stats_file.read_text())
            return data
        return None


def client_env(sim: SimProcess, ledger: Path, **settings: str) -> dict[str, str]:
    """Environment for a sidecar child: the simulator's ini, a temp SQLite ledger, settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSTACK_", "SIDECAR_"))}
    env["CLOUDSTACK_CONFIG"] = str(sim.ini)
    env["SIDECAR_LEDGER_URL"] = f"sqlite:///{ledger}"
    env["HOME"] = str(sim.workdir)  # no ~/.cloudstack.ini or user config leaks in
    env["NO_COLOR"] = "1"
    for name, value in settings.items():
        env[f"SIDECAR_{name.upper()}"] = value
    return env


def run_cleanup(
    sim: SimProcess, workdir: Path, *, rps: float | None, timeout: float
) -> ChildResult:
    """``cleanup --apply --no-limit --format json`` against ``sim``, a SQLite ledger in workdir."""
    settings = {"requests_per_second": f"{rps:g}"} if rps is not None else {}
    return run_child(
        [*sidecar_command(), "cleanup", "--apply", "--no-limit", "--format", "json"],
        env=client_env(sim, workdir / "ledger.sqlite3", **settings),
        cwd=workdir,
        timeout=timeout,
        name="cleanup",
    )


def cleanup_outcome(child: ChildResult) -> dict[str, Any]:
    """A cleanup's totals, plan summary and timings (else its output's tail), its stderr's tail."""
    try:
        out = json.loads(child.stdout)
        result = {"totals": out["totals"], "plan_summary": out["plan"]["summary"],
                  "timings": out.get("timings", {})}  # fmt: skip
    except (ValueError, KeyError):
        result = {"stdout_tail": child.stdout[-2000:]}
    return {**result, "stderr_tail": child.stderr[-1500:]}


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, memory, Python, OS and date of this run."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git": _git_head(),
    }


def _git_head() -> str:
    git = shutil.which("git")
    if git is None:
        return "unknown"
    try:
        out = subprocess.run(
            [git, "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def emit(result: dict[str, Any]) -> None:
    """Print the one JSON line run_all.py reads (last line of stdout)."""
    print(json.dumps(result), flush=True)

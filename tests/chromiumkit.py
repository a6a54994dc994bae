"""Headless Chromium for the HTML report: screenshot and DOM of a local file, no network."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

#: The page's size in the screenshot: wide enough for the tables, long enough for a timeline.
WINDOW = "1280,2000"


def chromium() -> str | None:
    """The Debian ``chromium`` binary, if installed."""
    return shutil.which("chromium")


def _run(page: Path, *flags: str, profile: Path) -> subprocess.CompletedProcess[str]:
    binary = chromium()
    assert binary is not None
    # A private profile per call: no shared state, no first-run prompts, nothing fetched.
    return subprocess.run(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-extensions", "--disable-background-networking",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *flags,
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )


def screenshot(page: Path, png: Path, profile: Path) -> subprocess.CompletedProcess[str]:
    """Take a ``WINDOW``-sized screenshot of ``page`` into ``png``."""
    return _run(page, f"--screenshot={png}", f"--window-size={WINDOW}", profile=profile)


def dump_dom(page: Path, profile: Path) -> subprocess.CompletedProcess[str]:
    """The DOM after loading ``page`` (stdout) and Chromium's log (stderr)."""
    return _run(page, "--dump-dom", profile=profile)


def seeded_report(path: Path, ledger: Path) -> tuple[dict[str, int], Path]:
    """Write the HTML report of the seeded simulator's plan to ``path``; return its totals."""
    import asyncio

    from wiringkit import context, served, sim_with_history

    from sidecar.cli.html import plan_html
    from sidecar.ops.report import gather_report

    sim = sim_with_history(1500)
    with served(sim) as endpoint:
        plan, times = asyncio.run(gather_report(context(sim, endpoint, f"sqlite:///{ledger}")))
    path.write_text(plan_html(plan, times), encoding="utf-8")
    return plan.summary.to_json_counts(), path

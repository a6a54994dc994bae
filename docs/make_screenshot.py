"""Save the HTML report's screenshot for the README: the seeded plan the Chromium test renders.

Run from the repository: ``.venv/bin/python docs/make_screenshot.py``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test's own helpers: the same plan, the same call

from chromiumkit import screenshot, seeded_report  # noqa: E402


def main() -> int:
    """Write docs/report-screenshot.png; 1 if Chromium failed."""
    target = ROOT / "docs" / "report-screenshot.png"
    with tempfile.TemporaryDirectory(prefix="report-shot-") as tmp:
        _, page = seeded_report(Path(tmp) / "report.html", Path(tmp) / "ledger.sqlite3")
        done = screenshot(page, target, Path(tmp) / "profile")
    print(f"{target}: {target.stat().st_size if target.exists() else 0} bytes")
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())

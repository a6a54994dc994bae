"""``demo``: the whole story on the embedded simulator, with no configuration and no network."""

from __future__ import annotations

import re

import pytest
from wiringkit import run_cli


def test_the_demo_archives_exactly_the_injected_duplicates_and_shows_each_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = run_cli(["demo"], {}, monkeypatch)  # no credentials, no settings, no ledger URL
    assert result.code == 0, result.out + result.err
    out = result.out
    steps = ["cloudstack-sidecar demo", "Alert list before", "report (dry run)",
             "HA incidents of the last", "cleanup --apply", "Ledger actions",
             "Alert list after", "result"]
    positions = [out.index(step) for step in steps]
    assert positions == sorted(positions)
    assert re.search(r"http://127\.0\.0\.1:\d+/client/api", out)
    match = re.search(r"(\d+) injected duplicates, (\d+) archived, 0 wrongly archived, 0 missed;"
                      r"\s+ledger\s+verify: ok", out)
    assert match and match.group(1) == match.group(2) and int(match.group(1)) > 0
    assert "Traceback" not in result.err

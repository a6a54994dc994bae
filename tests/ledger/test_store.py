"""The Ledger facade: one object over runs, observations, decisions, lease, actions and audit."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest
from ledgerkit import T0, FakeClock, make_alert, make_host
from sqlalchemy import Table

from sidecar.ledger import ActionRecord, AlertSighting, DecisionRecord, LeaseInfo, Ledger, RunRecord
from sidecar.ledger.schema import ACTIONS, ALERT_OBSERVATIONS, DECISIONS, LEASES, RUNS


def test_datetimes_read_back_aware_utc_with_microseconds(ledger: Ledger, clock: FakeClock):
    # A non-UTC aware input must come back as the same instant in UTC.
    india = timezone(timedelta(hours=5, minutes=30))
    at = datetime(2026, 3, 1, 17, 30, 0, 654321, tzinfo=UTC).astimezone(india)
    ledger.observe_hosts([make_host("h1", "Up")], at)
    ledger.observe_alerts([make_alert("a1", sent=T0)], {}, at)
    ledger.start_run("report", "dry-run")

    (change,) = ledger.host_history()
    (sighting,) = ledger.alert_sightings()
    (run,) = ledger.runs()
    for value in (change.at, sighting.first_seen, sighting.sent, run.started_at):
        assert value is not None
        assert value.tzinfo is not None
        assert value.utcoffset() == timedelta(0)
    assert change.at == at
    assert change.at.microsecond == 654321
    assert sighting.sent == T0.replace(microsecond=0)  # CloudStack dates have whole seconds
    assert run.started_at == clock()


@pytest.mark.parametrize(
    ("record", "table", "not_shown"),
    [
        (RunRecord, RUNS, set()),
        (AlertSighting, ALERT_OBSERVATIONS, set()),
        (DecisionRecord, DECISIONS, {"id"}),
        (ActionRecord, ACTIONS, {"id", "kind"}),
        (LeaseInfo, LEASES, set()),
    ],
)
def test_each_record_holds_the_columns_of_its_table(
    record: type, table: Table, not_shown: set[str]
) -> None:
    # Records are read from rows by field name: a column added to the schema shows here.
    assert {f.name for f in dataclasses.fields(record)} == set(table.c.keys()) - not_shown

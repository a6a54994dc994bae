"""Seeded history: the requested size and duplicate ratio, incident spacing, and its truth."""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest

from cloudstack_simulator import Simulator
from cloudstack_simulator.seed import SeedReport
from sidecar.model.constants import DEDUP_ELIGIBLE_NAMES, SUPPRESSED_NAMES


@pytest.fixture(scope="module")
def history() -> tuple[Simulator, SeedReport]:
    sim = Simulator(profile="4.19.2", seed=21, hosts=4, vms_per_host=4)
    report = sim.seed_history(alerts=6000, duplicate_ratio=0.3, months=2)
    return sim, report


def rows_by_uuid(sim: Simulator) -> dict[str, tuple[str, str, int, bool]]:
    table = sim.state.alerts
    return {
        table.uuid[i]: (table.name[i], table.subject[i], table.last_sent[i], table.flags[i] == 1)
        for i in range(len(table))
    }


def test_history_has_the_requested_size_and_duplicate_ratio(
    history: tuple[Simulator, SeedReport],
) -> None:
    sim, report = history
    assert abs(report.alerts - 6000) <= 60
    assert len(sim.state.alerts) == report.alerts
    assert report.duplicate_ratio == pytest.approx(0.3, abs=0.02)
    assert report.unknown > 0 and report.suppressed > 0 and report.archived > 0


def test_history_ends_before_now_and_spans_the_months(
    history: tuple[Simulator, SeedReport],
) -> None:
    sim, _ = history
    sent = sim.state.alerts.last_sent
    assert max(sent) <= sim.clock.time() - 3600
    assert min(sent) >= sim.clock.time() - 2 * 30 * 86400


def test_copies_are_seconds_apart_and_incidents_of_a_host_hours_apart(
    history: tuple[Simulator, SeedReport],
) -> None:
    sim, _ = history
    rows = rows_by_uuid(sim)
    starts: dict[str, list[float]] = defaultdict(list)
    for failure in sim.truth.failures:
        starts[failure.host].append(failure.started)
        by_subject: dict[str, list[int]] = defaultdict(list)
        for uuid in failure.alert_ids:
            by_subject[rows[uuid][1]].append(rows[uuid][2])
        for sent in by_subject.values():
            assert len(set(sent)) == len(sent), "a copy shares its canonical's second"
            assert max(sent) - min(sent) < 120
    for times in starts.values():
        times.sort()
        assert all(b - a > 3600 for a, b in itertools.pairwise(times))


def test_truth_duplicates_are_live_copies_of_a_canonical_in_the_same_failure(
    history: tuple[Simulator, SeedReport],
) -> None:
    sim, _report = history
    rows = rows_by_uuid(sim)
    truth = sim.truth
    assert len(truth.duplicate_ids) > 1000
    for failure in truth.failures:
        canonical_subjects = {rows[u][1]: rows[u][2] for u in failure.canonical_ids}
        for uuid in failure.duplicate_ids:
            name, subject, sent, archived = rows[uuid]
            assert subject in canonical_subjects and sent > canonical_subjects[subject]
            assert name in DEDUP_ELIGIBLE_NAMES
            if uuid in truth.duplicate_ids:
                assert not archived
    assert not truth.duplicate_ids & truth.canonical_ids
    assert truth.duplicate_ids | truth.canonical_ids <= set(rows)


def test_rounds_and_double_restarts_are_recorded_per_failure(
    history: tuple[Simulator, SeedReport],
) -> None:
    sim, _ = history
    crashes = [f for f in sim.truth.failures if f.kind == "history-crash"]
    assert any(f.duplicate_rounds > 0 for f in crashes)
    assert any(f.vms_restarted_more_than_once for f in crashes)


def test_unknown_formats_include_ha_family_names_and_repeats(
    history: tuple[Simulator, SeedReport],
) -> None:
    sim, _ = history
    rows = rows_by_uuid(sim)
    unknown = [rows[u] for u in sim.truth.unknown_ids]
    assert {r[0] for r in unknown} & DEDUP_ELIGIBLE_NAMES
    subjects = [r[1] for r in unknown]
    assert len(set(subjects)) < len(subjects)  # some come in identical bursts
    assert not sim.truth.unknown_ids & (sim.truth.duplicate_ids | sim.truth.canonical_ids)


def test_suppressed_types_keep_at_most_one_live_row_per_place(
    history: tuple[Simulator, SeedReport],
) -> None:
    sim, _ = history
    rows = rows_by_uuid(sim)
    live: dict[tuple[str, str], int] = defaultdict(int)
    for uuid in sim.truth.suppressed_ids:
        name, subject, _, archived = rows[uuid]
        assert name in SUPPRESSED_NAMES
        if not archived:
            live[(name, subject)] += 1
    assert live and set(live.values()) == {1}


def test_archived_history_is_invisible_and_not_in_the_duplicate_truth(
    history: tuple[Simulator, SeedReport],
) -> None:
    sim, _ = history
    listed = {a["id"] for a in sim.alerts_as_api()}
    assert sim.truth.archived_ids and not sim.truth.archived_ids & listed
    assert sim.truth.duplicate_ids <= listed and sim.truth.canonical_ids <= listed


def test_history_of_large_clouds_uses_decommissioned_hosts() -> None:
    sim = Simulator(seed=2, hosts=1, vms_per_host=2)
    report = sim.seed_history(alerts=4000, months=1)
    assert report.historic_hosts > 0
    names = {h["name"] for h in sim.hosts_as_api()}
    assert not any(n.startswith("kvm-old-") for n in names)
    assert any(f.host.startswith("kvm-old-") for f in sim.truth.failures)


def test_the_same_seed_seeds_the_same_history() -> None:
    def digest(seed: int) -> list[tuple[str, str, str]]:
        sim = Simulator(seed=seed, hosts=2, vms_per_host=2)
        sim.seed_history(alerts=500)
        return [(a["id"], a["description"], a["sent"]) for a in sim.alerts_as_api()]

    assert digest(4) == digest(4)
    assert digest(4) != digest(5)


def test_new_form_profiles_seed_new_form_subjects() -> None:
    sim = Simulator(profile="4.20.1", seed=3, hosts=2, vms_per_host=2)
    sim.seed_history(alerts=3000)
    subjects = {a["description"] for a in sim.alerts_as_api()}
    assert any(s.startswith('Host in ALERT state, Host {"id":') for s in subjects)
    assert not any(s.startswith("Host in ALERT state, name: ") for s in subjects)

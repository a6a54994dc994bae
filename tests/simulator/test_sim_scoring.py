"""The truth's families and genuine second restarts, and the scorer on crafted archive sets."""

from __future__ import annotations

import pytest

from cloudstack_simulator.scoring import FamilyScore, score
from cloudstack_simulator.truth import FailureTruth, Truth, family_of

HOST_IS_DOWN = "Host is down, name: kvm-0{n} (id:{n}), availability zone: zone-a, pod: pod-1"
STARTING = "HA starting VM: web-001 (i-2-5-VM)"


def failure(truth: Truth, host: int) -> FailureTruth:
    return truth.new_failure(
        kind="host-crash", host=f"kvm-0{host}", host_id=f"uuid-{host}", host_db_id=host,
        zone="zone-a", started=0.0, profile="4.19.2",
    )  # fmt: skip


@pytest.fixture
def crafted() -> Truth:
    """Host 1 fails: three rounds, web-001 restarted twice; host 2 (web-001's new host) fails."""
    truth = Truth()
    first = failure(truth, 1)
    for uuid, when in (("round-1", 100), ("round-2", 103), ("round-3", 106)):
        truth.record(first, uuid, HOST_IS_DOWN.format(n=1), when)
    for uuid, when in (("start-1", 150), ("start-2", 160)):
        truth.record(first, uuid, STARTING, when)
        truth.note_restart(first, "web-001", uuid, when)
    second = failure(truth, 2)
    truth.record(second, "round-b", HOST_IS_DOWN.format(n=2), 400)
    truth.record(second, "start-b", STARTING, 460)
    truth.note_restart(second, "web-001", "start-b", 460)
    truth.unknown_ids.add("unknown-1")
    return truth


def test_subjects_are_filed_under_their_family_by_prefix() -> None:
    assert family_of(HOST_IS_DOWN.format(n=1)) == "host_is_down"
    assert family_of("Host down, 7") == "host_down"
    assert family_of(STARTING) == "ha_starting_vm"
    assert family_of("HA Fencing of host id=3, in dc id=1 performed") == "host_ha_action"
    assert family_of("Management server node 10.1.1.4 is up") == "other"


def test_rounds_first_round_and_a_restart_on_a_failed_new_host_are_recorded(
    crafted: Truth,
) -> None:
    first, second = crafted.failures
    assert (first.rounds, first.duplicate_rounds, first.first_round) == (3, 2, 100)
    assert first.vms_restarted_more_than_once == ["web-001"]
    assert second.second_restarts == ["web-001"]
    (again,) = crafted.second_restarts
    assert (again.first_alert, again.alert, again.at - again.first_at) == (
        "start-1",
        "start-b",
        310,
    )
    assert "start-b" in crafted.canonical_ids and "start-b" not in crafted.duplicate_ids
    facts = crafted.ha_facts()
    assert (facts.failures, facts.rounds, facts.duplicate_rounds) == (2, 4, 2)
    assert (facts.vms_restarted_more_than_once, facts.genuine_second_restarts) == (1, 1)


def test_a_later_failure_of_the_same_host_is_no_second_restart() -> None:
    truth = Truth()
    for when in (100, 9000):
        again = failure(truth, 1)
        truth.record(again, f"start-{when}", STARTING, when)
        truth.note_restart(again, "web-001", f"start-{when}", when)
    assert truth.second_restarts == []


def test_the_score_counts_recall_and_precision_per_family_and_overall(crafted: Truth) -> None:
    graded = score(crafted, {"round-2", "round-1", "start-2", "unknown-1"})
    assert graded.families["host_is_down"] == FamilyScore(duplicates=2, archived=2, correct=1)
    assert graded.families["host_is_down"].recall == 0.5
    assert graded.families["host_is_down"].precision == 0.5
    assert graded.families["ha_starting_vm"] == FamilyScore(1, 1, 1)
    assert graded.families["unknown"] == FamilyScore(0, 1, 0)
    assert (graded.families["unknown"].recall, graded.families["unknown"].precision) == (1.0, 0.0)
    assert graded.overall == FamilyScore(3, 4, 2)
    assert graded.overall.recall == pytest.approx(2 / 3)
    assert graded.wrong_ids == ["round-1", "unknown-1"]
    assert graded.second_restarts_archived == []


def test_archiving_nothing_misses_everything_yet_is_never_wrong(crafted: Truth) -> None:
    graded = score(crafted, set())
    assert graded.overall.recall == 0.0 and graded.overall.precision == 1.0
    assert graded.overall.missed == 3 and graded.overall.wrong == 0


def test_an_archived_genuine_second_restart_is_listed(crafted: Truth) -> None:
    graded = score(crafted, {"round-2", "round-3", "start-2", "start-b", "not-an-alert"})
    assert graded.second_restarts_archived == ["start-b"]
    assert graded.families["untracked"] == FamilyScore(0, 1, 0)
    assert graded.overall == FamilyScore(3, 5, 3)
    assert graded.to_json()["genuine_second_restarts_archived"] == 1
    assert graded.to_json()["families"]["ha_starting_vm"]["precision"] == 0.5

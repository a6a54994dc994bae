"""Subject parsing: every family in both release forms, tolerance, and near-misses (unknown)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from paths import FIXTURES

from sidecar.reconcile import PARSED_FAMILIES, UNKNOWN, fingerprint_of, parse_subject
from sidecar.reconcile.fingerprint import normalise, render_object
from sidecar.reconcile.policy import FAMILIES

CORPUS_PATH = FIXTURES / "subjects.json"
CORPUS: dict[str, Any] = json.loads(CORPUS_PATH.read_text(encoding="utf-8"))
SUBJECTS = CORPUS["subjects"]
NEAR_MISSES = CORPUS["near_misses"]


def _id(entry: dict[str, Any]) -> str:
    return f"{entry['release']}:{entry['family']}:{entry['subject'][:50]}"


@pytest.mark.parametrize("entry", SUBJECTS, ids=_id)
def test_each_corpus_subject_parses_into_its_family_and_identity(entry: dict[str, Any]) -> None:
    subject = parse_subject(entry["subject"])
    assert subject.family == entry["family"]
    assert subject.identity() == entry["identity"]


@pytest.mark.parametrize("entry", SUBJECTS, ids=_id)
def test_each_corpus_subject_comes_with_a_name_its_family_accepts(entry: dict[str, Any]) -> None:
    assert entry["name"] in FAMILIES[entry["family"]].alert_names


@pytest.mark.parametrize("entry", NEAR_MISSES, ids=lambda e: e["why"])
def test_near_misses_are_unknown(entry: dict[str, Any]) -> None:
    assert parse_subject(entry["subject"]).family == UNKNOWN


def test_the_corpus_covers_every_family_in_both_release_forms() -> None:
    covered = {(e["family"], e["release"]) for e in SUBJECTS}
    missing = {(f, r) for f in PARSED_FAMILIES for r in ("4.19", "4.20.1")} - covered
    assert not missing


def test_every_corpus_entry_is_marked_constructed_with_a_source() -> None:
    assert CORPUS["_constructed"]
    for entry in SUBJECTS:
        assert entry["constructed"] is True
        assert "cloudstack.md §6" in entry["source"]


def test_hosts_whose_names_share_a_prefix_are_different_objects() -> None:
    one = parse_subject("Host is down, name: kvm-1 (id:1), availability zone: z, pod: p")
    ten = parse_subject("Host is down, name: kvm-10 (id:10), availability zone: z, pod: p")
    assert one.object != ten.object
    assert (one.host, ten.host) == ("kvm-1", "kvm-10")


def test_the_same_host_name_in_two_zones_is_two_objects() -> None:
    a = parse_subject("Host is down, name: kvm-1 (id:1), availability zone: zone-a, pod: p")
    b = parse_subject("Host is down, name: kvm-1 (id:1), availability zone: zone-b, pod: p")
    assert a.object != b.object


def test_the_same_vm_name_with_two_instance_names_is_two_objects() -> None:
    a = parse_subject("HA starting VM: web01 (i-2-14-VM)")
    b = parse_subject("HA starting VM: web01 (i-3-20-VM)")
    assert a.object != b.object


def test_whitespace_variants_of_one_subject_have_one_identity() -> None:
    plain = parse_subject("Host is down, name: kvm1 (id:1), availability zone: zone 1, pod: Pod1")
    spaced = parse_subject(
        " Host is down,  name: kvm1\t(id:1), availability zone: zone  1, pod: Pod1 "
    )
    assert spaced.object == plain.object


def test_no_pod_and_a_missing_pod_are_the_same_host() -> None:
    no_pod = parse_subject("Host in ALERT state, name: k (id:3), availability zone: z, pod: NO POD")
    missing = parse_subject("Host in ALERT state, name: k (id:3), availability zone: z")
    assert no_pod.object == missing.object


def test_new_form_host_json_keys_may_come_in_any_order() -> None:
    uuid = "d9960e4d-5da9-47be-af88-5cd19473b844"
    sorted_keys = parse_subject(
        f'Host in ALERT state, Host {{"id":12,"name":"kvm-02","type":"Routing","uuid":"{uuid}"}}, '
        "availability zone: z, pod: p"
    )
    shuffled = parse_subject(
        f'Host in ALERT state, Host {{"uuid":"{uuid}", "name":"kvm-02", "id":12, '
        '"type":"Routing"}, availability zone: z, pod: p'
    )
    assert shuffled.family == "host_alert_state"
    assert shuffled.object == sorted_keys.object


def test_a_host_name_with_braces_and_quotes_parses_from_json() -> None:
    uuid = "d9960e4d-5da9-47be-af88-5cd19473b844"
    subject = parse_subject(
        f'Unable to restart vm1 which was running on host Host {{"id":7,"name":"a}}\\"b",'
        f'"type":"Routing","uuid":"{uuid}"}}, availability zone: z, pod: p'
    )
    assert subject.family == "unable_to_restart"
    assert subject.host == 'a}"b'


def test_values_with_spaces_or_quotes_render_quoted_so_objects_stay_distinct() -> None:
    spaced = render_object({"zone": "a b", "pod": "c"})
    joined = render_object({"zone": "a", "pod": "b pod=c"})
    assert spaced == 'zone="a b" pod=c'
    assert spaced != joined


def test_old_and_new_forms_of_one_host_are_separate_fingerprints() -> None:
    # Never guessed equal: the old form has no uuid, the new one does.
    old = parse_subject("Host disconnected, name: kvm1 (id:1), availability zone: z, pod: p")
    new = parse_subject(
        "Host disconnected, name: kvm1 (id:8e8e68e7-19ea-4a78-bbdb-6e79d27729c9), "
        "availability zone: z, pod: p"
    )
    assert (old.form, new.form) == ("old", "new")
    assert old.object != new.object


def test_fingerprint_is_name_family_and_object() -> None:
    assert fingerprint_of("ALERT.USERVM", "HA starting VM: web01 (i-2-14-VM)") == (
        "ALERT.USERVM",
        "ha_starting_vm",
        "vm=web01 instance=i-2-14-VM",
    )


def test_normalise_collapses_every_kind_of_whitespace() -> None:
    assert normalise("  a\t\tb\n c\u00a0 d ") == "a b c d"


def test_parse_subject_results_are_immutable_and_hashable() -> None:
    subject = parse_subject("Host down, 12")
    assert hash(subject) == hash(parse_subject("Host down,  12"))
    with pytest.raises(AttributeError):
        subject.family = "x"  # type: ignore[misc]

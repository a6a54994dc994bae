"""listAlerts / archiveAlerts / deleteAlerts semantics, and the ordered indexes behind them."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from simkit import body, invoke

from cloudstack_simulator import Simulator
from cloudstack_simulator.ordered import (
    ListView,
    SortedKeys,
    alert_key,
    key_row,
    key_sent,
    page_with_unstable_ties,
)

MISSING = "0b0a7a3e-5d2b-4f3c-9a51-6f1c2d3e4f50"


def alerts(
    sim: Simulator, *subjects: str, name: str = "ALERT.USERVM", step: float = 10
) -> list[str]:
    """Emit alerts ``step`` virtual seconds apart; returns their uuids (oldest first)."""
    out = []
    for subject in subjects:
        out.append(sim.emit_alert(name, subject))
        sim.clock.advance(step)
    return out


def listed(sim: Simulator, **params: object) -> list[str]:
    status, payload = invoke(sim, "listAlerts", **params)
    assert status == 200, payload
    return [a["id"] for a in body(payload).get("alert", [])]


def error_text(payload: dict[str, object]) -> str:
    return body(payload)["errortext"]


# --- listAlerts -------------------------------------------------------------------------------


def test_an_empty_list_is_an_empty_object(sim: Simulator) -> None:
    assert invoke(sim, "listAlerts") == (200, {"listalertsresponse": {}})


def test_a_page_past_the_end_has_the_count_but_no_list(sim: Simulator) -> None:
    alerts(sim, "a", "b", "c")
    assert invoke(sim, "listAlerts", page=3, pagesize=2) == (
        200,
        {"listalertsresponse": {"count": 3}},
    )


def test_alerts_are_sorted_by_last_sent_descending(sim: Simulator) -> None:
    ids = alerts(sim, "a", "b", "c")
    assert listed(sim) == list(reversed(ids))
    assert listed(sim, page=1, pagesize=2) == [ids[2], ids[1]]
    assert listed(sim, page=2, pagesize=2) == [ids[0]]


def test_archived_alerts_are_hidden(sim: Simulator) -> None:
    ids = alerts(sim, "a", "b")
    sim.archive_out_of_band([ids[0]])
    assert listed(sim) == [ids[1]]
    assert len(sim.alerts_as_api(include_archived=True)) == 2


@pytest.mark.parametrize(
    ("params", "status", "text"),
    [
        ({"pagesize": 10}, 431, '"page" parameter is required when "pagesize" is specified'),
        ({"page": 1}, 431, '"pagesize" parameter is required when "page" is specified'),
        (
            {"page": 1, "pagesize": 501},
            431,
            "Page size can't exceed max allowed page size value: 500",
        ),
        (
            {"page": 1, "pagesize": -1},
            431,
            "Can't specify page parameter when pagesize is -1 (Unlimited)",
        ),
        (
            {"page": 1, "pagesize": "ten"},
            431,
            "Unable to execute API command listalerts due to invalid value ten for parameter "
            "pagesize",
        ),
        # Parameters are parsed before page and pagesize are paired.
        (
            {"pagesize": "ten"},
            431,
            "Unable to execute API command listalerts due to invalid value ten for parameter "
            "pagesize",
        ),
        # A blank integer is skipped by the parser; the pairing check's Long.valueOf refuses it.
        ({"page": 1, "pagesize": ""}, 431, 'For input string: ""'),
        ({"page": 1, "pagesize": " "}, 431, 'For input string: " "'),
        (
            {"page": "one", "pagesize": 10},
            431,
            "Unable to execute API command listalerts due to invalid value one for parameter page",
        ),
    ],
)
def test_paging_misuse_gets_upstreams_errors(
    sim: Simulator, params: dict[str, object], status: int, text: str
) -> None:
    got, payload = invoke(sim, "listAlerts", **params)
    assert (got, error_text(payload)) == (status, text)


def test_a_blank_page_is_the_first_page(sim: Simulator) -> None:
    ids = alerts(sim, "a", "b", "c")
    assert listed(sim, page="", pagesize=2) == [ids[2], ids[1]]


def test_page_size_limit_errors_carry_the_invalid_parameter_code(sim: Simulator) -> None:
    _, payload = invoke(sim, "listAlerts", page=1, pagesize=600)
    assert body(payload)["cserrorcode"] == 4350


def test_without_paging_the_first_500_are_listed_and_minus_one_lists_all(sim: Simulator) -> None:
    for i in range(501):
        sim.emit_alert("ALERT.MANAGEMENT", f"node {i}")
    assert len(listed(sim)) == 500
    assert len(listed(sim, pagesize=-1)) == 501
    assert body(invoke(sim, "listAlerts")[1])["count"] == 501


def test_page_zero_or_negative_is_the_first_page(sim: Simulator) -> None:
    ids = alerts(sim, "a", "b", "c")
    assert listed(sim, page=0, pagesize=2) == listed(sim, page=-3, pagesize=2) == [ids[2], ids[1]]


def test_name_matches_exactly_but_case_insensitively(sim: Simulator) -> None:
    user = alerts(sim, "HA starting VM: a (i-1)")
    alerts(sim, "Host down, 1", name="ALERT.COMPUTE.HOST")
    assert listed(sim, name="ALERT.USERVM") == user
    assert listed(sim, name="alert.uservm") == user
    assert listed(sim, name="ALERT.USER") == []


def test_type_compares_like_mysql_against_the_number(sim: Simulator) -> None:
    alerts(sim, "HA starting VM: a (i-1)")
    host = alerts(sim, "Host down, 1", name="ALERT.COMPUTE.HOST")
    memory = alerts(sim, "System Alert: Low Available Memory", name="ALERT.MEMORY")
    assert listed(sim, type=7) == host
    assert listed(sim, type="7", name="ALERT.COMPUTE.HOST") == host
    assert listed(sim, type="abc") == memory  # MySQL reads 'abc' as 0 (ALERT.MEMORY)


def test_keyword_is_a_case_insensitive_like_with_wildcards(sim: Simulator) -> None:
    ids = alerts(sim, "HA starting VM: web-01 (i-2-1-VM)", "Host is down, name: kvm-01", "HA_x")
    assert listed(sim, keyword="ha starting") == [ids[0]]
    assert set(listed(sim, keyword="HA_")) == {ids[0], ids[2]}  # "_" is any one character
    assert listed(sim, keyword="down%kvm") == [ids[1]]
    assert listed(sim, keyword="HA\\_") == [ids[2]]


def test_keyword_and_name_ignore_accents_like_the_utf8_collation(sim: Simulator) -> None:
    ids = alerts(sim, "Host is down, name: kvm-01", "Nœud hôte Ünreachable", "HA starting VM: a")
    assert listed(sim, keyword="Hóst is") == [ids[0]]
    assert listed(sim, keyword="HÖST%KVM") == [ids[0]]  # the wildcard path folds too
    assert listed(sim, keyword="hote unreachable") == [ids[1]]
    assert listed(sim, keyword="h_te") == [ids[1]]  # "ô" is one character
    assert listed(sim, name="Alért.ÜserVM") == list(reversed(ids))
    assert listed(sim, keyword="hôst", name="alert.uservm") == [ids[0]]


def test_id_filter_takes_a_uuid_or_an_internal_id(sim: Simulator) -> None:
    ids = alerts(sim, "a", "b")
    assert listed(sim, id=ids[0]) == [ids[0]]
    assert listed(sim, id=ids[0].upper()) == [ids[0]]
    assert listed(sim, id=2) == [ids[1]]  # pre-3.x parameter: numeric ids pass as db ids
    assert listed(sim, id=999) == []


def test_an_unknown_alert_uuid_gets_431_naming_it(sim: Simulator) -> None:
    status, payload = invoke(sim, "listAlerts", id=MISSING)
    assert status == 431
    assert error_text(payload) == (
        f"Unable to execute API command listalerts due to invalid value. Invalid parameter id "
        f"value={MISSING} due to incorrect long value format, or entity does not exist or due "
        "to incorrect parameter annotation for the field in api cmd class."
    )


def test_an_overlong_keyword_gets_431(sim: Simulator) -> None:
    status, payload = invoke(sim, "listAlerts", keyword="x" * 256)
    assert status == 431
    assert "Value greater than max allowed length 255 for param: keyword" in error_text(payload)


# --- archiveAlerts / deleteAlerts ------------------------------------------------------------


def test_archiving_a_batch_archives_it_and_answers_success(sim: Simulator) -> None:
    ids = alerts(sim, "a", "b", "c")
    status, payload = invoke(sim, "archiveAlerts", ids=f"{ids[0]},{ids[1]}")
    assert (status, payload) == (200, {"archivealertsresponse": {"success": True}})
    assert listed(sim) == [ids[2]]
    assert sim.stats.archive_count[ids[0]] == 1


@pytest.mark.parametrize("case", ["already-archived", "twice", "type-mismatch"])
def test_a_batch_that_fails_the_pre_check_gets_530_and_changes_nothing(
    sim: Simulator, case: str
) -> None:
    ids = alerts(sim, "a", "b")
    params: dict[str, object] = {"ids": f"{ids[0]},{ids[1]}"}
    if case == "already-archived":
        sim.archive_out_of_band([ids[1]])
    elif case == "twice":
        params = {"ids": f"{ids[0]},{ids[0]}"}
    else:
        params["type"] = 7
    status, payload = invoke(sim, "archiveAlerts", **params)
    assert status == 530
    assert body(payload)["cserrorcode"] == 9999
    assert (
        error_text(payload) == "Unable to archive Alerts, one or more parameters has invalid values"
    )
    assert ids[0] in listed(sim)


def test_a_batch_with_a_missing_uuid_gets_431_naming_it_and_changes_nothing(sim: Simulator) -> None:
    ids = alerts(sim, "a")
    status, payload = invoke(sim, "archiveAlerts", ids=f"{ids[0]},{MISSING}")
    assert status == 431
    assert f"Invalid parameter ids value={MISSING} due to incorrect long value format" in (
        error_text(payload)
    )
    assert listed(sim) == ids


def test_archive_needs_ids_type_or_enddate(sim: Simulator) -> None:
    status, payload = invoke(sim, "archiveAlerts")
    assert (status, error_text(payload)) == (
        431,
        "either ids, type, startdate or enddate must be specified",
    )
    # A lone startdate is checked after "nothing given", as upstream does.
    status, payload = invoke(sim, "archiveAlerts", startdate="2025-01-01")
    assert error_text(payload) == "either ids, type, startdate or enddate must be specified"
    status, payload = invoke(sim, "archiveAlerts", type=8, startdate="2025-01-01")
    assert (status, error_text(payload)) == (
        431,
        "enddate must be specified with startdate parameter",
    )


def test_archive_by_type_archives_every_live_alert_of_it(sim: Simulator) -> None:
    users = alerts(sim, "a", "b")
    host = alerts(sim, "Host down, 1", name="ALERT.COMPUTE.HOST")
    assert invoke(sim, "archiveAlerts", type=8)[0] == 200
    assert listed(sim) == host
    assert all(sim.is_archived(u) for u in users)


def test_archive_dates_filter_created_in_the_server_zone(sim: Simulator) -> None:
    # Virtual clock starts 2025-06-02T08:00:00Z = 13:30 in +0530.
    early = alerts(sim, "early", step=3600)  # 13:30 IST
    late = alerts(sim, "late")  # 14:30 IST
    status, _ = invoke(
        sim, "archiveAlerts", startdate="2025-06-02 13:00:00", enddate="2025-06-02 14:00:00"
    )
    assert status == 200
    assert listed(sim) == late
    assert sim.is_archived(early[0])


def test_an_end_day_without_time_covers_the_whole_day(sim: Simulator) -> None:
    ids = alerts(sim, "a", "b")
    assert invoke(sim, "archiveAlerts", enddate="2025-06-02")[0] == 200
    assert all(sim.is_archived(u) for u in ids)


def test_an_unparseable_date_gets_431(sim: Simulator) -> None:
    status, payload = invoke(sim, "archiveAlerts", enddate="02/06/2025")
    assert status == 431
    assert error_text(payload) == (
        "Unable to parse date 02/06/2025 for command archivealerts, please pass dates in the "
        "format mentioned in the api documentation"
    )


def test_deleting_removes_rows_so_a_later_archive_gets_431(sim: Simulator) -> None:
    ids = alerts(sim, "a", "b")
    assert invoke(sim, "deleteAlerts", ids=ids[0]) == (
        200,
        {"deletealertsresponse": {"success": True}},
    )
    assert listed(sim) == [ids[1]]
    assert invoke(sim, "archiveAlerts", ids=ids[0])[0] == 431
    status, payload = invoke(sim, "deleteAlerts", ids=f"{ids[1]},{ids[1]}")
    assert (status, error_text(payload)) == (
        530,
        "Unable to delete Alerts, one or more parameters has invalid values",
    )


def test_delete_cannot_remove_archived_alerts(sim: Simulator) -> None:
    ids = alerts(sim, "a")
    sim.archive_out_of_band(ids)
    assert invoke(sim, "deleteAlerts", ids=ids[0])[0] == 530


# --- ties and indexes ----------------------------------------------------------------------


def test_rows_tied_on_last_sent_can_swap_across_pages_with_unstable_ties() -> None:
    sim = Simulator(hosts=1, vms_per_host=1, tie_order="shuffle")
    for i in range(40):
        sim.emit_alert("ALERT.MANAGEMENT", f"tied {i}")  # all in the same second
    pages = [tuple(listed(sim, page=1, pagesize=20)) for _ in range(6)]
    assert len(set(pages)) > 1


def test_stable_ties_list_equal_timestamps_by_id_descending(sim: Simulator) -> None:
    ids = [sim.emit_alert("ALERT.MANAGEMENT", f"tied {i}") for i in range(5)]
    assert listed(sim) == list(reversed(ids))


def test_unstable_ties_only_reorder_the_groups_on_the_page_edges() -> None:
    keys = sorted(alert_key(sent, row) for row, sent in enumerate([5, 5, 5, 4, 4, 3, 3, 3], 1))
    view = ListView(keys)
    for salt in range(20):
        page = page_with_unstable_ties(view, 2, 6, salt)
        assert len(page) == 4
        # Positions 2..5 always hold the rest of the sent=5 group, the sent=4 group and one
        # of the sent=3 group, in last_sent DESC order.
        assert [(-k) >> 32 for k in page] == [5, 4, 4, 3]
        assert {key_row(k) for k in page[1:3]} == {4, 5}


def tied_view(*sents: int) -> ListView:
    """Rows 1, 2, … with these ``last_sent`` values, in ``last_sent DESC, id DESC`` order."""
    return ListView(sorted(alert_key(sent, row) for row, sent in enumerate(sents, 1)))


def test_a_page_of_exactly_two_tie_groups_keeps_them_in_last_sent_order() -> None:
    view = tied_view(5, 5, 4, 4, 4)
    for salt in range(20):
        assert [key_sent(k) for k in page_with_unstable_ties(view, 0, 4, salt)] == [5, 5, 4, 4]
        assert [key_sent(k) for k in page_with_unstable_ties(view, 1, 3, salt)] == [5, 4]


def test_two_rows_of_unique_last_sent_keep_their_order_on_a_page_of_two() -> None:
    view = tied_view(9, 8, 7)
    for salt in range(20):
        assert [key_row(k) for k in page_with_unstable_ties(view, 0, 2, salt)] == [1, 2]


def test_a_unique_row_next_to_a_cut_tie_group_is_never_pushed_off_its_page() -> None:
    view = tied_view(9, 5, 5, 5)
    for salt in range(20):
        page = page_with_unstable_ties(view, 0, 2, salt)
        assert key_row(page[0]) == 1 and key_sent(page[1]) == 5


@settings(max_examples=200, deadline=None)
@given(
    sents=st.lists(st.integers(0, 5), min_size=1, max_size=40),
    size=st.integers(1, 6),
    salt=st.integers(0, 2**16),
)
def test_unstable_ties_never_move_a_row_past_one_with_another_last_sent(
    sents: list[int], size: int, salt: int
) -> None:
    view = tied_view(*sents)
    for start in range(0, len(view), size):
        page = page_with_unstable_ties(view, start, start + size, salt + start)
        expected = view.keys[start : start + size]
        # The same last_sent at every position: each page is newest first, a row with a unique
        # last_sent is exactly where it belongs, and only rows of equal last_sent trade places.
        assert [key_sent(k) for k in page] == [key_sent(k) for k in expected]
        assert len(set(page)) == len(page)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 2000)), max_size=400))
def test_sorted_keys_behave_like_a_sorted_list(ops: list[tuple[bool, int]]) -> None:
    keys = SortedKeys()
    keys.LOAD = 4  # small blocks exercise splits and merges
    model: list[int] = []
    for add, value in ops:
        if add or value not in model:
            keys.add(value)
            model.append(value)
            model.sort()
        else:
            assert keys.discard(value)
            model.remove(value)
        assert len(keys) == len(model)
    assert list(keys) == model
    rng = random.Random(len(model))
    for _ in range(5):
        a, b = sorted(rng.randrange(len(model) + 2) for _ in range(2))
        assert keys.slice(a, b) == model[a:b]
        probe = rng.randrange(2002)
        import bisect

        assert keys.bisect_left(probe) == bisect.bisect_left(model, probe)
        assert keys.bisect_right(probe) == bisect.bisect_right(model, probe)

"""The leader lease and its fencing token: several sidecars, one ledger, exactly-once actions."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from ledgerkit import (
    T0,
    FakeClock,
    FakeCloud,
    altered,
    apply_batch,
    dead_holder,
    make_alert,
    make_group,
    make_plan,
)

from sidecar.ledger import Ledger, StaleLeaseError
from sidecar.ledger.holder import holder_for
from sidecar.ledger.lease import claim_lease, default_holder


def test_the_lease_is_exclusive_until_it_expires(open_ledger: Callable[..., Ledger], clock):
    a = open_ledger("sidecar-a")
    b = open_ledger("sidecar-b")

    assert a.acquire_lease(60) == 1
    assert b.acquire_lease(60) is None
    clock.advance(59)
    assert b.acquire_lease(60) is None
    assert a.acquire_lease(60) == 1  # renewal keeps the token and extends the lease
    clock.advance(59)
    assert b.acquire_lease(60) is None
    clock.advance(1)  # exactly at expiry the lease is no longer valid
    assert b.acquire_lease(60) == 2  # takeover increments the fencing token
    assert a.acquire_lease(60) is None

    lease = b.lease()
    assert lease is not None
    assert (lease.holder, lease.token) == ("sidecar-b", 2)
    assert lease.expires_at == clock() + timedelta(seconds=60)


def test_a_released_lease_is_taken_over_at_once(open_ledger: Callable[..., Ledger]):
    a = open_ledger("sidecar-a")
    b = open_ledger("sidecar-b")
    assert a.acquire_lease(600) == 1

    b.release_lease()  # not b's lease: no effect
    assert b.acquire_lease(600) is None
    a.release_lease()

    assert b.acquire_lease(600) == 2


def test_a_stale_leader_cannot_act_and_writes_nothing(open_ledger: Callable[..., Ledger], clock):
    a = open_ledger("sidecar-a")
    b = open_ledger("sidecar-b")
    group = make_group("g1", "c0", ["d1", "d2"])
    run = a.start_run("service", "apply")
    a.record_plan(run, make_plan([group]))
    token_a = a.acquire_lease(60)
    assert token_a is not None
    a.intend_archive(run, token_a, [(group, make_alert("d1"))])
    a.mark(token_a, ["d1"], "sent")
    # a pauses (GC, VM freeze) past its lease; b takes over.
    clock.advance(61)
    token_b = b.acquire_lease(60)
    assert token_b == token_a + 1
    before = b.actions()

    with pytest.raises(StaleLeaseError, match="stale"):
        a.mark(token_a, ["d1"], "done")
    with pytest.raises(StaleLeaseError, match="stale"):
        a.intend_archive(run, token_a, [(group, make_alert("d2"))])
    # Even re-acquiring does not help while b holds the lease.
    assert a.acquire_lease(60) is None

    assert b.actions() == before
    b.mark(token_b, ["d1"], "done")
    assert b.actions()[0].token == token_b


def test_an_expired_lease_refuses_actions_even_with_the_current_token(
    open_ledger: Callable[..., Ledger], clock: FakeClock
):
    a = open_ledger("sidecar-a")
    group = make_group("g1", "c0", ["d1"])
    run = a.start_run("service", "apply")
    token = a.acquire_lease(30)
    assert token is not None
    clock.advance(30)

    with pytest.raises(StaleLeaseError, match="expired"):
        a.intend_archive(run, token, [(group, make_alert("d1"))])
    assert a.actions() == []
    # Nobody took over: renewing gives the same token back and acting works again.
    assert a.acquire_lease(30) == token
    assert len(a.intend_archive(run, token, [(group, make_alert("d1"))])) == 1


def test_acting_without_ever_taking_the_lease_is_refused(sqlite_ledger: Ledger):
    group = make_group("g1", "c0", ["d1"])
    run = sqlite_ledger.start_run("service", "apply")

    with pytest.raises(StaleLeaseError, match="no lease"):
        sqlite_ledger.intend_archive(run, 1, [(group, make_alert("d1"))])


def _lead(
    ledger: Ledger, token: int, clock: FakeClock, cloud: FakeCloud, group, rng, pause: bool
) -> None:
    """One leader cycle: resolve earlier intents, then archive a batch write-ahead."""
    run = ledger.start_run("service", "apply")
    for record in ledger.unresolved_actions():
        if not cloud.is_live(record.alert_id):
            state = "done" if record.state == "sent" else "already-gone"
            ledger.mark(token, [record.alert_id], state)
    live = [d for d in group.duplicates if cloud.is_live(d)]
    batch = [(group, make_alert(d)) for d in live[: rng.randint(1, 8)]]
    ids = [r.alert_id for r in ledger.intend_archive(run, token, batch)]
    if ids:
        ledger.mark(token, ids, "sent")
    if pause:
        clock.advance(31)  # paused past the lease between "sent" and the POST
    done, gone = cloud.archive(ids)
    if done:
        ledger.mark(token, done, "done")
    if gone:
        ledger.mark(token, gone, "already-gone")
    ledger.finish_run(run, "ok", {"archived": len(done)})


def _sidecar_loop(
    ledger: Ledger,
    index: int,
    cycles: int,
    barrier: threading.Barrier,
    clock: FakeClock,
    cloud: FakeCloud,
    group,
    stats: dict[str, int],
    errors: list[BaseException],
) -> None:
    """One sidecar: every cycle contend for the lease; the leader acts, the others observe
    (and try again, so a takeover can happen while a paused leader is still acting).

    A leader that stepped down sits the next cycle out without contending: otherwise whether
    anyone else ever leads depends on which thread the barrier wakes first.
    """
    rng = random.Random(index)
    led = 0
    sit_out = False
    try:
        for _ in range(cycles):
            barrier.wait(timeout=60)
            live = [make_alert(d) for d in group.duplicates[:20] if cloud.is_live(d)]
            if sit_out:
                sit_out = False
                ledger.observe_alerts(live, {}, clock())
                continue
            token = ledger.acquire_lease(30)
            if token is None:
                ledger.observe_alerts(live, {}, clock())
                token = ledger.acquire_lease(30)
                if token is None:
                    continue
            led += 1
            try:
                _lead(ledger, token, clock, cloud, group, rng, pause=led % 4 == 0)
            except StaleLeaseError:
                stats["stale"] = stats.get("stale", 0) + 1
                continue
            if led % 3 == 0:
                ledger.release_lease()  # step down: someone else leads next cycle
                sit_out = True
            clock.advance(rng.uniform(0, 5))
    except BaseException as exc:  # surfaced by the test thread
        errors.append(exc)
        barrier.abort()


@pytest.mark.parametrize("sidecars", [2, 3])
def test_several_sidecars_sharing_one_ledger_archive_each_alert_exactly_once(
    open_ledger: Callable[..., Ledger], clock: FakeClock, sidecars: int
):
    group = make_group("g1", "c0", [f"d{i:03d}" for i in range(150)])
    cloud = FakeCloud(["c0", *group.duplicates])
    ledgers = [open_ledger(f"sidecar-{i}") for i in range(sidecars)]
    ledgers[0].record_plan(ledgers[0].start_run("service", "apply"), make_plan([group]))
    barrier = threading.Barrier(sidecars)
    stats: dict[str, int] = {}
    errors: list[BaseException] = []
    threads = [
        threading.Thread(
            target=_sidecar_loop,
            args=(ledger, i, 30, barrier, clock, cloud, group, stats, errors),
        )
        for i, ledger in enumerate(ledgers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a sidecar hung"
    assert not errors, errors
    # A final leader finishes whatever is left (as the next cycle of any sidecar would).
    final = ledgers[0]
    clock.advance(31)
    token = final.acquire_lease(30)
    assert token is not None
    run = final.start_run("service", "apply")
    for record in final.unresolved_actions():
        if not cloud.is_live(record.alert_id):
            final.mark(
                token, [record.alert_id], "done" if record.state == "sent" else "already-gone"
            )
    apply_batch(
        final, run, token, cloud, [(group, make_alert(d)) for d in sorted(cloud.live - {"c0"})]
    )

    assert cloud.archived == dict.fromkeys(group.duplicates, 1)  # each archived exactly once
    assert cloud.live == {"c0"}
    actions = final.actions()
    assert len(actions) == len(group.duplicates)  # one action row per alert
    assert {a.state for a in actions} <= {"done", "already-gone"}
    assert final.verify() == []
    assert stats.get("stale", 0) >= 1  # paused leaders were refused
    lease = final.lease()
    assert lease is not None and lease.token > 1  # leadership changed hands


def test_lease_times_are_stored_to_the_microsecond(open_ledger: Callable[..., Ledger]):
    a = open_ledger("sidecar-a")
    now = T0.replace(microsecond=987654)

    a.acquire_lease(10.5, now=now)

    lease = a.lease()
    assert lease is not None
    assert lease.renewed_at == now
    assert (lease.expires_at - now).total_seconds() == 10.5


def test_a_ledger_names_itself_by_the_default_holder(sqlite_url: str):
    with Ledger(sqlite_url) as ledger:
        assert ledger.holder == default_holder()


def test_claim_lease_takes_over_at_once_from_a_dead_process_of_this_machine(
    open_ledger: Callable[..., Ledger],
):
    dead = open_ledger(dead_holder())
    assert dead.acquire_lease(600) == 1
    me = open_ledger("sidecar-a")

    assert claim_lease(me, 600) == 2  # not after the TTL: now, with a new fencing token

    lease = me.lease()
    assert lease is not None and lease.holder == "sidecar-a"
    assert me.holder == "sidecar-a"
    assert claim_lease(me, 600) == 2  # a renewal from now on


def test_claim_lease_waits_for_a_live_holder_or_one_it_cannot_prove_dead(
    open_ledger: Callable[..., Ledger], clock: FakeClock
):
    me = open_ledger("sidecar-a")
    gone = dead_holder()
    for holder in (
        holder_for(os.getppid()),  # alive
        altered(gone, "boot"),  # a gone pid, but of another boot: cannot tell from here
        gone.partition("@")[0],  # the old host:pid form: no boot, no start time
        "elsewhere:1",
    ):
        clock.advance(601)  # the previous holder's lease expired: this one takes it
        assert open_ledger(holder).acquire_lease(600) is not None

        assert claim_lease(me, 600) is None

        lease = me.lease()
        assert lease is not None and lease.holder == holder


def test_releasing_as_a_named_holder_releases_only_that_holders_lease(
    open_ledger: Callable[..., Ledger],
):
    a = open_ledger("sidecar-a")
    b = open_ledger("sidecar-b")
    assert a.acquire_lease(600) == 1

    b.release_lease(holder="sidecar-c")  # not the holder: no effect
    assert b.acquire_lease(600) is None
    b.release_lease(holder="sidecar-a")

    assert b.acquire_lease(600) == 2
    assert (a.holder, b.holder) == ("sidecar-a", "sidecar-b")

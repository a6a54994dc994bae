"""Carry out a Plan's archive actions through the client, write-ahead in the ledger.

Order per batch: intent rows (``intended``) -> ``sent`` -> archiveAlerts POST -> ``done`` /
``already-gone`` / ``failed``. A crash between any two steps leaves rows that
``Applier.resolve`` settles by asking CloudStack, so nothing is repeated or forgotten.

Ledger writes run in a worker thread, and the intents of the next batch are written while
the current batch's POST is in flight: the event loop never waits on the database, and the
database never waits on the network. Each batch's own order above is unchanged.

That worker is one thread for all ledger calls of a pass: SQLite keeps a connection's page
cache only while no other connection writes, so one connection (LIFO pool) stays warm. The
rows of the next intents are built in another thread (``Ledger.prepare_intents``) while
the ledger thread writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sidecar.cloudstack.client import CloudStackClient
from sidecar.cloudstack.errors import (
    CloudStackError,
    MalformedAnswerError,
    ParameterError,
    ServerError,
)
from sidecar.ledger import Ledger, StaleLeaseError
from sidecar.model.constants import HTTP_INTERNAL_ERROR
from sidecar.model.plan import Plan
from sidecar.model.resources import Alert

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Intents written per ledger transaction (whole batches; one such chunk is written ahead).
INTENTS_PER_TRANSACTION = 5_000


@dataclass
class ApplyOutcome:
    """What one apply pass did, by alert id."""

    archived: list[str] = field(default_factory=list)
    already_gone: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    #: Sent, but no answer could be read (transport error, 5xx other than 530, an answer cut
    #: short): left ``sent`` for ``Applier.resolve`` to settle from the next listing.
    unsettled: list[str] = field(default_factory=list)
    capped: int = 0
    api_calls: int = 0
    lost_lease: bool = False
    stopped: bool = False
    error: str = ""

    @property
    def settled(self) -> int:
        """Actions that reached a final state in this pass."""
        return len(self.archived) + len(self.already_gone) + len(self.failed)

    def counts(self) -> dict[str, int]:
        """Integer totals for run records and logs."""
        return {
            "archived": len(self.archived),
            "already_gone": len(self.already_gone),
            "failed": len(self.failed),
            "unsettled": len(self.unsettled),
            "capped": self.capped,
            "archive_calls": self.api_calls,
        }


@dataclass
class ResolveOutcome:
    """How the intents left by an earlier run were settled."""

    done: list[str] = field(default_factory=list)
    already_gone: list[str] = field(default_factory=list)
    still_pending: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)


async def alert_is_live(client: CloudStackClient, alert_id: str) -> bool:
    """True when ``listAlerts id=`` still lists the alert (archived and deleted ones are not)."""
    try:
        items = await client.list_alerts(id=alert_id)
    except ParameterError:
        return False  # 431: the uuid no longer exists (deleted or purged)
    return any(a.id == alert_id for a in items)


def ids_named_in(text: str, ids: Sequence[str]) -> list[str]:
    """The ids of a batch that an error text names (a 431 names the first unknown uuid)."""
    return [i for i in ids if i and i in text]


class Applier:
    """Archives the duplicates of a plan in batches, recording each step in the ledger."""

    def __init__(
        self,
        client: CloudStackClient,
        ledger: Ledger,
        *,
        run_id: int,
        token: int,
        batch_size: int,
        renew_lease: Callable[[], int | None] | None = None,
        on_progress: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        record_groups: bool = False,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.run_id = run_id
        self.token = token
        self.batch_size = batch_size
        self.renew_lease = renew_lease
        self.on_progress = on_progress
        self.should_stop = should_stop
        #: Record each batch's merge groups with its intents (the caller skipped them in
        #: ``record_plan``): a cleanup's 100,000s of groups are then written batch by batch.
        self.record_groups = record_groups
        #: Seconds spent in ledger calls (in the worker thread, overlapping the network).
        self.ledger_seconds = 0.0
        self._ledger_thread: ThreadPoolExecutor | None = None

    async def _db(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a ledger call in the ledger thread (it may take a while; the loop goes on)."""

        def timed() -> T:
            start = time.perf_counter()
            try:
                return work(*args, **kwargs)
            finally:
                self.ledger_seconds += time.perf_counter() - start

        if self._ledger_thread is None:
            return await asyncio.to_thread(timed)
        return await asyncio.get_running_loop().run_in_executor(self._ledger_thread, timed)

    async def _in_ledger_thread(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` with all its ledger calls in one worker thread, then end that thread."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger") as thread:
            self._ledger_thread = thread
            try:
                return await work()
            finally:
                self._ledger_thread = None

    async def resolve(
        self, plan: Plan, live_ids: Container[str] | None = None
    ) -> ResolveOutcome:
        """Settle intents of earlier runs: ask CloudStack whether each alert is still live.

        ``live_ids`` is a trustworthy full listing (no drift while paging); without it each
        unresolved alert is looked up on its own.
        """
        return await self._in_ledger_thread(lambda: self._resolve(plan, live_ids))

    async def _resolve(self, plan: Plan, live_ids: Container[str] | None) -> ResolveOutcome:
        outcome = ResolveOutcome()
        planned = set(plan.archive)
        for record in await self._db(self.ledger.unresolved_actions):
            alert_id = record.alert_id
            if record.state == "intended" and alert_id in planned:
                # Never sent, and still a duplicate of a listed (so lately live) alert: the
                # apply pass below sends it; a 431/530 there tells if it went meanwhile.
                outcome.still_pending.append(alert_id)
                continue
            if live_ids is not None and alert_id in live_ids:
                live = True
            else:
                live = await alert_is_live(self.client, alert_id)
            if not live:
                # ``sent`` means our POST may have landed: it did, since the alert is gone.
                # ``intended`` means we never sent it: someone else archived or deleted it.
                if record.state == "sent":
                    outcome.done.append(alert_id)
                else:
                    outcome.already_gone.append(alert_id)
            elif alert_id in planned:
                outcome.still_pending.append(alert_id)  # the apply pass below sends it
            else:
                # Live but no longer a proven duplicate (its group changed): never act on it.
                outcome.superseded.append(alert_id)
        # One write per outcome: a run stopped early may have left many intents.
        for ids, state, error in (
            (outcome.done, "done", ""),
            (outcome.already_gone, "already-gone", ""),
            (outcome.superseded, "failed", "superseded: not in the current plan"),
        ):
            if ids:
                await self._db(self.ledger.mark, self.token, ids, state, error=error)
        return outcome

    async def apply(
        self, plan: Plan, alerts: Mapping[str, Alert], *, max_actions: int | None = None
    ) -> ApplyOutcome:
        """Archive ``plan.archive`` (at most ``max_actions``), batch by batch, write-ahead."""
        return await self._in_ledger_thread(lambda: self._apply(plan, alerts, max_actions))

    async def _apply(
        self, plan: Plan, alerts: Mapping[str, Alert], max_actions: int | None
    ) -> ApplyOutcome:
        outcome = ApplyOutcome()
        groups = plan.group_of()
        # Group by group (each group's duplicates in one or two batches, so its decision is
        # written once or twice), in plan order.
        ids = [d for g in plan.groups for d in g.duplicates if d in alerts]
        if max_actions is not None and len(ids) > max_actions:
            outcome.capped = len(ids) - max_actions
            ids = ids[:max_actions]
        batches = [ids[start : start + self.batch_size]
                   for start in range(0, len(ids), self.batch_size)]
        # Intents go in a few batches per transaction: fewer commits, and each commit's
        # pages (random-uuid index leaves, WAL writes, checkpoints) serve more rows.
        per_chunk = max(1, INTENTS_PER_TRANSACTION // max(1, self.batch_size))

        async def prepare(first: int) -> set[str]:
            chunk = [i for batch in batches[first : first + per_chunk] for i in batch]
            items = [(groups[i], alerts[i]) for i in chunk]
            # Rows built in a thread of their own, while the ledger thread writes others.
            prepared = await asyncio.to_thread(
                self.ledger.prepare_intents,
                self.run_id, self.token, items, record_groups=self.record_groups,
            )  # fmt: skip
            return set(await self._db(self.ledger.write_intents, prepared))

        ahead: asyncio.Task[set[str]] | None = None
        ready: set[str] = set()
        try:
            for index, batch in enumerate(batches):
                if self.should_stop is not None and self.should_stop():
                    outcome.stopped = True  # asked to stop (SIGTERM): the rest waits
                    break
                if self.renew_lease is not None:
                    token = await self._db(self.renew_lease)
                    if token is None or token != self.token:
                        log.warning("lease lost; stopping before the next archive batch")
                        outcome.lost_lease = True
                        break
                todo: list[str] = []
                try:
                    if index % per_chunk == 0:
                        task = ahead or asyncio.create_task(prepare(index))
                        ahead = None
                        ready = await task
                        if index + per_chunk < len(batches):
                            # The next intents go on record while these batches are sent.
                            ahead = asyncio.create_task(prepare(index + per_chunk))
                    todo = [i for i in batch if i in ready]
                    if todo:
                        await self._db(self.ledger.mark, self.token, todo, "sent")
                        await self._archive(todo, outcome)
                except StaleLeaseError:
                    log.warning("lease fencing token is stale; another sidecar leads now")
                    outcome.lost_lease = True
                    break
                except CloudStackError as exc:
                    # No answer we can interpret (reset, timeout, 503, a cut answer, ...): the
                    # POST may or may not have landed. The rows stay ``sent``; the next
                    # listing settles them.
                    settled = {*outcome.archived, *outcome.already_gone, *outcome.failed}
                    outcome.unsettled.extend(i for i in todo if i not in settled)
                    log.warning("archiveAlerts failed, %d alerts left to settle: %s",
                                len(outcome.unsettled), exc)
                    outcome.error = str(exc)
                    if not isinstance(exc, MalformedAnswerError):
                        break  # further batches would most likely fail the same way: stop
                    # The server answered, only the answer broke on its way: go on.
                if self.on_progress is not None:
                    self.on_progress(len(batch))
        finally:
            if ahead is not None:
                # Intents written ahead for batches we will not send stay ``intended``: the
                # next run sends them if they are still duplicates. Wait for the write, so
                # that nothing runs after we return.
                try:
                    await ahead
                except Exception as exc:  # already stopping for another reason: say, go on
                    log.warning("writing the next batch's intents failed: %s", exc)
        return outcome

    async def _archive(self, ids: list[str], outcome: ApplyOutcome) -> None:
        """POST one batch; on 431/530 find the gone ids and archive the rest."""
        outcome.api_calls += 1
        try:
            await self.client.archive_alerts(ids)
        except ParameterError as exc:
            # 431 names one uuid that does not exist any more (deleted or purged meanwhile).
            named = ids_named_in(exc.errortext, ids)
            if not named:
                error = f"{exc.errorcode}: {exc.errortext}"
                await self._db(self.ledger.mark, self.token, ids, "failed", error=error)
                outcome.failed.extend(ids)
                return
            await self._db(self.ledger.mark, self.token, named, "already-gone")
            outcome.already_gone.extend(named)
            gone = set(named)
            rest = [i for i in ids if i not in gone]
            if rest:
                await self._archive(rest, outcome)
            return
        except ServerError as exc:
            if exc.errorcode != HTTP_INTERNAL_ERROR:
                raise  # 503 and friends: outcome unknown; rows stay ``sent`` for resolve()
            # 530 voids the whole batch (upstream pre-checks every id): some id is already
            # archived. Bisect to find it instead of listing every id.
            if len(ids) == 1:
                if await alert_is_live(self.client, ids[0]):
                    await self._db(
                        self.ledger.mark, self.token, ids, "failed", error=f"530: {exc.errortext}"
                    )
                    outcome.failed.extend(ids)
                else:
                    await self._db(self.ledger.mark, self.token, ids, "already-gone")
                    outcome.already_gone.extend(ids)
                return
            middle = len(ids) // 2
            await self._archive(ids[:middle], outcome)
            await self._archive(ids[middle:], outcome)
            return
        await self._db(self.ledger.mark, self.token, ids, "done")
        outcome.archived.extend(ids)

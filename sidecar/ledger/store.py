"""The Ledger: how an operator audits what the sidecar did, and how nothing is lost.

A facade over one ``Database``: each concern is a part of its own (``runs``, ``observations``,
``placements``, ``decisions``, ``lease``, ``actions``, ``audit``, ``migrate``) and each Ledger
method is the same-named work of one part, so that callers keep one object and one set of
method names.
Every acting write is fenced by the lease's token (see ``sidecar.ledger.lease``); the
write-ahead protocol is described in ``sidecar.ledger.actions``. Bulk work uses SQLAlchemy Core
with executemany and ``IN`` lists of at most 500 ids.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from sqlalchemy.engine import URL, Engine

from sidecar.ledger import migrate as revisions
from sidecar.ledger.actions import Actions
from sidecar.ledger.audit import Audit
from sidecar.ledger.database import Database, utcnow
from sidecar.ledger.decisions import Decisions
from sidecar.ledger.engine import parse_url
from sidecar.ledger.hacancels import HaCancels
from sidecar.ledger.holder import default_holder
from sidecar.ledger.lease import Leases
from sidecar.ledger.observations import Observations
from sidecar.ledger.placements import Placements
from sidecar.ledger.runs import Runs
from sidecar.model.defaults import LEDGER_STATEMENT_TIMEOUT

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")


class _Delegated(Generic[S, P, R]):
    """A Ledger method that is ``method`` of the part in attribute ``part``.

    Written once, in the part: its signature and docstring are the Ledger method's (for mypy
    too), instead of a second copy of each in the facade.
    """

    def __init__(self, part: str, method: Callable[Concatenate[S, P], R]) -> None:
        self.part = part
        self.method = method
        functools.update_wrapper(self, method)

    def __set_name__(self, owner: type, name: str) -> None:
        self.__name__ = name
        self.__qualname__ = f"{owner.__qualname__}.{name}"

    @overload
    def __get__(self, ledger: None, owner: type | None = None) -> _Delegated[S, P, R]: ...

    @overload
    def __get__(self, ledger: Ledger, owner: type | None = None) -> Callable[P, R]: ...

    def __get__(self, ledger: Ledger | None, owner: type | None = None) -> Any:
        if ledger is None:
            return self
        return functools.partial(self.method, getattr(ledger, self.part))

    def __call__(self, ledger: Ledger, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.method(getattr(ledger, self.part), *args, **kwargs)


class Ledger:
    """The sidecar's ledger on SQLite, PostgreSQL or MariaDB/MySQL (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        migrate: bool = True,
        holder: str | None = None,
        clock: Callable[[], datetime] | None = None,
        statement_timeout: float = LEDGER_STATEMENT_TIMEOUT,
        create: bool = True,
    ) -> None:
        """Open the ledger at ``url`` and bring its schema to the newest revision.

        ``migrate=False`` refuses (LedgerUnavailable) a schema that is not current;
        ``create=False`` refuses a SQLite file that does not exist yet. ``clock`` returns
        aware UTC datetimes (injectable for tests); it decides lease expiry. Every statement
        gives up after ``statement_timeout`` s (``sidecar.ledger.timeouts``).
        """
        self._db = Database(
            parse_url(url), clock=clock or utcnow, statement_timeout=statement_timeout,
            create=create,
        )
        holder = holder or default_holder()
        self._leases = Leases(self._db, holder)
        self._runs = Runs(self._db, holder)
        self._observations = Observations(self._db)
        self._placements = Placements(self._db)
        self._decisions = Decisions(self._db)
        self._actions = Actions(self._db, self._leases, self._decisions)
        self._audit = Audit(self._db)
        self._ha_cancels = HaCancels(self._db, self._leases)
        try:
            #: Schema revision found when opening (None: empty database); see revision().
            self.schema_before = revisions.ensure_schema(self._db, migrate=migrate)
        except BaseException:
            self._db.close()
            raise

    @property
    def url(self) -> URL:
        """The parsed URL."""
        return self._db.url

    @property
    def backend(self) -> str:
        """``sqlite``, ``postgresql``, ``mysql`` or ``mariadb``."""
        return self._db.backend

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tests and tools that inspect the database)."""
        return self._db.engine

    @property
    def clock(self) -> Callable[[], datetime]:
        """The clock of every timestamp and of lease expiry."""
        return self._db.clock

    @property
    def holder(self) -> str:
        """This sidecar's name in leases and runs."""
        return self._leases.holder

    @property
    def display_url(self) -> str:
        """The URL with its password masked."""
        return self._db.display_url

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    close = _Delegated("_db", Database.close)

    revision = _Delegated("_db", revisions.current_revision)
    head_revision = staticmethod(revisions.head_revision)
    migrate = _Delegated("_db", revisions.upgrade)

    start_run = _Delegated("_runs", Runs.start)
    finish_run = _Delegated("_runs", Runs.finish)
    runs = _Delegated("_runs", Runs.records)

    observe_hosts = _Delegated("_observations", Observations.observe_hosts)
    host_history = _Delegated("_observations", Observations.host_history)
    host_transitions = _Delegated("_observations", Observations.host_transitions)
    observe_alerts = _Delegated("_observations", Observations.observe_alerts)
    newest_seen_alert = _Delegated("_observations", Observations.newest_seen_alert)
    seen_alert_ids = _Delegated("_observations", Observations.seen_alert_ids)
    alert_sightings = _Delegated("_observations", Observations.alert_sightings)
    prune_observations = _Delegated("_observations", Observations.prune)

    record_vm_placements = _Delegated("_placements", Placements.record)
    vm_placements = _Delegated("_placements", Placements.history)

    record_plan = _Delegated("_decisions", Decisions.record_plan)
    decisions = _Delegated("_decisions", Decisions.records)

    acquire_lease = _Delegated("_leases", Leases.acquire)
    release_lease = _Delegated("_leases", Leases.release)
    lease = _Delegated("_leases", Leases.current)

    intend_archive = _Delegated("_actions", Actions.intend_archive)
    prepare_intents = _Delegated("_actions", Actions.prepare_intents)
    write_intents = _Delegated("_actions", Actions.write_intents)
    mark = _Delegated("_actions", Actions.mark)
    unresolved_actions = _Delegated("_actions", Actions.unresolved)
    actions = _Delegated("_actions", Actions.records)

    intend_ha_cancel = _Delegated("_ha_cancels", HaCancels.intend)
    mark_ha_cancel = _Delegated("_ha_cancels", HaCancels.mark)
    unresolved_ha_cancels = _Delegated("_ha_cancels", HaCancels.unresolved)
    ha_cancels = _Delegated("_ha_cancels", HaCancels.records)

    verify = _Delegated("_audit", Audit.verify)
    export_rows = _Delegated("_audit", Audit.export_rows)
    counts = _Delegated("_audit", Audit.counts)


__all__ = ["Ledger"]

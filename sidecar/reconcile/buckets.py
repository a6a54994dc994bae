"""Fingerprint buckets: every dated alert classified once into ``(alert name, family, object)``.

Classification is per distinct (name, description): duplicates share their subject text, so a
million alerts parse some 80,000 subjects. No object per alert or per incident is made.
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import MappingProxyType

from sidecar.model.constants import SUPPRESSED_NAMES
from sidecar.model.resources import Alert
from sidecar.reconcile import fingerprint as fp
from sidecar.reconcile.indexes import VmIndex
from sidecar.reconcile.policy import FAMILIES

#: Categories of alerts the plan never touches (Summary.untouched_*).
UNTOUCHED_UNKNOWN = "unknown"
UNTOUCHED_SUPPRESSED = "suppressed"

#: Shared defaults of every bucket (never mutated, only replaced).
_ONE_CUT: list[int] = [0]
#: The cuts of a split bucket whose alerts are all one incident (``_ONE_CUT`` means unsplit).
_ONE_INCIDENT: tuple[int, ...] = (0,)
_NO_REASONS: Mapping[int, set[str]] = MappingProxyType({})


class Bucket:
    """All live alerts of one fingerprint; after planning, split into incidents."""

    __slots__ = ("alerts", "cuts", "family", "name", "reasons", "subject")

    def __init__(self, name: str, family: str, subject: fp.Subject) -> None:
        self.name = name
        self.family = family
        self.subject = subject
        self.alerts: list[Alert] = []
        """Its alerts; sorted by (sent, id) once all are in: alerts[start] of an incident is
        canonical."""
        # Shared defaults: a large history has tens of thousands of buckets.
        self.cuts: Sequence[int] = _ONE_CUT
        """Start position (in alerts) of each incident, ascending, cuts[0] == 0."""
        self.reasons: Mapping[int, set[str]] = _NO_REASONS

    def set_cuts(self, cuts: Sequence[int]) -> None:
        """Record the split: ``cuts`` as split() returns them (start of each incident)."""
        # 8 bytes a cut instead of a list slot and an int object (40 bytes): a million
        # alerts have some 700,000 incidents, all alive until the plan is built.
        self.cuts = array("q", cuts) if len(cuts) > 1 else _ONE_INCIDENT

    @property
    def multi(self) -> list[tuple[int, int]]:
        """(start, stop) of the incidents with duplicates (built when asked: kept, the pairs
        of 100,000s of buckets would cost 60 bytes an incident while the plan is built)."""
        cuts = self.cuts
        if cuts is _ONE_CUT or len(cuts) >= len(self.alerts):  # unsplit, or one alert each
            return []
        return [(start, stop) for start, stop in self.incidents() if stop - start > 1]

    @property
    def fingerprint(self) -> str:
        return f"{self.name}|{self.family}|{self.subject.object}"

    def at(self, k: int) -> datetime:
        """``sent`` of alert ``k`` (never None: undated alerts never reach a bucket)."""
        return self.alerts[k].sent  # type: ignore[return-value]

    def incidents(self, since: int = 0) -> list[tuple[int, int]]:
        """(start, stop) positions in alerts of each incident, from incident number ``since``."""
        cuts = self.cuts
        if since >= len(cuts):  # past the last incident (ha._since when it began before)
            return []
        if len(cuts) == 1:
            return [(0, len(self.alerts))]
        return list(zip(cuts[since:], [*cuts[since + 1 :], len(self.alerts)], strict=True))


def family_of(name: str, description: str) -> str:
    """The family an alert counts under: its subject's, or unknown if the name disagrees."""
    family = fp.parse_subject(description).family
    if family == fp.UNKNOWN or name not in FAMILIES[family].alert_names:
        return fp.UNKNOWN
    return family


class Classifier:
    """Subject family + name check + eligibility for each distinct (name, description)."""

    def __init__(self, vms: VmIndex) -> None:
        self.vms = vms
        self.buckets: dict[tuple[str, str, str], Bucket] = {}
        self.untouched: dict[tuple[str, str], int] = defaultdict(int)
        """(UNTOUCHED_UNKNOWN or UNTOUCHED_SUPPRESSED, family) -> alerts never touched."""

    def add(self, name: str, description: str, members: list[Alert]) -> None:
        # Not the lru-cached parse_subject: each distinct text comes here exactly once.
        subject = fp.parse_uncached(description)
        family = subject.family
        if family == fp.UNKNOWN:
            # Capacity and other types CloudStack suppresses itself: never touched (§7).
            kind = UNTOUCHED_SUPPRESSED if name in SUPPRESSED_NAMES else UNTOUCHED_UNKNOWN
            self.untouched[(kind, fp.UNKNOWN)] += len(members)
            return
        spec = FAMILIES[family]
        if name not in spec.alert_names:
            # A known subject under a name it never comes with (e.g. "HA starting VM" under
            # ALERT.MEMORY) is not what it seems: report it as unknown, never touch it.
            self.untouched[(UNTOUCHED_UNKNOWN, fp.UNKNOWN)] += len(members)
            return
        if not spec.archivable:
            self.untouched[(UNTOUCHED_SUPPRESSED, family)] += len(members)
            return
        if family == fp.UNABLE_TO_RESTART and self.vms.name_is_ambiguous(subject.vm):
            # The subject names the VM only by name; two VMs share it: cannot tell them apart.
            self.untouched[(UNTOUCHED_UNKNOWN, family)] += len(members)
            return
        key = (name, family, subject.object)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = Bucket(name, family, subject)
        if bucket.alerts:
            bucket.alerts += members
        else:
            bucket.alerts = members


def classify(alerts: Sequence[Alert], vms: VmIndex) -> tuple[Classifier, list[Alert]]:
    """Bucket every dated alert; returns the classifier and the undated alerts (untouched)."""
    classifier = Classifier(vms)
    # Hot loop: one dict hit per alert (duplicates share their subject text).
    by_text: dict[tuple[str, str], list[Alert]] = {}
    get = by_text.get
    no_time: list[Alert] = []
    for a in alerts:
        if a.sent is None:
            no_time.append(a)  # cannot be placed in time: never touched
            continue
        key = (a.name, a.description)
        members = get(key)
        if members is None:
            by_text[key] = [a]
        else:
            members.append(a)
    for (name, description), members in by_text.items():
        classifier.add(name, description, members)
    return classifier, no_time


__all__ = [
    "UNTOUCHED_SUPPRESSED",
    "UNTOUCHED_UNKNOWN",
    "Bucket",
    "Classifier",
    "classify",
    "family_of",
]

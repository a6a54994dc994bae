"""A de-duplicator's archive set graded against the truth: recall and precision per family."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cloudstack_simulator.truth import Truth


@dataclass(frozen=True, slots=True)
class FamilyScore:
    """How one family (or all of them) fared: ``recall`` and ``precision`` are 1.0 when empty."""

    duplicates: int
    archived: int
    correct: int

    @property
    def missed(self) -> int:
        """Duplicates left live."""
        return self.duplicates - self.correct

    @property
    def wrong(self) -> int:
        """Archived alerts that are no duplicates."""
        return self.archived - self.correct

    @property
    def recall(self) -> float:
        """Share of the duplicates that were archived."""
        return self.correct / self.duplicates if self.duplicates else 1.0

    @property
    def precision(self) -> float:
        """Share of the archived alerts that were duplicates."""
        return self.correct / self.archived if self.archived else 1.0

    def to_json(self) -> dict[str, Any]:
        """Counts, rates rounded to six places."""
        return {
            "duplicates": self.duplicates,
            "archived": self.archived,
            "correct": self.correct,
            "missed": self.missed,
            "wrong": self.wrong,
            "recall": round(self.recall, 6),
            "precision": round(self.precision, 6),
        }


@dataclass(frozen=True)
class Score:
    """Per family and overall, plus the genuine second restarts that were archived."""

    families: dict[str, FamilyScore]
    overall: FamilyScore
    #: Archived ids that are no live duplicate, sorted.
    wrong_ids: list[str] = field(default_factory=list)
    #: Archived "HA starting VM" alerts of genuine second restarts (must be empty), sorted.
    second_restarts_archived: list[str] = field(default_factory=list)

    def to_json(self, *, ids: bool = False) -> dict[str, Any]:
        """JSON-ready; ``ids`` adds the wrong ids."""
        out: dict[str, Any] = {
            "overall": self.overall.to_json(),
            "families": {name: s.to_json() for name, s in sorted(self.families.items())},
            "wrong_archives": len(self.wrong_ids),
            "genuine_second_restarts_archived": len(self.second_restarts_archived),
            "second_restarts_archived_ids": self.second_restarts_archived,
        }
        if ids:
            out["wrong_ids"] = self.wrong_ids
        return out


def score(truth: Truth, archived: Iterable[str]) -> Score:
    """Grade ``archived`` (ids a tool archived) against ``truth``'s live duplicates."""
    done = set(archived)
    # Archived ids count under their alert's family (Truth.family): those outside every
    # failure under unknown, suppressed, archived, other or untracked, never as duplicates.
    by_family = truth.duplicates_by_family()
    archived_by_family = Counter(truth.family(uuid) for uuid in done)
    families = {}
    for name in sorted(set(by_family) | set(archived_by_family)):
        dups = by_family.get(name, set())
        families[name] = FamilyScore(len(dups), archived_by_family[name], len(dups & done))
    duplicates = truth.duplicate_ids
    correct = len(duplicates & done)
    return Score(
        families=families,
        overall=FamilyScore(len(duplicates), len(done), correct),
        wrong_ids=sorted(done - duplicates),
        second_restarts_archived=sorted(truth.second_restart_ids & done),
    )

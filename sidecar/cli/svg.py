"""Inline SVG for the HTML report: bars over time and incident timelines, every text escaped."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

#: Colours: plain alerts, copies that would be archived, the host failure.
KEEP, ARCHIVE, FAILURE = "#4c78a8", "#e45756", "#333"


def _svg(width: int, height: int, label: str, body: Iterable[str]) -> str:
    # No xmlns: inline in HTML it is implied, and the page then names no URL at all.
    return (f'<svg width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
            + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 11) -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}">'
            f"{escape(text)}</text>")


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bar: alerts and duplicates of a time bucket."""

    label: str
    alerts: int
    duplicates: int


def bars(buckets: Sequence[Bucket], label: str, width: int = 1200, height: int = 220) -> str:
    """Alerts per bucket as bars, the duplicates among them overlaid; a few time labels."""
    left, bottom, top = 50, 30, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max((b.alerts for b in buckets), default=0) or 1
    step = plot_w / max(len(buckets), 1)
    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" '
            'stroke="#999"/>', _text(left - 4, top + 8, str(peak), "end"),
            _text(left - 4, top + plot_h, "0", "end")]
    for n, b in enumerate(buckets):
        x = left + n * step
        for count, colour in ((b.alerts, KEEP), (b.duplicates, ARCHIVE)):
            if count:
                h = max(1.0, plot_h * count / peak)
                body.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" '
                            f'width="{max(step - 0.5, 0.5):.1f}" height="{h:.1f}" '
                            f'fill="{colour}"><title>{escape(b.label)}: {b.alerts} alerts, '
                            f"{b.duplicates} duplicates</title></rect>")
    ticks = max(1, len(buckets) // 6)
    for n in range(0, len(buckets), ticks):
        # The last labels end at their tick, so none runs off the picture.
        anchor = "end" if n * step > plot_w * 0.9 else "start"
        body.append(_text(left + n * step, height - 10, buckets[n].label, anchor))
    return _svg(width, height, label, body)


@dataclass(frozen=True, slots=True)
class Lane:
    """One row of a timeline: a label and its alerts (time, would be archived)."""

    label: str
    marks: Sequence[tuple[datetime, bool]]


def timeline(start: datetime, end: datetime, lanes: Sequence[Lane], label: str,
             when: str, width: int = 1200) -> str:
    """Lanes of marks between ``start`` (the host failure, a line) and ``end``."""
    left, lane_h, top = 220, 18, 8
    plot_w = width - left - 20
    span = max((end - start).total_seconds(), 60.0)
    height = top + lane_h * len(lanes) + 22

    def x(at: datetime) -> float:
        return left + plot_w * max(0.0, (at - start).total_seconds()) / span

    body = [f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - 20}" stroke="{FAILURE}" '
            'stroke-width="2"/>', _text(left, height - 6, when),
            _text(width - 20, height - 6, f"+{span / 60:.0f} min", "end")]
    for n, lane in enumerate(lanes):
        y = top + n * lane_h + lane_h / 2
        body.append(_text(left - 8, y + 4, lane.label, "end"))
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 20}" y2="{y:.1f}" '
                    'stroke="#ddd"/>')
        for at, archived in lane.marks:
            colour = ARCHIVE if archived else KEEP
            body.append(f'<circle cx="{x(at):.1f}" cy="{y:.1f}" r="5" fill="{colour}">'
                        f"<title>{'archived copy' if archived else 'kept'}</title></circle>")
    return _svg(width, height, label, body)

"""What a figure reports (rows with a floor, a ratio and a target), the printed table and the JSON file."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Check(enum.StrEnum):
    RATIO_AT_MOST = "ratio<="  #: measured / floor must not exceed the limit (latency against its floor)
    RATIO_AT_LEAST = "ratio>="  #: measured / floor must reach the limit (throughput against its floor)
    BELOW = "<"  #: the measured value itself must stay under the limit (an absolute target)


@dataclass(frozen=True, slots=True)
class Target:
    check: Check
    limit: float
    unit: str = ""

    def describe(self) -> str:
        match self.check:
            case Check.RATIO_AT_MOST:
                return f"<= {self.limit:g}x floor"
            case Check.RATIO_AT_LEAST:
                return f">= {self.limit:g}x floor"
            case Check.BELOW:
                return f"< {self.limit:g} {self.unit}".rstrip()


@dataclass(frozen=True, kw_only=True, slots=True)
class Row:
    """One line of the table: a measured value beside the floor measured in the same run."""

    figure: str
    what: str
    unit: str
    measured: float | None
    floor: float | None = None
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.measured is None or not self.floor:
            return None
        return self.measured / self.floor

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "n/a"
        if self.target is None:
            return "info"
        value = self.measured if self.target.check is Check.BELOW else self.ratio
        if value is None:
            return "n/a"
        ok = {
            Check.RATIO_AT_MOST: value <= self.target.limit,
            Check.RATIO_AT_LEAST: value >= self.target.limit,
            Check.BELOW: value < self.target.limit,
        }[self.target.check]
        return "pass" if ok else "MISS"

    def as_json(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "what": self.what,
            "unit": self.unit,
            "measured": self.measured,
            "floor": self.floor,
            "ratio": self.ratio,
            "target": self.target.describe() if self.target else None,
            "verdict": self.verdict,
            "note": self.note,
        }


@dataclass(slots=True)
class FigureResult:
    rows: list[Row]
    details: dict[str, Any] = field(default_factory=dict)


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"
    return f"{text} {unit}"


HEADERS = ("figure", "what", "measured", "floor (same run)", "ratio", "target", "result")


def table_lines(rows: list[Row]) -> list[str]:
    cells = [
        (
            r.figure,
            r.what,
            _number(r.measured, r.unit) if r.measured is not None else "not measured",
            _number(r.floor, r.unit),
            f"{r.ratio:.2f}x" if r.ratio is not None else "-",
            r.target.describe() if r.target else "-",
            r.verdict,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(HEADERS)]

    def line(values: tuple[str, ...]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    notes = [f"figure {r.figure}, {r.what}: {r.note}" for r in rows if r.note]
    table = [line(HEADERS), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(c) for c in cells)]
    return [*table, *(["", *notes] if notes else [])]


def write_json(path: Path, meta: dict[str, Any], results: dict[str, FigureResult]) -> None:
    document = {
        **meta,
        "rows": [row.as_json() for result in results.values() for row in result.rows],
        "details": {name: result.details for name, result in results.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")

"""How big a run is, and where it writes."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T", int, float)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"


@dataclass(frozen=True, kw_only=True, slots=True)
class Config:
    quick: bool
    history_rows: int
    results_dir: Path = RESULTS_DIR

    def pick(self, full: T, quick: T) -> T:
        return quick if self.quick else full

    def scratch(self, name: str) -> Path:
        """An empty directory for one figure's databases, on the same disk as the results (not a tmpfs)."""
        path = self.results_dir / "scratch" / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

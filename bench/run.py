"""Run the benchmark suite: ``python -m bench`` (add ``--quick`` for a short run, ``--only 1,4`` for some figures)."""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio

from bench import (
    fig1_call,
    fig2_http,
    fig3_writes,
    fig4_decision,
    fig5_history,
    fig6_models,
    fig7_triggers,
    fig8_console,
    fig9_postgres,
)
from bench.config import RESULTS_DIR, Config
from bench.report import FigureResult, table_lines, write_json

FIGURES: dict[str, Callable[[Config], Awaitable[FigureResult]]] = {
    "1": fig1_call.run,
    "2": fig2_http.run,
    "3": fig3_writes.run,
    "4": fig4_decision.run,
    "5": fig5_history.run,
    "6": fig6_models.run,
    "7": fig7_triggers.run,
    "8": fig8_console.run,
    "9": fig9_postgres.run,
}
FULL_HISTORY_ROWS = 1_000_000
QUICK_HISTORY_ROWS = 100_000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure signoff against floors measured in the same run; print a table, write JSON.",
        epilog="examples:\n  python -m bench\n  python -m bench --quick\n"
        "  python -m bench --only 4,5 --history-rows 200000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer iterations and 100,000 history rows (~1 min)")
    parser.add_argument("--only", help="comma-separated figures to run, e.g. 1,3 (default: all)")
    parser.add_argument("--history-rows", type=int, help="rows in figure 5's database (default 1,000,000)")
    args = parser.parse_args(argv)
    args.figures = args.only.split(",") if args.only else list(FIGURES)
    unknown = [f for f in args.figures if f not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    return args


def configure_logging() -> None:
    """Like ``signoff serve``: INFO records are formatted and written, here to a file instead of stderr."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(RESULTS_DIR / "server.log", mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def load() -> dict[str, Any]:
    """How busy the machine was: the load average, and the share of time tasks waited for a CPU (Linux PSI)."""
    state: dict[str, Any] = {"loadavg": list(os.getloadavg())}
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0].split()
        state["cpu_pressure"] = dict(field.split("=") for field in some[1:4])
    except OSError:
        pass
    return state


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "mcp": version("mcp"),
        "aiosqlite": version("aiosqlite"),
        "psycopg": version("psycopg"),
        "signoff": version("signoff"),
    }


async def run_all(cfg: Config, figures: list[str]) -> dict[str, FigureResult]:
    results: dict[str, FigureResult] = {}
    for name in figures:
        print(f"figure {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        results[name] = await FIGURES[name](cfg)
        results[name].details["seconds"] = round(time.perf_counter() - started, 1)
        print(f"figure {name} done in {results[name].details['seconds']} s", file=sys.stderr, flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rows = args.history_rows or (QUICK_HISTORY_ROWS if args.quick else FULL_HISTORY_ROWS)
    cfg = Config(quick=args.quick, history_rows=rows)
    configure_logging()
    started_at = datetime.now(UTC)
    load_before = load()
    started = time.perf_counter()
    try:
        results = anyio.run(run_all, cfg, args.figures)
    finally:
        shutil.rmtree(cfg.results_dir / "scratch", ignore_errors=True)
    elapsed = time.perf_counter() - started
    lines = table_lines([row for result in results.values() for row in result.rows])
    print("\n".join(lines))
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    meta = {
        "started_at": started_at.isoformat(),
        "seconds": round(elapsed, 1),
        "mode": "quick" if args.quick else "full",
        "figures": args.figures,
        "history_rows": rows,
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "load": {"before": load_before, "after": load()},
        "table": lines,
    }
    for path in (cfg.results_dir / f"{stamp}.json", cfg.results_dir / "latest.json"):
        write_json(path, meta, results)
    print(f"\n{len(args.figures)} figure(s) in {elapsed:.0f} s; JSON in {cfg.results_dir / f'{stamp}.json'}")
    return 0

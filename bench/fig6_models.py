"""Figure 6 (stub): ``resolve_model`` p50 in-process, and ``record_inferences`` of 1,000 items.

Belongs to the model registry (``tools.models``), which is being built separately. Until this figure is
written, it reports why it was not measured; it never fails the run.
"""

from __future__ import annotations

import importlib

from bench.config import Config
from bench.report import Check, FigureResult, Row, Target


async def run(cfg: Config) -> FigureResult:
    try:
        importlib.import_module("tools.models")
    except ImportError:
        reason = "not measured: model registry not present"
    else:
        reason = "not measured: tools.models is present, but this figure's benchmark is not written yet"
    return FigureResult(
        rows=[
            Row(
                figure="6",
                what="resolve_model p50, in-process",
                unit="ms",
                measured=None,
                target=Target(Check.BELOW, 1, "ms"),
                note=reason,
            ),
            Row(
                figure="6",
                what="record_inferences of 1,000 items",
                unit="ms",
                measured=None,
                target=Target(Check.BELOW, 50, "ms"),
                note=reason,
            ),
        ],
        details={"status": reason},
    )

"""``signoff audit verify``: the chain and every row it explains, checked and reported; ``db copy`` ends with it."""

from __future__ import annotations

import sys
from collections.abc import Mapping

from signoff.storage import ModelStore, Store
from signoff.storage.alerts import Alerts
from signoff.storage.audit import ChainReport, verify_store


async def verify(store: Store, models: ModelStore, alerts: Alerts, anchors: Mapping[int, str]) -> int:
    """Verify the audit log and the rows it explains (closing ``models`` and ``alerts``); print the head, or where
    it fails on stderr. 0 when it verifies, 1 when it does not."""
    return show(await check(store, models, alerts, anchors))


async def check(store: Store, models: ModelStore, alerts: Alerts, anchors: Mapping[int, str]) -> ChainReport:
    """What ``verify`` checks, unprinted (closing ``models`` and ``alerts``)."""
    try:
        try:
            episodes = await alerts.episodes(limit=-1)
        except (ValueError, TypeError) as exc:  # a row edited into something signoff cannot read
            return ChainReport(
                ok=False,
                events_checked=0,
                head_seq=0,
                head_hash="",
                reason=f"it cannot be read ({exc})",
                row="an alert episode row",
            )
        return await verify_store(store, anchors, models=models, alerts=episodes)
    finally:
        await models.close()
        await alerts.close()


def show(report: ChainReport) -> int:
    """Print what ``check`` found as ``signoff audit verify`` does: 0 when it verifies, 1 when it does not."""
    if report.ok:
        checked = "every request, vote, model and alert row"
        print(f"ok: {report.events_checked} events verified, and {checked} matches its events")
        for column, rows in sorted(report.unchecked.items()):
            print(f"not checked: {column} of {rows} row(s), whose events were written before they recorded it")
        if report.model_baselines:
            seqs = ", ".join(f"#{seq}" for seq in report.model_baselines)
            print(f"not checked: the model plane before event {seqs}, taken as found when it entered the chain")
        print(f"head {report.head_seq}:{report.head_hash} (keep it elsewhere; pass it back with --anchor)")
        return 0
    if report.first_bad_seq is not None:
        where = f"event #{report.first_bad_seq}"
    else:
        where = report.row or f"request {report.request_id}"
        where += f", column {report.column}" if report.column else ""
    print(f"FAILED at {where}: {report.reason} ({report.events_checked} events verified)", file=sys.stderr)
    return 1

"""The web console's audit check: what ``signoff audit verify`` checks, run from the history page.

The chain of every event, then every request and vote row, every model-plane row and every alert episode row
against what its events say; so the page's "ok" means what the command's "ok" means.
"""

from __future__ import annotations

from signoff.server.config import Settings
from signoff.server.stores import open_alert_store
from signoff.storage import ModelStore, Store
from signoff.storage.alerts import Episode
from signoff.storage.audit import ChainReport, verify_store


async def alert_episodes(settings: Settings) -> list[Episode] | None:
    """Every alert episode row of the database the settings name; None when there is no such database (a server
    built on a store of its own, in tests)."""
    if settings.db_url is None and not settings.db_path.exists():
        return None
    alerts = await open_alert_store(settings.db_path, settings.db_url)
    try:
        return await alerts.episodes(limit=-1)
    finally:
        await alerts.close()


async def whole_chain(settings: Settings, store: Store, models: ModelStore | None) -> ChainReport:
    """The chain and every row it explains, as ``signoff audit verify`` checks them."""
    try:
        episodes = await alert_episodes(settings)
    except (ValueError, TypeError) as exc:  # a row edited into something signoff cannot read
        return ChainReport(
            ok=False,
            events_checked=0,
            head_seq=0,
            head_hash="",
            reason=f"it cannot be read ({exc})",
            row="an alert episode row",
        )
    return await verify_store(store, None, models=models, alerts=episodes)

"""Figure 4's reviewer in another process: votes on the requests it is sent, and says when each vote committed.

Reads ``<request_id> <delay_ms>`` lines on stdin; after the delay approves the request through
``ApprovalService.vote`` on its own SqliteStore, and prints ``<request_id> <time.time() after commit>``.
Run by figure 4 as ``python -m bench.vote_worker DB``.
"""

from __future__ import annotations

import sys
import time

import anyio

from bench.samples import REVIEWER
from signoff.storage import Verdict
from signoff.storage.approvals.sqlite import SqliteStore
from signoff.tools.approvals.service import ApprovalService


async def serve(db: str) -> None:
    store = await SqliteStore.open(db)
    service = ApprovalService(store)
    try:
        print("ready", flush=True)
        while line := await anyio.to_thread.run_sync(sys.stdin.readline):
            request_id, delay_ms = line.split()
            await anyio.sleep(float(delay_ms) / 1000)
            await service.vote(request_id, REVIEWER, Verdict.APPROVE, None)
            committed = time.time()
            print(f"{request_id} {committed!r}", flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    anyio.run(serve, sys.argv[1])

"""Waiting for a stored request to reach a state, on the store's change signal: no sleeping, a generous bound."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from signoff.storage import ApprovalRequest, Store


async def stored_when(
    store: Store, request_id: str, check: Callable[[ApprovalRequest], bool], timeout: float = 30
) -> ApprovalRequest:
    """The request once ``check(request)`` holds, however the change reaches the store (this process or another)."""
    with anyio.fail_after(timeout):
        while True:
            token = await store.change_token()
            request = await store.get(request_id)
            assert request is not None, f"no request {request_id}"
            if check(request):
                return request
            await store.wait_for_change(token, 5)

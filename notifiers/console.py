"""Notifications as log lines on stderr: for local use, and the default when nothing else is set up.

What the agent wrote is shown with control characters as escapes (``storage.text.visible``) here too, so the line
stays one line and inert whatever formatter the host application logs with."""

from __future__ import annotations

import logging

from signoff.storage import ApprovalRequest, Status
from signoff.storage.text import visible

logger = logging.getLogger("signoff.notify")


class ConsoleNotifier:
    name = "console"

    async def deliver(self, request: ApprovalRequest) -> None:
        if request.status is Status.PENDING:
            why = visible("; ".join(t.detail for t in request.triggers))
            logger.warning(
                "approval needed: %s %s (%s) - %s. Review with: signoff review show %s",
                request.id,
                visible(request.action),
                visible(request.summary),
                why,
                request.id,
                extra={"request_id": request.id},
            )
        else:
            logger.warning("request %s is %s", request.id, request.status, extra={"request_id": request.id})

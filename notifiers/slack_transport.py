"""How Slack's replies reach signoff: Socket Mode (no public URL) or the signed HTTP interactivity endpoint."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from signoff.notifiers.slack_inbound import SlackInteractions, modal_error
from signoff.notifiers.slack_setup import network_reason
from signoff.storage.errors import StorageError

logger = logging.getLogger(__name__)

SIGNATURE_WINDOW_SECONDS = 300  # Slack's own rule: refuse requests signed more than five minutes ago

Spawn = Callable[[Mapping[str, Any]], None]  #: run ``interactions.handle(payload)`` in the background


class OneLineRetries(logging.Filter):
    """slack_sdk logs each failed Socket Mode connect with its whole traceback (some 70 lines) before retrying every
    ``interval`` seconds: keep one warning line per retry instead, saying why and when the next one is."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval = interval

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Failed to retrieve WSS URL"):
            return False  # the connect failure logged next says the same
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not isinstance(exc, aiohttp.ClientError | OSError | TimeoutError | SlackApiError):
            return True
        if isinstance(exc, SlackApiError):
            reason = f"Slack refused the app token ({exc.response.get('error')})"
        else:
            reason = network_reason(exc)
        retry_at = datetime.now() + timedelta(seconds=self.interval)
        record.msg, record.args = (
            "Slack Socket Mode cannot connect: %s; next try at %s (in %.0fs)",
            (
                reason,
                f"{retry_at:%H:%M:%S}",
                self.interval,
            ),
        )
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


def socket_mode_client(
    app_token: str, client: AsyncWebClient, interactions: SlackInteractions, *, retry_interval: float = 5.0
) -> SocketModeClient:
    """A Socket Mode client that acks each envelope first (Slack wants an ack within 3 s), then works.
    A modal submission is the exception: its ack carries the validation errors, so it is handled first.
    While Slack cannot be reached it retries every ``retry_interval`` seconds (its ping interval), one log line each."""

    async def listener(socket: AsyncBaseSocketModeClient, request: SocketModeRequest) -> None:
        if request.type != "interactive":
            await socket.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
            return
        if request.payload.get("type") == "view_submission":
            ack = await handle_safely(interactions, request.payload)
            await socket.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id, payload=ack))
            return
        await socket.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
        await handle_safely(interactions, request.payload)

    socket_logger = logging.getLogger("signoff.notifiers.slack_socket_mode")
    for old in [f for f in socket_logger.filters if isinstance(f, OneLineRetries)]:
        socket_logger.removeFilter(old)
    socket_logger.addFilter(OneLineRetries(retry_interval))
    socket = SocketModeClient(
        app_token=app_token, web_client=client, logger=socket_logger, ping_interval=retry_interval
    )
    socket.socket_mode_request_listeners.append(listener)
    return socket


async def handle_safely(interactions: SlackInteractions, payload: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        return await interactions.handle(payload)
    except Exception:  # one bad payload must not stop the listener, or the server, that serves every other click
        logger.exception("could not handle a Slack interaction")
        if payload.get("type") == "view_submission":  # keep the modal open: nothing was recorded
            return modal_error("signoff could not record this; nothing was recorded. Try again in a moment.")
        return None


class SlackHttpEndpoint:
    """``POST /slack/interactions``: verify the signature on the raw body before reading it, refuse stale
    and replayed requests, then ack at once and do the work in the background.

    A request counts once across every server on the database: its signature is claimed in the database shared by
    every replica (``Store.claim_once``), so a captured request replayed to another replica (or another process on
    the same SQLite file) within the signature window is refused there too."""

    def __init__(self, signing_secret: str, interactions: SlackInteractions, spawn: Spawn) -> None:
        self.clock = Clock()  #: the verifier's clock, and the claims': seconds since the epoch
        self.verifier = SignatureVerifier(signing_secret, self.clock)
        self.interactions = interactions
        self.spawn = spawn

    async def handle(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, Any] | None]:
        """Returns the HTTP status and an optional JSON body."""
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            valid = self.verifier.is_valid_request(body, lowered)
        except ValueError:  # a timestamp header that is not a number
            valid = False
        if not valid:
            logger.warning("refused a Slack interaction with an invalid or expired signature")
            return 401, {"error": "invalid or expired Slack signature"}
        try:
            first = await self._first_time(lowered["x-slack-signature"])
        except StorageError as exc:  # fail closed: a request that cannot be checked against replays is not acted on
            logger.warning("refused a Slack interaction: cannot check it against replays: %s", exc)
            return 503, {"error": "signoff cannot check this request against its database now; nothing was recorded"}
        if not first:
            logger.warning("refused a replayed Slack interaction")
            return 401, {"error": "this request was already received"}
        try:
            payload = json.loads(parse_qs(body.decode())["payload"][0])
        except (KeyError, IndexError, ValueError):
            return 400, {"error": "expected a form field 'payload' holding JSON"}
        if payload.get("type") == "view_submission":
            return 200, await handle_safely(self.interactions, payload)
        self.spawn(payload)
        return 200, None

    async def _first_time(self, signature: str) -> bool:
        """Claim the signature in the shared database; kept twice the signature window (a replica whose clock is
        a little behind still refuses the replay), then forgotten by a later claim."""
        now = datetime.fromtimestamp(self.clock.now(), UTC)
        forget_after = now + timedelta(seconds=2 * SIGNATURE_WINDOW_SECONDS)
        return await self.interactions.store.claim_once(f"slack-signature:{signature}", now, forget_after)

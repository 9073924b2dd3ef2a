"""Outbound Slack: post a request's message once, then keep it in step with the request.

Every delivery shows the request's *current* state, so deliveries that arrive late or twice still
converge on the truth in the database. The message's channel and ``ts`` are stored right after
Slack answers; later deliveries update that message instead of posting a new one.

A process can die after Slack accepted the post and before its ``ts`` was stored. So the post is reserved in the
store first and carries message metadata naming the request; a retry that finds the reservation unconfirmed first
looks for that message in the channel's recent history and adopts it instead of posting again.

The reservation is a compare-and-set (``Store.swap_message_ref``): of two servers reserving the same post, one wins
and the other posts nothing. A reservation younger than ``RESERVATION_HOLD`` is a post that may still be on its way,
so it is waited for (the delivery is retried after it), never searched for and replaced.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.models.blocks import Block
from slack_sdk.web.async_client import AsyncWebClient

from signoff.notifiers.base import DeliveryFailed, DeliveryRefused, retry_after_seconds
from signoff.notifiers.slack_blocks import escalation_note, headline, request_blocks, vote_reply
from signoff.notifiers.slack_setup import network_reason
from signoff.storage import ApprovalRequest, MessageRef, Store, tracing

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"
ESCALATION_MENTION = "slack:escalation-mention"  #: message refs of the escalation posts
ESCALATION_COPY = "slack:escalation-copy"
METADATA_EVENT = "signoff_request"  #: the message metadata's event_type on every request's post
HISTORY_MARGIN = timedelta(minutes=2)  #: look this far before the reservation (clock skew)
HISTORY_PAGES = 5  #: at most this many pages of 200 messages are searched for an earlier post
#: an unconfirmed reservation this young may still be posting (the client gives up after 10 s): it is waited for
RESERVATION_HOLD = timedelta(seconds=60)
#: Slack errors worth retrying; any other ``ok: false`` answer is a refusal that retrying will not change
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout", "team_added_to_org"}
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def web_client(token: str, api_url: str | None = None, *, wait_on_rate_limit: bool = True) -> AsyncWebClient:
    """A Slack client. With ``wait_on_rate_limit`` it waits out a 429's Retry-After itself (for answering
    clicks); the outbox's client does not, so a delivery never sleeps while holding its lease. Connection
    errors are never retried here: a retried chat.postMessage can post twice."""
    handlers: list[AsyncRetryHandler] = (
        [AsyncRateLimitErrorRetryHandler(max_retry_count=3)] if wait_on_rate_limit else []
    )
    return AsyncWebClient(token=token, base_url=api_url or DEFAULT_API_URL, timeout=10, retry_handlers=handlers)


class SlackNotifier:
    name = "slack"

    def __init__(
        self,
        client: AsyncWebClient,
        store: Store,
        default_channel: str | None,
        *,
        amount_field: str | None = None,
        public_url: str | None = None,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.client = client
        self.store = store
        self.default_channel = default_channel
        self.amount_field = amount_field  #: the payload field shown as the amount (``[slack] amount_field``)
        self.public_url = public_url  #: ``SIGNOFF_PUBLIC_URL``: messages link each request's console page
        self.now = now

    async def deliver(self, request: ApprovalRequest) -> None:
        try:
            ref = await self.store.message_ref(request.id, self.name)
            if ref is None or not ref.confirmed:
                ref = await self._post(request, ref)
            else:
                await self.client.chat_update(
                    channel=ref.channel, ts=ref.ts, text=headline(request), blocks=self._blocks(request)
                )
            for vote in request.votes[ref.votes_posted :]:
                await self.client.chat_postMessage(
                    channel=ref.channel, thread_ts=ref.ts, text=vote_reply(request, vote)
                )
                ref = dataclasses.replace(ref, votes_posted=ref.votes_posted + 1)
                await self.store.save_message_ref(ref)
            await self._escalation(request, ref)
        except SlackApiError as exc:
            raise _failure(exc) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise DeliveryFailed(f"Slack could not be reached: {network_reason(exc)}") from exc

    async def _escalation(self, request: ApprovalRequest, main: MessageRef) -> None:
        """An escalated request is shown to its target once: a user group is mentioned in the thread; a channel
        gets its own copy of the message, with the buttons, kept in step like the first."""
        target = request.escalate_to
        if request.escalated_at is None or not target:
            return
        kind = ESCALATION_MENTION if target.startswith("S") else ESCALATION_COPY
        ref = await self.store.message_ref(request.id, kind)
        if kind == ESCALATION_MENTION:
            if ref is None:
                text = escalation_note(request, mention=f"<!subteam^{target}>")
                posted = await self.client.chat_postMessage(channel=main.channel, thread_ts=main.ts, text=text)
                await self.store.save_message_ref(
                    MessageRef(request_id=request.id, notifier=kind, channel=main.channel, ts=posted["ts"])
                )
        elif ref is None:
            posted = await self.client.chat_postMessage(
                channel=target, text=escalation_note(request, mention=None), blocks=self._blocks(request)
            )
            await self.store.save_message_ref(
                MessageRef(request_id=request.id, notifier=kind, channel=posted["channel"], ts=posted["ts"])
            )
        else:
            await self.client.chat_update(
                channel=ref.channel, ts=ref.ts, text=headline(request), blocks=self._blocks(request)
            )

    def _blocks(self, request: ApprovalRequest) -> list[Block]:
        return request_blocks(request, amount_field=self.amount_field, public_url=self.public_url)

    async def _post(self, request: ApprovalRequest, reserved: MessageRef | None) -> MessageRef:
        """Post the request's message once: reserve, post with metadata, confirm. After a reservation that may
        have been posted (the process died, or the ``ts`` could not be stored), adopt the earlier post if found."""
        if reserved is not None and reserved.reserved_at is not None:
            if (held := reserved.reserved_at + RESERVATION_HOLD - self.now()) > timedelta(0):
                raise DeliveryFailed(
                    f"the Slack post of {request.id} was started at {reserved.reserved_at:%H:%M:%S} (by this or "
                    "another server) and is not confirmed yet; looking for it in the channel once that is "
                    f"{RESERVATION_HOLD.total_seconds():.0f}s old",
                    retry_after=held.total_seconds(),
                )
            if (found := await self._find_post(request, reserved)) is not None:
                await self.store.save_message_ref(found)
                logger.info("adopted the earlier Slack post of %s in %s at %s", request.id, found.channel, found.ts)
                return found
        channel = request.channel or self.default_channel
        if not channel:
            raise DeliveryRefused(
                "no Slack channel for this request: set SIGNOFF_SLACK_CHANNEL or slack.channel in the policy file"
            )
        reservation = MessageRef(
            request_id=request.id, notifier=self.name, channel=channel, ts="", reserved_at=self.now()
        )
        if not await self.store.swap_message_ref(reserved, reservation):
            raise DeliveryFailed(f"another server reserved the Slack post of {request.id} first; it posts it")
        try:
            response = await self.client.chat_postMessage(
                channel=channel,
                text=headline(request),
                blocks=self._blocks(request),
                unfurl_links=False,
                unfurl_media=False,
                metadata={"event_type": METADATA_EVENT, "event_payload": _event_payload(request)},
            )
        except (SlackApiError, aiohttp.ClientConnectorError):  # Slack answered and did not post, or was never
            # reached: nothing to look for (or wait for) next time
            await self.store.save_message_ref(dataclasses.replace(reservation, reserved_at=None))
            raise
        ref = MessageRef(request_id=request.id, notifier=self.name, channel=response["channel"], ts=response["ts"])
        await self.store.save_message_ref(ref)
        logger.info("posted %s to Slack %s at %s", request.id, ref.channel, ref.ts)
        return ref

    async def _find_post(self, request: ApprovalRequest, reserved: MessageRef) -> MessageRef | None:
        """The message an earlier attempt posted for ``request`` in the reserved channel, from its recent history."""
        assert reserved.reserved_at is not None
        oldest = f"{(reserved.reserved_at - HISTORY_MARGIN).timestamp():.6f}"
        cursor: str | None = None
        try:
            for _ in range(HISTORY_PAGES):
                page = await self.client.conversations_history(
                    channel=reserved.channel, oldest=oldest, limit=200, include_all_metadata=True, cursor=cursor
                )
                for message in page.get("messages") or []:
                    if _tagged(message, request.id):
                        return MessageRef(
                            request_id=request.id, notifier=self.name, channel=reserved.channel, ts=message["ts"]
                        )
                cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
                if not page.get("has_more") or cursor is None:
                    return None
        except SlackApiError as exc:
            if exc.response.status_code == 429 or exc.response.get("error") in TRANSIENT_ERRORS:
                raise
            logger.warning(
                "cannot look in %s for an earlier post of %s (%s), so it may show twice: give the channel's id (C…) "
                "and the channels:history scope",
                reserved.channel,
                request.id,
                exc.response.get("error"),
            )
        return None


def _event_payload(request: ApprovalRequest) -> dict[str, str]:
    """The message metadata's payload: the request, and the trace its delivery continues (W3C traceparent)."""
    traceparent = tracing.current_traceparent()
    return {"request_id": request.id} | ({tracing.TRACEPARENT: traceparent} if traceparent else {})


def _tagged(message: Any, request_id: str) -> bool:
    metadata = message.get("metadata") if isinstance(message, dict) else None
    if not isinstance(metadata, dict) or metadata.get("event_type") != METADATA_EVENT:
        return False
    payload = metadata.get("event_payload")
    return isinstance(payload, dict) and payload.get("request_id") == request_id


def _failure(exc: SlackApiError) -> DeliveryFailed:
    """Slack's answer as a retry (with its Retry-After) or, when retrying cannot help, a refusal."""
    status, error = exc.response.status_code, exc.response.get("error")
    if status == 429:
        wait = retry_after_seconds(exc.response.headers.get("Retry-After")) or 1.0
        return DeliveryFailed(f"Slack is rate limiting; retry in {wait:.0f}s", retry_after=wait)
    if status >= 500 or error in TRANSIENT_ERRORS:
        return DeliveryFailed(f"Slack is unavailable ({error or f'HTTP {status}'})")
    return DeliveryRefused(f"Slack refused it ({error or f'HTTP {status}'})")

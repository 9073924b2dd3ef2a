"""Outbound Slack: post a request's message once, then keep it in step with the request.

Every delivery shows the request's *current* state, so deliveries that arrive late or twice still
converge on the truth in the database. The message's channel and ``ts`` are stored right after
Slack answers; later deliveries update that message instead of posting a new one.
"""

from __future__ import annotations

import dataclasses
import logging

import aiohttp
from signoff.notifiers.base import DeliveryFailed
from signoff.notifiers.slack_blocks import escalation_note, headline, request_blocks, vote_reply
from signoff.storage import ApprovalRequest, MessageRef, Store
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.models.blocks import Block
from slack_sdk.web.async_client import AsyncWebClient

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"
ESCALATION_MENTION = "slack:escalation-mention"  #: message refs of the escalation posts
ESCALATION_COPY = "slack:escalation-copy"


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
        self, client: AsyncWebClient, store: Store, default_channel: str | None, *, amount_field: str | None = None
    ) -> None:
        self.client = client
        self.store = store
        self.default_channel = default_channel
        self.amount_field = amount_field  #: the payload field shown as the amount (``[slack] amount_field``)

    async def deliver(self, request: ApprovalRequest) -> None:
        try:
            ref = await self.store.message_ref(request.id, self.name)
            if ref is None:
                ref = await self._post(request)
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
            if exc.response.status_code == 429:
                wait = float(exc.response.headers.get("Retry-After", 1))
                raise DeliveryFailed(f"Slack is rate limiting; retry in {wait:.0f}s", retry_after=wait) from exc
            raise DeliveryFailed(f"Slack refused it: {exc.response.get('error', exc)}") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise DeliveryFailed(f"Slack could not be reached: {exc!r}") from exc

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
        return request_blocks(request, amount_field=self.amount_field)

    async def _post(self, request: ApprovalRequest) -> MessageRef:
        channel = request.channel or self.default_channel
        if not channel:
            raise DeliveryFailed(
                "no Slack channel for this request: set SIGNOFF_SLACK_CHANNEL or slack.channel in the policy file"
            )
        response = await self.client.chat_postMessage(
            channel=channel,
            text=headline(request),
            blocks=self._blocks(request),
            unfurl_links=False,
            unfurl_media=False,
        )
        ref = MessageRef(request_id=request.id, notifier=self.name, channel=response["channel"], ts=response["ts"])
        await self.store.save_message_ref(ref)
        logger.info("posted %s to Slack %s at %s", request.id, ref.channel, ref.ts)
        return ref

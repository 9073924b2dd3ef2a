"""Inbound Slack: Approve/Reject clicks and the reject reason become votes through a callback.

This adapter only translates: a click becomes the clicker's Slack id, name and user groups (the approvers' groups
it is a member of, as Slack says). Who may vote is decided by the service, which every channel votes through:
``may_vote`` asks before the reason form opens, ``on_vote`` records the vote, and ``outcome`` says who decided a
request a click came too late for. Any server process may receive any click, because the vote goes through the
shared database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
import anyio
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from signoff.notifiers.slack_blocks import (
    APPROVE_ACTION,
    REASON_BLOCK,
    REASON_INPUT,
    REJECT_ACTION,
    REJECT_CALLBACK,
    reject_modal,
)
from signoff.notifiers.slack_text import escape
from signoff.storage import ApprovalRequest, Forbidden, NotFound, SignoffError, Status, Store, Verdict

logger = logging.getLogger(__name__)

GROUP_CACHE_SECONDS = 60.0


class OnVote(Protocol):
    async def __call__(
        self,
        request_id: str,
        reviewer: str,
        verdict: Verdict,
        comment: str | None,
        reviewer_ids: tuple[str, ...],
        groups: tuple[str, ...],
    ) -> ApprovalRequest: ...


class MayVote(Protocol):
    """Why this Slack user may not vote on this request, or None; raises NotFound for an unknown request."""

    async def __call__(
        self, request_id: str, reviewer: str, reviewer_ids: tuple[str, ...], groups: tuple[str, ...]
    ) -> str | None: ...


class OnRefused(Protocol):
    async def __call__(self, request_id: str, who: str, reason: str) -> None: ...


class Outcome(Protocol):
    """What happened to a decided request, in the service's words (``was already approved by alice at …``)."""

    def __call__(self, request: ApprovalRequest) -> str: ...


Ack = dict[str, Any] | None  #: what to answer a view submission with (None closes the modal)


class SlackInteractions:
    def __init__(
        self,
        client: AsyncWebClient,
        store: Store,
        on_vote: OnVote,
        on_refused: OnRefused,
        may_vote: MayVote,
        outcome: Outcome,
    ) -> None:
        self.client = client
        self.store = store
        self.on_vote = on_vote
        self.on_refused = on_refused
        self.may_vote = may_vote
        self.outcome = outcome
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}

    async def handle(self, payload: Mapping[str, Any]) -> Ack:
        """Handle one interaction payload; returns the ack for a view submission."""
        kind = payload.get("type")
        if kind == "block_actions":
            await self._clicked(payload)
        elif kind == "view_submission" and payload.get("view", {}).get("callback_id") == REJECT_CALLBACK:
            return await self._reason_submitted(payload)
        return None

    async def _clicked(self, payload: Mapping[str, Any]) -> None:
        action = payload["actions"][0]
        if action.get("action_id") not in (APPROVE_ACTION, REJECT_ACTION):
            return
        request_id, user = action["value"], payload["user"]
        channel = payload.get("channel", {}).get("id") or payload.get("container", {}).get("channel_id")
        refusal = await self._refusal(request_id, user)
        if refusal:
            await self._tell(channel, user["id"], refusal)
        elif action["action_id"] == REJECT_ACTION:
            request = await self.store.get(request_id)
            if request is not None and request.status is not Status.PENDING:  # say who decided, as a vote would
                await self._tell(channel, user["id"], f"This request {self.outcome(request)}; nothing was recorded.")
                return
            try:
                await self.client.views_open(trigger_id=payload["trigger_id"], view=reject_modal(request_id, channel))
            except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:  # e.g. the 3-second trigger expired
                logger.warning("could not open the reject modal: %r", exc)
                await self._tell(channel, user["id"], "Slack did not open the reason form in time; click Reject again.")
        else:
            message = await self._vote(request_id, user, Verdict.APPROVE, None)
            if message:
                await self._tell(channel, user["id"], message)

    async def _reason_submitted(self, payload: Mapping[str, Any]) -> Ack:
        view, user = payload["view"], payload["user"]
        request_id = json.loads(view["private_metadata"])["request_id"]
        reason = (view["state"]["values"][REASON_BLOCK][REASON_INPUT].get("value") or "").strip()
        if not reason:
            return modal_error("Give a reason: the agent reads it and so does the audit log.")
        refusal = await self._refusal(request_id, user)
        if refusal:
            return modal_error(refusal)
        message = await self._vote(request_id, user, Verdict.REJECT, reason)
        return modal_error(message) if message else None

    async def _vote(
        self, request_id: str, user: Mapping[str, Any], verdict: Verdict, comment: str | None
    ) -> str | None:
        """Record the vote; returns what to tell the reviewer when it was not recorded."""
        try:
            groups = await self._groups_of(request_id, user["id"])
            await self.on_vote(request_id, _name(user), verdict, comment, (user["id"],), groups)
        except Forbidden as exc:
            await self._record_refusal(request_id, user["id"], exc.message)
            return f"Your vote was not recorded: {exc.message}"
        except SignoffError as exc:
            return f"Your vote was not recorded: {exc.message}"
        return None

    async def _record_refusal(self, request_id: str, user_id: str, reason: str) -> None:
        """Slack vouches for who clicked, so a refused click goes in the audit log (unknown ids do not)."""
        logger.warning("refused a Slack vote on %s by %s: %s", request_id, user_id, reason)
        try:
            await self.on_refused(request_id, f"slack:{user_id}", reason)
        except NotFound:
            pass

    async def _refusal(self, request_id: str, user: Mapping[str, Any]) -> str | None:
        """Why this Slack user may not vote on this request (the service's answer), or None if they may."""
        try:
            groups = await self._groups_of(request_id, user["id"])
            reason = await self.may_vote(request_id, _name(user), (user["id"],), groups)
        except NotFound:
            return f"signoff has no request {request_id}; nothing was recorded."
        if reason is not None:
            await self._record_refusal(request_id, user["id"], reason)
            return f"Your click was not recorded: {reason}"
        return None

    async def _groups_of(self, request_id: str, user_id: str) -> tuple[str, ...]:
        """The request's approver user groups (S…) this user is a member of, as Slack says."""
        request = await self.store.get(request_id)
        if request is None:
            return ()
        return tuple([g for g in request.approvers if g.startswith("S") and user_id in await self._members(g)])

    async def _members(self, group: str) -> frozenset[str]:
        cached = self._groups.get(group)
        if cached and anyio.current_time() - cached[0] < GROUP_CACHE_SECONDS:
            return cached[1]
        try:
            response = await self.client.usergroups_users_list(usergroup=group)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("cannot list members of user group %s: %r", group, exc)
            return frozenset()  # fail closed: an unknown membership is no membership
        members = frozenset(response.get("users") or ())
        self._groups[group] = (anyio.current_time(), members)
        return members

    async def _tell(self, channel: str, user_id: str, text: str) -> None:
        """An ephemeral note only the clicker sees."""
        try:
            await self.client.chat_postEphemeral(channel=channel, user=user_id, text=escape(text))
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("could not tell %s: %r", user_id, exc)


def _name(user: Mapping[str, Any]) -> str:
    """Who clicked: the Slack user id, which Slack vouches for. The username and display name are chosen by the
    user (or by another workspace, in a Slack Connect channel), so they never identify anyone here."""
    return str(user["id"])


def modal_error(text: str) -> dict[str, Any]:
    return {"response_action": "errors", "errors": {REASON_BLOCK: text[:150]}}

"""Setting Slack up: the app manifest to paste, and a check that says what is missing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

BOT_SCOPES = ["chat:write", "chat:write.public", "usergroups:read", "channels:read", "groups:read"]


def manifest(name: str = "signoff", request_url: str | None = None) -> dict[str, Any]:
    """A Slack app manifest: Socket Mode by default, or the HTTP Request URL when one is given."""
    interactivity: dict[str, Any] = {"is_enabled": True}
    if request_url:
        interactivity["request_url"] = request_url
    return {
        "display_information": {
            "name": name,
            "description": "Approve or reject what AI agents want to do, with one click.",
            "background_color": "#1d1c1d",
        },
        "features": {"bot_user": {"display_name": name, "always_online": True}},
        "oauth_config": {"scopes": {"bot": BOT_SCOPES}},
        "settings": {
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": request_url is None,
            "token_rotation_enabled": False,
        },
    }


@dataclass(frozen=True, slots=True)
class Finding:
    ok: bool
    message: str


async def check(
    bot: AsyncWebClient | None,
    *,
    app_token: str | None,
    has_signing_secret: bool,
    channels: list[str],
    approvers: tuple[str, ...],
) -> list[Finding]:
    """What works and what is missing, in the order a new user would fix it."""
    if bot is None:
        return [Finding(False, "SIGNOFF_SLACK_BOT_TOKEN is not set: install the app and copy its Bot User OAuth Token")]
    findings = []
    try:
        who = await bot.auth_test()
        findings.append(Finding(True, f"bot token works: {who.get('user')} in {who.get('team')}"))
    except SlackApiError as exc:
        return [Finding(False, f"the bot token was refused ({exc.response.get('error')}): copy it again from the app")]
    except (aiohttp.ClientError, TimeoutError) as exc:
        return [Finding(False, f"Slack cannot be reached ({exc!r}): check the network or SIGNOFF_SLACK_API_URL")]
    if not channels:
        findings.append(Finding(False, "no channel: set SIGNOFF_SLACK_CHANNEL (or slack.channel in the policy file)"))
    for channel in channels:
        findings.append(await _check_channel(bot, channel))
    if app_token is not None:
        try:
            await bot.apps_connections_open(app_token=app_token)
            findings.append(Finding(True, "Socket Mode works: clicks reach signoff without a public URL"))
        except SlackApiError as exc:
            error = exc.response.get("error")
            findings.append(
                Finding(False, f"the app token was refused ({error}): it needs the connections:write scope")
            )
    elif has_signing_secret:
        findings.append(
            Finding(True, "HTTP mode: set the app's Interactivity Request URL to https://<host>/slack/interactions")
        )
    else:
        findings.append(
            Finding(
                False,
                "clicks cannot reach signoff: set SIGNOFF_SLACK_APP_TOKEN (Socket Mode) "
                "or SIGNOFF_SLACK_SIGNING_SECRET (HTTP)",
            )
        )
    if approvers:
        findings.append(Finding(True, f"approvers: {', '.join(approvers)}"))
    else:
        findings.append(Finding(False, "no approvers: nobody may vote in Slack until the policy sets slack.approvers"))
    return findings


async def _check_channel(bot: AsyncWebClient, channel: str) -> Finding:
    if not channel.startswith(("C", "G")):
        return Finding(True, f"channel {channel}: posting by name works; give its id (C…) to have it checked here")
    try:
        await bot.conversations_info(channel=channel)
    except SlackApiError as exc:
        return Finding(
            False,
            f"channel {channel} cannot be read ({exc.response.get('error')}): invite the bot with /invite @signoff",
        )
    return Finding(True, f"channel {channel} found")

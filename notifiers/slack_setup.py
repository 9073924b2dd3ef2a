"""Setting Slack up: the app manifest to paste, and a check that says what is missing."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

#: channels:history and groups:history let a retry find a post a crashed server made (signoff never reads people's
#: messages: it looks only for its own, by their metadata)
BOT_SCOPES = [
    "chat:write",
    "chat:write.public",
    "usergroups:read",
    "channels:read",
    "groups:read",
    "channels:history",
    "groups:history",
]


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
    """What works and what is missing, all of it at once, in the order a new user would fix it. What needs a
    working bot token (the channels, the app token) is checked only once the bot token works."""
    findings = []
    works = False
    if bot is None:
        findings.append(
            Finding(False, "SIGNOFF_SLACK_BOT_TOKEN is not set: install the app and copy its Bot User OAuth Token")
        )
    else:
        try:
            who = await bot.auth_test()
            findings.append(Finding(True, f"bot token works: {who.get('user')} in {who.get('team')}"))
            works = True
        except SlackApiError as exc:
            error = exc.response.get("error")
            findings.append(Finding(False, f"the bot token was refused ({error}): copy it again from the app"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            findings.append(Finding(False, unreachable(bot.base_url, exc)))
    if not channels:
        findings.append(Finding(False, "no channel: set SIGNOFF_SLACK_CHANNEL (or slack.channel in the policy file)"))
    checked = bot if works else None  # what needs a working bot token is checked only with one
    if checked is not None:
        findings += [await _check_channel(checked, channel) for channel in channels]
    if app_token is not None:
        if checked is not None:
            findings.append(await _check_app_token(checked, app_token))
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


def unreachable(url: str, exc: aiohttp.ClientError | TimeoutError) -> str:
    """A network failure as one sentence for a person (not an exception's repr)."""
    return f"Slack cannot be reached at {url}: {network_reason(exc)}. Check the network, or SIGNOFF_SLACK_API_URL"


def network_reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words: "could not connect to slack.com:443 (connection refused)"."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error
        number = error.errno  # a socket error's; DNS failures have negative numbers
        reason = os.strerror(number) if number is not None and number > 0 else error.strerror or type(error).__name__
        why = f"could not connect to {exc.host}:{exc.port} ({reason.lower()})"
    elif isinstance(exc, TimeoutError):
        why = "it did not answer in time"
    else:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return why


async def _check_app_token(bot: AsyncWebClient, app_token: str) -> Finding:
    try:
        await bot.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        error = exc.response.get("error")
        return Finding(False, f"the app token was refused ({error}): it needs the connections:write scope")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Finding(False, unreachable(bot.base_url, exc))
    return Finding(True, "Socket Mode works: clicks reach signoff without a public URL")


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

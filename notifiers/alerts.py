"""Alert messages to their targets: a Slack channel, the signed webhook, e-mail.

Each sender sends one ``AlertMessage`` (a rule that started firing or resolved); ``DeliveryFailed`` asks for a retry,
``DeliveryRefused`` gives up. The texts are signoff's own (a rule's name and numbers) but for the model and version
names in a ``canary_guard`` message, which an agent registered: those are checked at registration (no spaces, no
``<>&``), shown with control characters as escapes, and Slack gets ``&<>`` as entities whatever the text.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from signoff.notifiers.base import DeliveryFailed
from signoff.notifiers.email import EmailSender
from signoff.notifiers.slack_notifier import _failure as slack_failure
from signoff.notifiers.slack_setup import network_reason
from signoff.notifiers.slack_text import escape
from signoff.notifiers.webhook import post_signed
from signoff.storage.alerts import AlertKind, AlertMessage


class AlertSender(Protocol):
    name: str

    async def send(self, alert: AlertMessage) -> None: ...


def title(alert: AlertMessage) -> str:
    word = "FIRING" if alert.kind is AlertKind.FIRING else "RESOLVED"
    return f"[signoff {'STILL ' if alert.repeat else ''}{word}] {alert.rule}"


def text(alert: AlertMessage) -> str:
    if alert.repeat:
        return f"{title(alert)}: {alert.message} (reminder {alert.repeat}, {alert.at:%Y-%m-%d %H:%M:%S} UTC)"
    return f"{title(alert)}: {alert.message} (since {alert.at:%Y-%m-%d %H:%M:%S} UTC)"


def document(alert: AlertMessage) -> dict[str, Any]:
    return {
        "event": f"alert.{alert.kind.value}",
        "alert": {
            "rule": alert.rule,
            "status": alert.kind.value,
            "message": alert.message,
            "value": alert.value,
            "at": alert.at.isoformat(),
            "episode": alert.episode,
            "repeat": alert.repeat,
        },
    }


class SlackAlerts:
    name = "slack"

    def __init__(self, client: AsyncWebClient, channel: str) -> None:
        self.client = client
        self.channel = channel

    async def send(self, alert: AlertMessage) -> None:
        emoji = ":rotating_light:" if alert.kind is AlertKind.FIRING else ":white_check_mark:"
        try:
            shown = f"{emoji} {escape(text(alert))}"  # no link, mention or date markup can pass
            await self.client.chat_postMessage(channel=self.channel, text=shown, mrkdwn=False)
        except SlackApiError as exc:
            raise slack_failure(exc) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise DeliveryFailed(f"Slack could not be reached: {network_reason(exc)}") from exc


class WebhookAlerts:
    """The same endpoint, secret and signature as the request webhook; the body's ``event`` is ``alert.firing`` or
    ``alert.resolved`` and ``X-Signoff-Delivery`` is ``alert:<message id>`` (the same on a retry)."""

    name = "webhook"

    def __init__(self, url: str, secret: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self.secret = secret
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def send(self, alert: AlertMessage) -> None:
        body = json.dumps(document(alert), sort_keys=True).encode()
        timestamp, delivery = str(int(time.time())), f"alert:{alert.id}"
        await post_signed(self.url, self.secret, self.timeout, body, timestamp, delivery)


class EmailAlerts:
    name = "email"

    def __init__(self, sender: EmailSender) -> None:
        self.sender = sender

    async def send(self, alert: AlertMessage) -> None:
        body = f"{text(alert)}\n\nSee current and recent alerts with: signoff alerts\n"
        await self.sender.send(title(alert), body)

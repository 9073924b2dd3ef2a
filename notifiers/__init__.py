"""Notifier protocol and implementations: console, Slack (out and in), signed webhooks.

The implementations load on first use (``signoff.notifiers.SlackNotifier`` imports slack_sdk and aiohttp then), so a
command that needs none of them, or one submodule (``signoff.notifiers.email``), does not pay for them all."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from signoff.notifiers.base import DeliveryFailed, DeliveryRefused, FanOut, Notifier, members

if TYPE_CHECKING:
    from signoff.notifiers.console import ConsoleNotifier
    from signoff.notifiers.slack_inbound import SlackInteractions
    from signoff.notifiers.slack_notifier import SlackNotifier, web_client
    from signoff.notifiers.slack_transport import SlackHttpEndpoint, socket_mode_client
    from signoff.notifiers.webhook import WebhookNotifier

_HOMES = {
    "ConsoleNotifier": "console",
    "SlackInteractions": "slack_inbound",
    "SlackNotifier": "slack_notifier",
    "web_client": "slack_notifier",
    "SlackHttpEndpoint": "slack_transport",
    "socket_mode_client": "slack_transport",
    "WebhookNotifier": "webhook",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "ConsoleNotifier",
    "DeliveryFailed",
    "DeliveryRefused",
    "FanOut",
    "Notifier",
    "SlackHttpEndpoint",
    "SlackInteractions",
    "SlackNotifier",
    "WebhookNotifier",
    "members",
    "socket_mode_client",
    "web_client",
]

"""Notifier protocol and implementations: console, Slack (out and in), signed webhooks."""

from notifiers.base import DeliveryFailed, FanOut, Notifier
from notifiers.console import ConsoleNotifier
from notifiers.slack_inbound import SlackInteractions
from notifiers.slack_notifier import SlackNotifier, web_client
from notifiers.slack_transport import SlackHttpEndpoint, socket_mode_client
from notifiers.webhook import WebhookNotifier

__all__ = [
    "ConsoleNotifier",
    "DeliveryFailed",
    "FanOut",
    "Notifier",
    "SlackHttpEndpoint",
    "SlackInteractions",
    "SlackNotifier",
    "WebhookNotifier",
    "socket_mode_client",
    "web_client",
]

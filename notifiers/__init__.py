"""Notifier protocol and implementations: console, Slack (out and in), signed webhooks."""

from signoff.notifiers.base import DeliveryFailed, DeliveryRefused, FanOut, Notifier, members
from signoff.notifiers.console import ConsoleNotifier
from signoff.notifiers.slack_inbound import SlackInteractions
from signoff.notifiers.slack_notifier import SlackNotifier, web_client
from signoff.notifiers.slack_transport import SlackHttpEndpoint, socket_mode_client
from signoff.notifiers.webhook import WebhookNotifier

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

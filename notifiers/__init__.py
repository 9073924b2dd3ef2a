"""Notifier protocol and implementations (console now; Slack and webhooks build on the same outbox)."""

from notifiers.base import DeliveryFailed, Notifier
from notifiers.console import ConsoleNotifier

__all__ = ["ConsoleNotifier", "DeliveryFailed", "Notifier"]

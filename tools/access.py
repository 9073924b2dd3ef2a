"""Who is who in the config file: people and every name they go by, bearer tokens and their roles, Slack routing."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from signoff.storage.folding import fold_key
from signoff.tools.typed_toml import Fault, non_empty_strings


class Role(enum.StrEnum):
    AGENT = "agent"  #: calls the agent tools over HTTP, always as its own identity
    REVIEWER = "reviewer"  #: decides requests through the reviewer HTTP API, as its own identity
    #: runs the model control plane over HTTP: the model tools that change models or record telemetry (agent
    #: tokens may only read models), and the agent tools (to follow its changes' approvals), as its own identity
    MODELS = "models"
    METRICS = "metrics"  #: reads GET /metrics (Prometheus), and nothing else

    @property
    def scopes(self) -> tuple[str, ...]:
        """What a token of this role may do: its own role first, then the roles it includes."""
        return (self.value, Role.AGENT.value) if self is Role.MODELS else (self.value,)


SLACK_ID = re.compile(r"[UWS][A-Z0-9]{2,}")
AMOUNT_FIELD = re.compile(r"payload(\.[^.]+)+")


def slack_ids(values: tuple[str, ...], key: str) -> None:
    for index, value in enumerate(values):
        if not SLACK_ID.fullmatch(value):
            raise Fault(
                (key, index),
                f"{value!r} is not a Slack user id (U… or W…) or user group id (S…); in Slack, open the "
                "person's profile, then ⋯ > Copy member ID",
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class SlackRouting:
    channel: str | None = None  #: where review requests are posted; SIGNOFF_SLACK_CHANNEL when unset
    approvers: tuple[str, ...] = ()  #: Slack user ids and user group ids allowed to vote in Slack
    #: the payload field the message shows as the amount (e.g. "payload.amount"); unset, no amount is shown
    amount_field: str | None = None

    def __post_init__(self) -> None:
        slack_ids(self.approvers, "approvers")
        if self.amount_field is not None and not AMOUNT_FIELD.fullmatch(self.amount_field):
            raise Fault(
                ("amount_field",),
                f"{self.amount_field!r} is not a payload field; write payload.<field>, e.g. payload.amount or "
                "payload.invoice.total",
            )
        if self.channel is not None and not self.channel.strip():
            raise Fault(("channel",), "must not be empty; use a channel id (C…) or name (#approvals)")


@dataclass(frozen=True, kw_only=True, slots=True)
class Person:
    """One human and every name they go by, so nobody approves their own request under another name."""

    name: str
    aliases: tuple[str, ...]  #: agent ids they own, their Slack user id, their CLI name

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise Fault(("name",), "must not be empty")
        non_empty_strings(self.aliases, "aliases")


@dataclass(frozen=True, kw_only=True, slots=True)
class Token:
    """A bearer token for the HTTP transport, stored as its SHA-256 (`signoff token new` makes one)."""

    identity: str
    role: Role
    sha256: str

    def __post_init__(self) -> None:
        if not self.identity.strip():
            raise Fault(("identity",), "must not be empty; it is the name the caller acts as")
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise Fault(("sha256",), "must be 64 lowercase hex digits: the SHA-256 that `signoff token new` prints")


@dataclass(frozen=True, kw_only=True, slots=True)
class Auth:
    tokens: tuple[Token, ...] = ()
    agents_see_all: bool = False  #: let agents read every request, not only their own

    def __post_init__(self) -> None:
        digests = [token.sha256 for token in self.tokens]
        for index, digest in enumerate(digests):
            if digest in digests[:index]:
                raise Fault(("tokens", index, "sha256"), "the same token is listed twice")


def person_of(people: tuple[Person, ...], name: str) -> str:
    """The person a name belongs to (by ``[[people]]``), or the name itself; case-insensitive."""
    folded = normal_name(name)
    for person in people:
        if folded in (normal_name(alias) for alias in (person.name, *person.aliases)):
            return normal_name(person.name)
    return folded


def display_name(people: tuple[Person, ...], name: str) -> str:
    """The ``[[people]]`` name that ``name`` is one of (as the config spells it), or ``name`` itself."""
    folded = normal_name(name)
    for person in people:
        if folded in (normal_name(alias) for alias in (person.name, *person.aliases)):
            return person.name
    return name


def normal_name(name: str) -> str:
    """A person's or agent's name as compared: folded as payload keys are (``fold_key``: NFKC, case-folded,
    invisible format characters such as zero-width spaces and bidi marks dropped, whitespace stripped), so
    ``billing\u200b-bot`` is the requester ``billing-bot`` (review R3)."""
    return fold_key(name)

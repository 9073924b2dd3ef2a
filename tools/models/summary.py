"""The summary of a model change's approval request: the server's words first and whole, the agent's reason last.

What the server writes (the change, the telemetry, the canary verdict) comes before the agent's free-text reason,
and only the reason is ever cut to fit. So however the reason is written (a long one, or one padded with characters
Slack escapes into longer entities) the reviewer reads the real evidence before anything the agent wrote, in every
place the summary is shown; a reason written to look like evidence comes after the real evidence, under the agent's
name. The server's words hold no character Slack escapes (names are letters, digits and ``_ . : / @ + -``), so a
summary within ``MAX_SUMMARY_CHARS`` fits Slack's summary block whole and anything Slack cuts is the reason.
"""

from __future__ import annotations

from signoff.storage import InvalidInput

MAX_SUMMARY_CHARS = 1800  #: the most a model change's summary takes, whatever limits.max_summary_chars allows
REASON_LABEL = " The agent's reason:"
CUT = "… (cut)"


def request_summary(facts: str, reason: str, limit: int, label: str = REASON_LABEL) -> str:
    """``facts`` (the server's words) whole, then the agent's reason, cut to the room left within ``limit``.
    Raises InvalidInput when even the facts and a few characters of the reason do not fit."""
    whole = f"{facts}{label} {reason}"
    if len(whole) <= limit:
        return whole
    room = limit - len(facts) - len(label) - 1 - len(CUT)
    if room < 1:
        raise InvalidInput(
            f"the server's evidence for this change takes {len(facts):,} characters and a request's summary may"
            f" take {limit:,} (limits.max_summary_chars, at most {MAX_SUMMARY_CHARS:,} for model changes), so the"
            " reviewers could not be shown it whole and nothing was asked: change fewer versions at once, or ask"
            " the operator to raise limits.max_summary_chars"
        )
    return f"{facts}{label} {reason[:room].rstrip()}{CUT}"


def record_summary(facts: str, reason: str, limit: int) -> str:
    """A change already applied, for the audit log: as ``request_summary``, but never refused (the facts are cut
    at their end if even they do not fit)."""
    try:
        return request_summary(facts, reason, limit, label=" Reason:")
    except InvalidInput:
        return facts[: limit - 1] + "…"

"""The folds the anomaly history is kept under (``storage/folding.py``) are the rules' own (review R7)."""

from __future__ import annotations

import sqlite3
from contextlib import closing

from signoff.storage.folding import fold_action, fold_key, fold_path, history_folds
from signoff.storage.records import ascii_lower
from signoff.tools.approvals.conditions import Unclear, action_glob, resolve
from signoff.tools.approvals.policy import ACTION_PATTERN, PolicyInput


def test_the_history_folds_exactly_as_rules_compare_actions_and_keys() -> None:
    """One definition: an action matches a rule's glob exactly when its fold does, and a payload key a rule reads
    under another spelling (unclear, failing closed) folds to the same history field."""
    for action in ("Refunds.Issue", "REFUNDS.ISSUE", "refunds.issue"):
        assert action_glob(action, ("refunds.issue",)) == "refunds.issue"
        assert fold_action(action) == "refunds.issue"
    for key in ("Amount", " amount", "\uff21mount", "amo\u200bunt"):
        request = PolicyInput(
            action="a",
            summary="s",
            payload={"refund": {key: 1}},
            confidence=None,
            flags=(),
            agent_id=None,
            expires_in_seconds=None,
        )
        assert isinstance(resolve(request, "payload.refund.amount"), Unclear), key
        assert fold_path(f"Refund.{key}") == "refund.amount"


def test_the_migration_renames_only_the_names_whose_fold_differs() -> None:
    assert history_folds(["Pay", "pay", "Pay"], ["amount", "Refund.Amount", "Maß"]) == [
        ("action", "Pay", "pay"),
        ("field", "Maß", "mass"),
        ("field", "Refund.Amount", "refund.amount"),
    ]


def test_an_action_folds_as_the_stores_find_the_requests_of_its_profile() -> None:
    """The stores find an action's approved requests in any case by ASCII lower case (SQLite's ``lower``,
    ``RequestQuery.folded_action``); that is the rules' fold for every character an action may hold, and an action
    with any other character (a long s, which Unicode case folding reads as s) is refused before it is judged."""
    allowed = "".join(chr(c) for c in range(128) if ACTION_PATTERN.fullmatch(chr(c)))
    assert fold_action(allowed) == ascii_lower(allowed)
    with closing(sqlite3.connect(":memory:")) as db:
        assert db.execute("SELECT lower(?)", (allowed,)).fetchone()[0] == ascii_lower(allowed)
    assert fold_action("refund\u017f.issue") == "refunds.issue" and not ACTION_PATTERN.fullmatch("refund\u017f.issue")


def test_every_invisible_character_is_dropped_from_a_key_and_a_name() -> None:
    """Default-ignorable characters outside the format category (review R5) show as nothing, as zero-width spaces do:
    ``billing\\u034f-bot`` is ``billing-bot`` to the requester check, and ``amount\\ufe0f`` is ``amount`` to a rule."""
    for invisible in ("\u200b", "\u202e", "\u034f", "\u115f", "\u3164", "\ufe0f", "\U000e0100", "\u180b", "\uffa0"):
        assert fold_key(f"billing{invisible}-bot") == "billing-bot", repr(invisible)
        assert fold_key(f"Amount{invisible}") == "amount", repr(invisible)
    assert fold_key("naïve") == "naïve" and fold_key("\uff4d\uff41\uff58") == "max"  # what is shown stays (full-width)

"""[redact]: which values a path masks, and what a masked field edited by a person restores."""

from __future__ import annotations

import pytest

from signoff.storage import ConfigError, InvalidInput, Trigger, TriggerKind
from signoff.storage.redaction import MASK, Redaction
from signoff.tools.approvals.policy_config import parse_policy_config

PAYLOAD = {
    "ssn": "123-45-6789",
    "card": {"card_number": "4111111111111111", "holder": "Ann"},
    "backup": {"card_number": 4000, "note": "x"},
    "cards": [{"number": "5500"}, {"number": "5501"}, "loose"],
    "amount": 5,
}


def test_paths_mask_the_values_they_name_at_any_depth_and_nothing_else() -> None:
    redaction = Redaction.of(["payload.ssn", "payload.*.card_number", "payload.cards.*.number", "payload.nope.x"])
    assert redaction.payload(PAYLOAD) == {
        "ssn": MASK,
        "card": {"card_number": MASK, "holder": "Ann"},
        "backup": {"card_number": MASK, "note": "x"},
        "cards": [{"number": MASK}, {"number": MASK}, "loose"],
        "amount": 5,
    }
    assert PAYLOAD["ssn"] == "123-45-6789"  # a copy: the payload itself is untouched
    assert redaction.masks(PAYLOAD) and not redaction.masks({"amount": 5})
    assert Redaction().payload(PAYLOAD) == PAYLOAD and not Redaction()


def test_a_masked_field_a_person_left_alone_keeps_the_value_asked() -> None:
    redaction = Redaction.of(["payload.ssn", "payload.*.card_number"])
    edited = {**redaction.payload(PAYLOAD), "amount": 4}
    edited["card"] = {"card_number": MASK, "holder": "Bob"}
    restored = redaction.restore(edited, PAYLOAD)
    assert restored["ssn"] == "123-45-6789" and restored["card"] == {"card_number": "4111111111111111", "holder": "Bob"}
    assert restored["amount"] == 4
    changed = redaction.restore({**edited, "ssn": "000-00-0000"}, PAYLOAD)
    assert changed["ssn"] == "000-00-0000"  # a value the person typed is theirs


@pytest.mark.parametrize("path", ["ssn", "payload", "payload.", "payload..x", "action.x", "payload. "])
def test_a_path_outside_the_payload_is_a_config_error_naming_it(path: str) -> None:
    with pytest.raises(ConfigError, match=r"redact\.paths\[0\]: .* is not a payload path; write payload.<field>"):
        parse_policy_config(f'[redact]\npaths = ["{path}"]\n')
    assert parse_policy_config('[redact]\npaths = ["payload.ssn"]\n').redact.redaction.paths == (("ssn",),)


def test_an_item_holding_a_masked_value_is_known_by_its_place_and_cannot_move_or_change() -> None:
    redaction = Redaction.of(["payload.cards.*.number"])
    payload = {"cards": [{"number": "A", "amount": 1}, {"number": "B", "amount": 1000}]}
    shown = redaction.payload(payload)
    untouched = {"cards": [dict(item) for item in shown["cards"]], "note": "ok"}
    assert redaction.restore(untouched, payload) == {**payload, "note": "ok"}
    typed = {"cards": [{"number": "C", "amount": 5}, shown["cards"][1]]}  # a value typed in full is the reviewer's
    assert redaction.restore(typed, payload) == {"cards": [{"number": "C", "amount": 5}, payload["cards"][1]]}
    for edited in (
        {"cards": [shown["cards"][1]]},  # the first card dropped: the second's mask now sits at the first's place
        {"cards": [shown["cards"][1], shown["cards"][0]]},  # swapped
        {"cards": [{"number": MASK, "amount": 2}, shown["cards"][1]]},  # the amount next to a hidden number changed
        {"cards": [*shown["cards"], {"number": MASK, "amount": 3}]},  # a mask copied into a new item
    ):
        with pytest.raises(InvalidInput, match=r"payload\.cards: an item holding a \[redacted\] value must stay"):
            redaction.restore(edited, payload)


def test_triggers_are_scrubbed_of_every_written_form_of_a_masked_value_and_keep_the_rest() -> None:
    redaction = Redaction.of(["payload.card", "payload.pin"])
    payload = {"card": "4111111111111111" * 5, "pin": 4321, "amount": 43210}
    long = '"' + payload["card"][:58] + "…"
    triggers = (
        Trigger(kind=TriggerKind.RULE, detail=f"payload.card exists (was {long})"),
        Trigger(kind=TriggerKind.RULE, detail="payload.pin gt 1000 (was 4321); payload.amount = 43210"),
    )
    shown = redaction.triggers(triggers, payload)
    assert shown[0].detail == "payload.card exists (was [redacted])"
    assert shown[1].detail == "payload.pin gt 1000 (was [redacted]); payload.amount = 43210"
    assert Redaction().triggers(triggers, payload) == triggers
    huge = Redaction.of(["payload.n"]).triggers(
        (Trigger(kind=TriggerKind.RULE, detail=f"n is {10**400}"),), {"n": 10**400}
    )
    assert huge[0].detail == "n is [redacted]"  # an int no float can hold is scrubbed too, not a crash

"""[redact]: which values a path masks, and what a masked field edited by a person restores."""

from __future__ import annotations

import pytest

from signoff.storage import ConfigError
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

"""The policy file: parsing into typed models, and errors that point at the right line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from signoff.storage import ConfigError, Priority
from signoff.tools.approvals.policy_config import (
    Condition,
    Op,
    Outcome,
    PolicyConfig,
    Rule,
    load_policy_config,
    parse_policy_config,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "signoff.example.toml"

RULES = """\
confidence_threshold = 0.9

[[rules]]
name = "first"
outcome = "review"

[[rules]]
name = "second"
action = ["payments.*", "refunds.*"]
when = [
  { path = "payload.amount", op = "gt", value = 10 },
  { path = "summary", op = "regex", value = "urgent" },
]
outcome = "review"
"""


def error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_policy_config(text, "signoff.toml")
    return str(caught.value)


def test_empty_file_gives_the_defaults() -> None:
    config = parse_policy_config("")
    assert config == PolicyConfig()
    assert config.confidence_threshold == 0.85
    assert config.default_outcome is Outcome.REVIEW
    assert (config.default_expires_in_seconds, config.max_expires_in_seconds) == (3600, 604800)
    assert config.limits.max_payload_bytes == 65536
    assert config.anomaly.enabled is False
    assert (config.anomaly.min_samples, config.anomaly.threshold) == (20, 3.5)
    assert config.fairness.flags == ()
    assert config.rules == ()


def test_rules_are_parsed_into_typed_models() -> None:
    config = parse_policy_config(
        """
        [[rules]]
        name = "large transfers"
        action = "payments.*"
        when = [{ path = "payload.amount", op = "gt", value = 10000 }]
        outcome = "review"
        approvals_required = 2
        expires_in_seconds = 900
        priority = "high"
        """
    )
    (rule,) = config.rules
    assert rule.action == ("payments.*",)  # a single glob becomes a one-element tuple
    assert rule.when == (Condition(path="payload.amount", op=Op.GT, value=10000),)
    assert rule.outcome is Outcome.REVIEW
    assert (rule.approvals_required, rule.expires_in_seconds, rule.priority) == (2, 900, Priority.HIGH)


def test_in_values_become_a_tuple_and_regex_is_compiled() -> None:
    config = parse_policy_config(RULES)
    amount, summary = config.rules[1].when
    assert config.rules[1].action == ("payments.*", "refunds.*")
    assert summary.pattern == re.compile("urgent")
    assert amount.value == 10


def test_integer_threshold_is_accepted_as_a_number() -> None:
    assert parse_policy_config("confidence_threshold = 1").confidence_threshold == 1.0


def test_unknown_operator_names_file_line_key_and_choices() -> None:
    text = RULES.replace('op = "gt"', 'op = "gtt"')
    assert error(text) == (
        "signoff.toml line 11: rules[1].when[0].op: unknown operator 'gtt'; "
        "use one of eq, ne, gt, gte, lt, lte, in, regex, exists"
    )


def test_fault_in_the_second_condition_points_at_its_own_line() -> None:
    text = RULES.replace('value = "urgent"', "value = 5")
    assert error(text).startswith("signoff.toml line 12: rules[1].when[1].value: regex needs a string")


def test_unknown_key_suggests_the_nearest() -> None:
    text = RULES.replace('name = "second"', 'name = "second"\noutcom = "review"')
    message = error(text)
    assert message.startswith("signoff.toml line 9: rules[1].outcom: unknown key 'outcom' (did you mean 'outcome'?)")
    assert "allowed keys: name, outcome, action, when" in message


def test_unknown_top_level_table() -> None:
    assert error("confidence_threshold = 0.5\n\n[limit]\nmax_flags = 3\n").startswith(
        "signoff.toml line 3: limit: unknown key 'limit' (did you mean 'limits'?)"
    )


def test_wrong_type_names_the_type_and_line() -> None:
    text = '[limits]\nmax_flags = 3\nmax_summary_chars = "lots"\n'
    assert error(text) == ("signoff.toml line 3: limits.max_summary_chars: must be an integer, not the string 'lots'")


def test_boolean_is_not_a_number() -> None:
    assert "must be a number, not the boolean true" in error("confidence_threshold = true")


def test_duplicate_rule_name_points_at_the_second() -> None:
    text = RULES.replace('name = "second"', 'name = "first"')
    assert error(text) == "signoff.toml line 8: rules[1].name: duplicate rule name 'first'; use unique names"


def test_toml_syntax_error_keeps_tomllib_position() -> None:
    message = error('confidence_threshold = 0.9\noutcome = "review\n')
    assert message.startswith("signoff.toml: not valid TOML: ")
    assert "line 2" in message


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("confidence_threshold = 1.5", 1, "confidence_threshold: must be between 0 and 1, not 1.5"),
        ("confidence_threshold = -0.1", 1, "confidence_threshold: must be between 0 and 1"),
        ('\ndefault_outcome = "reject"', 2, 'default_outcome: cannot be "reject"; use "approve" or "review"'),
        ('default_outcome = "maybe"', 1, "default_outcome: unknown outcome 'maybe'; use one of approve, review"),
        ("default_expires_in_seconds = 0", 1, "default_expires_in_seconds: must be between 1 and 604,800"),
        ("[limits]\nmax_flags = 0", 2, "limits.max_flags: must be at least 1, not 0"),
        ("[anomaly]\nthreshold = 0", 2, "anomaly.threshold: must be a number above 0"),
        ("[anomaly]\nthreshold = nan", 2, "anomaly.threshold: must be a number above 0"),
        ("[anomaly]\nenabled = 1", 2, "anomaly.enabled: must be true or false, not the integer 1"),
        ('[fairness]\nflags = ["a", ""]', 2, "fairness.flags[1]: must not be an empty string"),
        ("limits = 5", 1, "limits: must be a table, not the integer 5"),
        ("[[rules]]\nname = 'x'", 1, "rules[0]: missing required key 'outcome' (one of approve, review, reject)"),
        ("[[rules]]\noutcome = 'review'", 1, "rules[0]: missing required key 'name'"),
        ("[[rules]]\nname = ' '\noutcome = 'review'", 2, "rules[0].name: must not be empty"),
        ("[[rules]]\nname = 'x'\noutcome = 'deny'", 3, "rules[0].outcome: unknown outcome 'deny'"),
        ("[[rules]]\nname = 'x'\noutcome = 'review'\npriority = 'high!'", 4, "unknown priority 'high!'"),
        ("[[rules]]\nname = 'x'\noutcome = 'review'\naction = 5", 4, "rules[0].action: must be an array"),
        (
            "[[rules]]\nname = 'x'\noutcome = 'review'\naction = ['']",
            4,
            "rules[0].action[0]: must not be an empty string",
        ),
        ("[[rules]]\nname = 'x'\noutcome = 'review'\napprovals_required = 0", 4, "must be at least 1, not 0"),
        (
            "[[rules]]\nname = 'x'\noutcome = 'approve'\napprovals_required = 2",
            4,
            'rules[0].approvals_required: applies only to rules with outcome = "review"',
        ),
        (
            "[[rules]]\nname = 'x'\noutcome = 'review'\nexpires_in_seconds = 604801",
            4,
            "rules[0].expires_in_seconds: must be between 1 and 604,800 (max_expires_in_seconds), not 604,801",
        ),
        ("[[rules]]\nname = 'x'\noutcome = 'review'\nwhen = {}", 4, "rules[0].when: must be an array"),
    ],
)
def test_invalid_values(text: str, line: int, expected: str) -> None:
    message = error(text)
    assert message.startswith(f"signoff.toml line {line}: ")
    assert expected in message


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ('path = "amount", op = "eq", value = 1', "when[0].path: unknown path 'amount'; use action, summary"),
        ('path = "payload.", op = "eq", value = 1', "unknown path 'payload.'"),
        ('path = "summary.x", op = "eq", value = 1', "unknown path 'summary.x'"),
        ('path = "payload.a", op = "gt", value = "10"', "gt needs a finite number, not the string '10'"),
        ('path = "payload.a", op = "lte", value = true', "lte needs a finite number, not the boolean true"),
        ('path = "payload.a", op = "gte", value = inf', "gte needs a finite number, not the float inf"),
        ('path = "payload.a", op = "in", value = "a"', "in needs a non-empty array of values"),
        ('path = "payload.a", op = "in", value = []', "in needs a non-empty array of values"),
        ('path = "payload.a", op = "in", value = [[1]]', "in needs a non-empty array of values"),
        ('path = "payload.a", op = "regex", value = "("', "invalid regular expression '('"),
        ('path = "payload.a", op = "exists", value = "yes"', "exists needs true or false"),
        ('path = "payload.a", op = "eq", value = [1, 2]', "eq needs a string, number or boolean, not an array"),
        ('path = "payload.a", op = "ne", value = {}', "ne needs a string, number or boolean, not a table"),
        ('path = "payload.a", op = "eq"', "when[0]: missing required key 'value'"),
        ('path = "payload.a", op = "eq", value = 1, note = "x"', "when[0].note: unknown key"),
    ],
)
def test_invalid_conditions(condition: str, expected: str) -> None:
    text = f"[[rules]]\nname = 'x'\noutcome = 'review'\nwhen = [\n  {{ {condition} }},\n]\n"
    message = error(text)
    assert message.startswith("signoff.toml line 5: rules[0].")
    assert expected in message


def test_array_of_tables_conditions_are_located() -> None:
    text = """\
[[rules]]
name = "x"
outcome = "review"

[[rules.when]]
path = "payload.a"
op = "eq"
value = 1

[[rules.when]]
path = "payload.b"
op = "nope"
value = 1
"""
    assert error(text).startswith("signoff.toml line 12: rules[0].when[1].op: unknown operator 'nope'")


def test_line_survives_strings_that_look_like_syntax() -> None:
    text = """\
# [[rules]] in a comment
[[rules]]
name = "a \\" [[rules]] name = 'x'"
description = '''
op = "gtt"
'''
outcome = "review"
"""
    assert error(text).startswith("signoff.toml line 4: rules[0].description: unknown key")


def test_dotted_keys_are_located() -> None:
    assert error("limits.max_flags = 1\nlimits.max_summary_chars = 0\n").startswith(
        "signoff.toml line 2: limits.max_summary_chars: must be at least 1"
    )


def test_programmatic_construction_is_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"^value: gt needs a finite number"):
        Condition(path="payload.a", op=Op.GT, value="1")
    with pytest.raises(ConfigError, match=r"rules\[1\]\.name: duplicate rule name 'a'"):
        PolicyConfig(rules=(Rule(name="a", outcome=Outcome.REVIEW), Rule(name="a", outcome=Outcome.REJECT)))


def test_example_config_parses_and_shows_every_feature() -> None:
    config = load_policy_config(EXAMPLE)
    assert config.anomaly.enabled and config.fairness.flags and config.schemas
    outcomes = {rule.outcome for rule in config.rules}
    assert outcomes == {Outcome.REJECT, Outcome.REVIEW, Outcome.APPROVE}
    assert any(rule.approvals_required and rule.expires_in_seconds and rule.priority for rule in config.rules)
    ops = {condition.op for rule in config.rules for condition in rule.when}
    assert {Op.EQ, Op.GT, Op.IN, Op.REGEX, Op.EXISTS} <= ops


def test_load_reports_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="cannot read policy file"):
        load_policy_config(tmp_path)  # a directory
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_policy_config(binary)


def test_load_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "signoff.toml"
    path.write_text('\n\ndefault_outcome = "reject"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))} line 3: default_outcome"):
        load_policy_config(path)


SCHEMAS = """\
[[schemas]]
action = "payments.*"
schema = { type = "object", required = ["amount"], properties = { amount = { type = "number" } } }

[[schemas]]
action = ["email.send"]
[schemas.schema]
type = "object"
required = ["to"]
additionalProperties = false
[schemas.schema.properties.to]
type = "string"
maxLength = 254
"""


def test_action_schemas_are_parsed_and_checked() -> None:
    config = parse_policy_config(SCHEMAS)
    assert [s.action for s in config.schemas] == [("payments.*",), ("email.send",)]
    assert config.schemas[1].schema["properties"]["to"]["maxLength"] == 254
    assert config.schemas[0].validator.is_valid({"amount": 5})
    assert not config.schemas[0].validator.is_valid({"amount": "5"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            SCHEMAS.replace("maxLength = 254", "maxLength = -1"),
            "signoff.toml line 13: schemas[1].schema.properties.to.maxLength: not a valid JSON Schema: "
            "-1 is less than the minimum of 0",
        ),
        (
            SCHEMAS.replace('type = "number"', 'type = "numbr"'),
            "signoff.toml line 3: schemas[0].schema.properties.amount.type: not a valid JSON Schema: 'numbr' is not",
        ),
        (
            SCHEMAS.replace('required = ["to"]', 'required = "to"'),
            "signoff.toml line 9: schemas[1].schema.required: not a valid JSON Schema: 'to' is not of type 'array'",
        ),
        (
            SCHEMAS.replace('type = "string"', '"$ref" = "https://example.com/s.json"'),
            "signoff.toml line 12: schemas[1].schema.properties.to.$ref: 'https://example.com/s.json' is outside",
        ),
        (
            SCHEMAS.replace('type = "object"\nrequired', '"$schema" = "https://example.com/x"\nrequired'),
            "signoff.toml line 8: schemas[1].schema.$schema: unknown JSON Schema dialect 'https://example.com/x'",
        ),
        ('[[schemas]]\naction = "a"\nschema = "{}"\n', "signoff.toml line 3: schemas[0].schema: must be a table"),
        ("[[schemas]]\naction = []\nschema = {}\n", "signoff.toml line 2: schemas[0].action: must name at least"),
        ("[[schemas]]\nschema = {}\n", "signoff.toml line 1: schemas[0]: missing required key 'action'"),
    ],
)
def test_invalid_action_schemas_name_the_line_and_the_key(text: str, expected: str) -> None:
    assert error(text).startswith(expected), error(text)

"""Masking payload fields on their way out of the database (``[redact]`` in the policy file).

A path is ``payload.<key>.<key>…``; a ``*`` part matches every key of an object or every item of a list at that
level (``payload.*.card_number``, ``payload.cards.*.number``). A key matches a path's part under the fold policy
rules judge keys with (``storage.folding.fold_key``: case, surrounding spaces, zero-width characters, Unicode form),
so ``"SSN"``, ``"ssn "`` and ``"s\u200bsn"`` are all ``payload.ssn``. The value found at a path is replaced by
``MASK``, whatever it was; a path that is not in the payload changes nothing.

Only what is shown is masked: the stored payload, its digest, the audit chain and the receipts keep the full payload.
What is shown with a value masked shows no digest of the payload either (``request`` leaves ``payload_sha256``
empty): an unsalted SHA-256 of a payload whose other fields are shown lets anyone test guesses of the masked value
(a 6-digit PIN falls in a second). Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from signoff.storage.canonical import canonical_json
from signoff.storage.errors import InvalidInput
from signoff.storage.folding import fold_key
from signoff.storage.records import ApprovalRequest, JsonObject, Trigger

MASK = "[redacted]"
ANY = "*"
#: the digests an audit event may record; shown as null where a payload they hash has a masked value
DIGESTS = ("payload_sha256", "approved_payload_sha256")


@dataclass(frozen=True, slots=True)
class Redaction:
    """The paths to mask; an empty one masks nothing."""

    paths: tuple[tuple[str, ...], ...] = ()  #: each path's parts after ``payload``, folded (``fold_key``)

    @classmethod
    def of(cls, paths: Iterable[str]) -> Redaction:
        """From ``payload.…`` strings; ValueError naming what is wrong with one."""
        parsed = []
        for path in paths:
            head, _, rest = path.partition(".")
            parts = tuple(rest.split(".")) if rest else ()
            if head != "payload" or not parts or any(not part.strip() for part in parts):
                raise ValueError(
                    f"{path!r} is not a payload path; write payload.<field>, e.g. payload.ssn, payload.*.card_number"
                )
            parsed.append(tuple(fold_key(part) for part in parts))
        return cls(tuple(parsed))

    def __bool__(self) -> bool:
        return bool(self.paths)

    def payload(self, payload: JsonObject) -> dict[str, Any]:
        """A copy of ``payload`` with every value at a path replaced by ``MASK``."""
        masked: Any = dict(payload)
        for parts in self.paths:
            masked = _mask(masked, parts)
        return dict(masked)

    def request(self, request: ApprovalRequest) -> ApprovalRequest:
        """The request as it may be shown: its payload (and a payload people approved) masked, its triggers
        scrubbed of the masked values, and, when anything was masked, its ``payload_sha256`` empty (so is its
        ``approved_sha256``): a digest of the full payload next to its other fields would give the masked value away
        to anyone who tries guesses. Whatever shows a request shown so shows no digest where it finds none."""
        if not self.paths:
            return request
        approved = request.approved_payload
        payload = self.payload(request.payload)
        shown_approved = self.payload(approved) if approved is not None else None
        masked = payload != dict(request.payload) or (approved is not None and shown_approved != dict(approved))
        return dataclasses.replace(
            request,
            payload=payload,
            payload_sha256="" if masked else request.payload_sha256,
            approved_payload=shown_approved,
            triggers=self.triggers(request.triggers, request.payload),
        )

    def triggers(self, triggers: Iterable[Trigger], payload: JsonObject) -> tuple[Trigger, ...]:
        """Triggers as they may be shown: a rule or check that tested a masked field quotes the value it saw
        (``payload.card_number exists (was "4111…")``), so every way a trigger writes a masked value of ``payload``
        (as JSON, cut to 60 characters as details cut it, or as the bare text) reads ``[redacted]``. A number is
        replaced wherever it stands alone, so a detail may lose an unrelated equal number: more hidden, never less."""
        scrub = _scrubber(self._secrets(payload))
        return (
            tuple(triggers)
            if scrub is None
            else tuple(dataclasses.replace(t, detail=scrub(t.detail)) for t in triggers)
        )

    def _secrets(self, payload: Any) -> list[Any]:
        found: list[Any] = []
        for parts in self.paths:
            _collect(payload, parts, found)
        return found

    def event_data(self, data: JsonObject, payload: JsonObject | None = None) -> dict[str, Any]:
        """An audit event's data as it may be shown: the payloads it records (``payload`` of ``created``,
        ``approved_payload`` of ``decided``) masked, the trigger details it records scrubbed of the masked values
        of ``payload`` (the request's; ``created`` carries its own), and the digests it records (``payload_sha256``,
        ``approved_payload_sha256``) null when ``payload`` or a payload the event records has a masked value.
        The chain itself keeps them whole."""
        shown = dict(data)
        if isinstance(data.get("payload"), Mapping) and payload is None:
            payload = data["payload"]
        masked = payload is not None and self.masks(payload)
        for key in ("payload", "approved_payload"):
            if isinstance(shown.get(key), Mapping):
                shown[key] = self.payload(shown[key])
                masked = masked or shown[key] != dict(data[key])
        if masked:
            for key in DIGESTS:
                if key in shown:
                    shown[key] = None
        scrub = _scrubber(self._secrets(payload)) if payload is not None else None
        if scrub is not None and isinstance(shown.get("triggers"), list):
            shown["triggers"] = [
                {**t, "detail": scrub(t["detail"])}
                if isinstance(t, Mapping) and isinstance(t.get("detail"), str)
                else t
                for t in shown["triggers"]
            ]
        return shown

    def masks(self, payload: JsonObject) -> bool:
        """Whether anything in ``payload`` is masked."""
        return bool(self.paths) and self.payload(payload) != dict(payload)

    def restore(self, edited: Mapping[str, Any], original: JsonObject) -> dict[str, Any]:
        """A payload a person edited from the masked view, with every value still ``MASK`` where the original had
        a masked value put back: what they did not touch stays as it was asked.

        A masked value in a list is known only by its place, so an item that still holds one must be the item shown
        at that place, unchanged, in a list of the same length; InvalidInput otherwise (a reviewer who dropped the
        first of two cards would else approve the first card's number with the second's amount)."""
        shown = self.payload(original)
        restored: Any = dict(edited)
        for parts in self.paths:
            restored = _restore(restored, original, shown, parts, "payload")
        return dict(restored)


def _at(part: str, key: Any) -> bool:
    """Whether a payload ``key`` is at a path's (folded) ``part``: any key for ``*``, else one that folds to it, as
    policy rules read keys (a rule on ``payload.ssn`` judges ``"SSN"``; so it is masked)."""
    return part == ANY or (isinstance(key, str) and fold_key(key) == part)


def _mask(node: Any, parts: tuple[str, ...]) -> Any:
    if not parts:
        return MASK
    head, rest = parts[0], parts[1:]
    if isinstance(node, Mapping):
        return {k: _mask(v, rest) if _at(head, k) else v for k, v in node.items()}
    if isinstance(node, list) and head == ANY:
        return [_mask(v, rest) for v in node]
    return node


def _restore(node: Any, original: Any, shown: Any, parts: tuple[str, ...], where: str) -> Any:
    if not parts:
        return original if node == MASK else node
    head, rest = parts[0], parts[1:]
    if isinstance(node, Mapping) and isinstance(original, Mapping):
        return {
            k: _restore(v, original[k], shown[k], rest, f"{where}.{k}") if _at(head, k) and k in original else v
            for k, v in node.items()
        }
    if isinstance(node, list) and isinstance(original, list) and head == ANY:
        holding = [i for i, v in enumerate(node) if _holds_mask(v, rest)]
        if holding and (len(node) != len(original) or any(node[i] != shown[i] for i in holding)):
            raise InvalidInput(
                f"{where}: an item holding a [redacted] value must stay where it was shown and as it was shown, in a"
                " list of the same length (the value is known only by its place); to change that list, reveal the"
                " payload and edit the full values"
            )
        return [_restore(v, original[i], shown[i], rest, f"{where}[{i}]") for i, v in enumerate(node)]
    return node


def _holds_mask(node: Any, parts: tuple[str, ...]) -> bool:
    if not parts:
        return bool(node == MASK)
    head, rest = parts[0], parts[1:]
    if isinstance(node, Mapping):
        return any(_holds_mask(v, rest) for k, v in node.items() if _at(head, k))
    if isinstance(node, list) and head == ANY:
        return any(_holds_mask(v, rest) for v in node)
    return False


def _collect(node: Any, parts: tuple[str, ...], found: list[Any]) -> None:
    if not parts:
        found.append(node)
        return
    head, rest = parts[0], parts[1:]
    if isinstance(node, Mapping):
        for key, value in node.items():
            if _at(head, key):
                _collect(value, rest, found)
    elif isinstance(node, list) and head == ANY:
        for value in node:
            _collect(value, rest, found)


_DETAIL_LIMIT = 60  #: how long a value quoted in a trigger detail may be (``conditions.show``)


def _scrubber(secrets: list[Any]) -> Any:
    """A function that replaces every written form of ``secrets`` in a text with ``MASK``; None if there are none."""
    forms: set[str] = set()
    for value in secrets:
        if isinstance(value, Mapping | list):
            for inner in _leaves(value):
                forms.update(_forms(inner))
        forms.update(_forms(value))
    forms.discard("")
    if not forms:
        return None
    pattern = re.compile(
        "|".join(
            rf"(?<![\w.]){re.escape(f)}(?![\w])" if f[0].isalnum() or f[0] in "-+" else re.escape(f)
            for f in sorted(forms, key=len, reverse=True)
        )
    )
    return lambda text: pattern.sub(MASK, text)


def _forms(value: Any) -> set[str]:
    try:
        text = canonical_json(value)
    except (TypeError, ValueError):
        text = repr(value)
    forms = {text, text[: _DETAIL_LIMIT - 1] + "…"} if len(text) > _DETAIL_LIMIT else {text}
    if isinstance(value, str) and len(value.strip()) >= 3:
        forms.add(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        forms.update({repr(value), f"{value:,}"})
        if isinstance(value, float) or abs(value) <= 2**1023:  # beyond, an int has no float form (OverflowError)
            forms.add(f"{value:g}")
    return forms


def _leaves(node: Any) -> Iterable[Any]:
    if isinstance(node, Mapping):
        for value in node.values():
            yield from _leaves(value)
    elif isinstance(node, list):
        for value in node:
            yield from _leaves(value)
    else:
        yield node

"""Masking payload fields on their way out of the database (``[redact]`` in the policy file).

A path is ``payload.<key>.<key>…``; a ``*`` part matches every key of an object or every item of a list at that
level (``payload.*.card_number``, ``payload.cards.*.number``). The value found at a path is replaced by ``MASK``,
whatever it was; a path that is not in the payload changes nothing. Only what is shown is masked: the stored
payload, its digest, the audit chain and the receipts keep the full payload. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from signoff.storage.errors import InvalidInput
from signoff.storage.records import ApprovalRequest, JsonObject

MASK = "[redacted]"
ANY = "*"


@dataclass(frozen=True, slots=True)
class Redaction:
    """The paths to mask; an empty one masks nothing."""

    paths: tuple[tuple[str, ...], ...] = ()  #: each path's parts after ``payload``

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
            parsed.append(parts)
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
        """The request as it may be shown: its payload (and a payload people approved) masked."""
        if not self.paths:
            return request
        approved = request.approved_payload
        return dataclasses.replace(
            request,
            payload=self.payload(request.payload),
            approved_payload=self.payload(approved) if approved is not None else None,
        )

    def event_data(self, data: JsonObject) -> dict[str, Any]:
        """An audit event's data as it may be shown: the payloads it records (``payload`` of ``created``,
        ``approved_payload`` of ``decided``) masked. The chain itself keeps them whole."""
        shown = dict(data)
        for key in ("payload", "approved_payload"):
            if isinstance(shown.get(key), Mapping):
                shown[key] = self.payload(shown[key])
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


def _mask(node: Any, parts: tuple[str, ...]) -> Any:
    if not parts:
        return MASK
    head, rest = parts[0], parts[1:]
    if isinstance(node, Mapping):
        return {k: _mask(v, rest) if head in (ANY, k) else v for k, v in node.items()}
    if isinstance(node, list) and head == ANY:
        return [_mask(v, rest) for v in node]
    return node


def _restore(node: Any, original: Any, shown: Any, parts: tuple[str, ...], where: str) -> Any:
    if not parts:
        return original if node == MASK else node
    head, rest = parts[0], parts[1:]
    if isinstance(node, Mapping) and isinstance(original, Mapping):
        return {
            k: _restore(v, original[k], shown[k], rest, f"{where}.{k}") if head in (ANY, k) and k in original else v
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
        return any(_holds_mask(v, rest) for k, v in node.items() if head in (ANY, k))
    if isinstance(node, list) and head == ANY:
        return any(_holds_mask(v, rest) for v in node)
    return False

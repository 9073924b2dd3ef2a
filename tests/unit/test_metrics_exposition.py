"""The /metrics text: what others wrote (action and model names) stays inert, bounded, and cannot forge samples."""

from __future__ import annotations

import unicodedata

from prometheus_client.parser import text_string_to_metric_families

from signoff.server.metrics import MAX_ACTIONS, MAX_LABEL_CHARS, OTHER, ProcessMetrics, exposition, read_snapshot
from signoff.storage import Inference
from signoff.storage.approvals.memory import MemoryStore
from signoff.storage.models.memory import MemoryModelStore
from tests.factories import T0, add

HOSTILE = [
    'x"} 1e9\nsignoff_pending_requests{priority="urgent"} 1e9\n#',  # an attempt to end the sample and forge another
    "<script>alert(1)</script>",
    "\x1b[2J\x1b]0;owned\x07cleared",
    "pay\u202eusd.exe",  # a bidi override
    "a" * 1_000_000,
]


def requests_samples(text: str) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "signoff_requests_total"
    ]


async def test_hostile_names_are_inert_bounded_and_forge_nothing() -> None:
    store, models = MemoryStore(), MemoryModelStore()
    for action in HOSTILE:
        await add(store, action=action)
    await models.record_inferences([Inference(model=HOSTILE[2], version=HOSTILE[3], at=T0, latency_ms=5.0, ok=True)])
    text = exposition(await read_snapshot(store, models, T0), ProcessMetrics()).decode()
    samples = requests_samples(text)
    assert len(samples) == len(HOSTILE) and all(v == 1 for _, v in samples)
    pending = [
        s for f in text_string_to_metric_families(text) for s in f.samples if s.name == "signoff_pending_requests"
    ]
    assert [(s.labels, s.value) for s in pending] == [({"priority": "normal"}, len(HOSTILE))]  # nothing forged
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for label in sample.labels.values():
                assert len(label) <= MAX_LABEL_CHARS
                assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in label), label
    assert "<script>" in text  # shown as written: Prometheus and Grafana render label values as text


async def test_actions_beyond_the_limit_are_summed_under_other() -> None:
    store = MemoryStore()
    for n in range(MAX_ACTIONS + 20):
        await add(store, action=f"action.{n:04d}")
    await add(store, action="action.0000")  # the busiest is always shown
    samples = requests_samples(exposition(await read_snapshot(store, None, T0)).decode())
    by_action = {labels["action"]: v for labels, v in samples}
    assert len(by_action) == MAX_ACTIONS + 1 and by_action["action.0000"] == 2
    assert by_action[OTHER] == 20 and sum(by_action.values()) == MAX_ACTIONS + 21

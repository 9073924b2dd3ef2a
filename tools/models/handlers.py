"""The model control plane's MCP tools: validate, call ModelService, turn domain errors into ToolError.

Nothing here approves anything: promotions and traffic increases become approval requests that people decide.
Over authenticated HTTP, the tools that change a model or record telemetry need a ``models`` token and act as its
identity; the read-only tools (list, get, resolve, stats, canary analysis, history) are open to agent tokens too:
they change nothing, and what they show is fed only by ``models`` identities and people's decisions.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from signoff.tools.access import Role
from signoff.tools.app_state import READ_ONLY, AppState, domain_errors
from signoff.tools.models.service import ModelService, Overview
from signoff.tools.models.telemetry import MAX_BATCH, MAX_WINDOW_SECONDS, Report
from signoff.tools.models.views import (
    CanaryAnalysis,
    ChangeResult,
    ModelHistory,
    ModelList,
    ModelStats,
    ModelView,
    RecordResult,
    ResolvedModel,
    VersionView,
)
from signoff.tools.wire import WireModel

ModelName = Annotated[str, Field(min_length=1, max_length=128, description="The model's name, e.g. 'fraud-scorer'")]
Version = Annotated[str, Field(min_length=1, max_length=128, description="A version of the model, e.g. 'v2'")]
Reason = Annotated[str, Field(min_length=1, max_length=1000, description="Why; shown to reviewers and in the history")]
AgentId = Annotated[str | None, Field(description="Your agent's stable name; recorded as who asked")]
WindowSeconds = Annotated[
    int, Field(ge=60, le=MAX_WINDOW_SECONDS, description="How far back to look, in seconds (whole minutes)")
]
LatencyMs = Annotated[float, Field(ge=0, description="How long the inference took, in milliseconds")]
Ok = Annotated[bool, Field(description="False if the inference failed (error, timeout, invalid output)")]
Confidence = Annotated[float | None, Field(ge=0, le=1, description="The model's confidence in its answer, 0 to 1")]
DecisionId = Annotated[str | None, Field(max_length=100, description="The decision_id resolve_model returned")]

logger = logging.getLogger(__name__)

WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)


class InferenceItem(BaseModel):
    name: ModelName
    version: Version
    latency_ms: LatencyMs
    ok: Ok
    confidence: Confidence = None
    decision_id: DecisionId = None


class RegisteredVersion(WireModel):
    model: str
    version: VersionView
    created: bool = Field(description="False when this was a retry with the same idempotency_key")
    message: str


def _models(ctx: Context[AppState]) -> ModelService:
    models = ctx.request_context.lifespan_context.models
    if models is None:
        raise ToolError("the model control plane is not enabled on this server")
    return models


def _next_step(name: str, version: str, view: ModelView) -> str:
    """What to do after registering: the first version is promoted; a later one starts as a canary."""
    if view.production is None:
        return (
            f"{name} {version} is registered and serves no traffic. {name} has no production version yet:"
            f" call promote_model to ask a person to put {version} in production."
        )
    return (
        f"{name} {version} is registered and serves no traffic. Call set_traffic to start a canary beside"
        f" {view.production}, or promote_model to ask a person to replace it."
    )


def _operator(tool: str) -> str | None:
    """The identity a state-changing model tool acts as: the token's (None over stdio or without auth).
    An authenticated caller without the ``models`` role is refused."""
    token = get_access_token()
    if token is None:
        return None
    if Role.MODELS.value not in token.scopes:
        raise ToolError(
            f'{tool} changes a model or its telemetry and needs a token with role = "models"; {token.client_id}'
            f" has a {token.scopes[0] if token.scopes else 'scope-less'} token. The read-only model tools"
            " (get_model, list_models, resolve_model, model_stats, analyze_canary, model_history) remain open to it"
        )
    return token.client_id


def register_model_tools(mcp: MCPServer[AppState]) -> None:
    @mcp.tool(title="Register a model version", annotations=WRITES.model_copy(update={"idempotent_hint": True}))
    async def register_model_version(
        ctx: Context[AppState],
        name: ModelName,
        version: Version,
        endpoint: Annotated[str, Field(min_length=1, max_length=2000, description="Where to call this version")],
        metadata: Annotated[dict[str, Any], Field(description="Free-form facts, e.g. {'framework': 'onnx'}")] = {},  # noqa: B006
        lineage: Annotated[
            dict[str, Any], Field(description="Where it came from, e.g. {'parent': 'v1', 'dataset': '2026-04'}")
        ] = {},  # noqa: B006
        idempotency_key: Annotated[
            str | None, Field(max_length=200, description="Retry-safe: the same key returns the first registration")
        ] = None,
        agent_id: AgentId = None,
    ) -> RegisteredVersion:
        """Register a new version of a model (the model is created with its first version). It serves no traffic.

        Next: set_traffic to send it a small canary share (needs a human's approval), or promote_model.
        Versions are immutable: registering an existing version again is an error unless it is a retry
        with the same idempotency_key and the same details.
        """
        caller = _operator("register_model_version")
        models = _models(ctx)
        async with domain_errors():
            _, created = await models.register(
                name,
                version,
                endpoint,
                metadata=metadata,
                lineage=lineage,
                agent_id=caller or agent_id,  # an authenticated caller cannot speak for another
                idempotency_key=idempotency_key,
            )
            view = ModelView.of(await models.overview(name))
        registered = next(v for v in view.versions if v.version == version)
        return RegisteredVersion(
            model=name,
            version=registered,
            created=created,
            message=_next_step(name, version, view),
        )

    @mcp.tool(title="List models", annotations=READ_ONLY)
    async def list_models(ctx: Context[AppState]) -> ModelList:
        """Every model with its versions, aliases (production, previous), traffic split and pending changes."""
        models = _models(ctx)
        async with domain_errors():
            return ModelList(models=[ModelView.of(o) for o in await models.overviews()])

    @mcp.tool(title="Get a model", annotations=READ_ONLY)
    async def get_model(ctx: Context[AppState], name: ModelName) -> ModelView:
        """One model: versions, aliases, the traffic split (with each arm's buckets), the rollout status and
        changes waiting for approval. Approved changes are applied before this answers."""
        models = _models(ctx)
        async with domain_errors():
            overview: Overview = await models.overview(name)
        return ModelView.of(overview)

    @mcp.tool(title="Resolve a model version", annotations=READ_ONLY.model_copy(update={"idempotent_hint": False}))
    async def resolve_model(
        ctx: Context[AppState],
        name: ModelName,
        routing_key: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=1000,
                description="A stable key (user id, session id): the same key always gets the same version while the"
                " split is unchanged, and widening a canary never moves a key back. Omit for a random pick.",
            ),
        ] = None,
    ) -> ResolvedModel:
        """Which version (and endpoint) to call for one inference, by the model's current traffic split.

        Call it before every inference; it is fast. Afterwards report the outcome with record_inference,
        passing the version and decision_id returned here.
        """
        models = _models(ctx)
        async with domain_errors():
            return ResolvedModel.of(await models.telemetry.resolve(name, routing_key))

    @mcp.tool(title="Record an inference", annotations=WRITES)
    async def record_inference(
        ctx: Context[AppState],
        name: ModelName,
        version: Version,
        latency_ms: LatencyMs,
        ok: Ok,
        confidence: Confidence = None,
        decision_id: DecisionId = None,
    ) -> RecordResult:
        """Report how one inference went (after resolve_model), for model_stats and analyze_canary.
        Many at once: use record_inferences."""
        caller = _operator("record_inference")
        report = Report(
            model=name, version=version, latency_ms=latency_ms, ok=ok, confidence=confidence, decision_id=decision_id
        )
        models = _models(ctx)
        async with domain_errors():
            return RecordResult(recorded=await _record(models, [report], caller))

    @mcp.tool(title="Record inferences", annotations=WRITES)
    async def record_inferences(
        ctx: Context[AppState],
        items: Annotated[list[InferenceItem], Field(min_length=1, max_length=MAX_BATCH)],
    ) -> RecordResult:
        """Report a batch of inferences (up to 10,000), stored together in one transaction: all or none.
        An invalid item is an error naming its index, and nothing is recorded."""
        caller = _operator("record_inferences")
        reports = [
            Report(
                model=i.name,
                version=i.version,
                latency_ms=i.latency_ms,
                ok=i.ok,
                confidence=i.confidence,
                decision_id=i.decision_id,
            )
            for i in items
        ]
        models = _models(ctx)
        async with domain_errors():
            return RecordResult(recorded=await _record(models, reports, caller))

    @mcp.tool(title="Model statistics", annotations=READ_ONLY)
    async def model_stats(ctx: Context[AppState], name: ModelName, window_seconds: WindowSeconds = 3600) -> ModelStats:
        """Per version over the window: count, error rate with a 95% interval, latency mean and p50/p95/p99,
        mean confidence, whether there are enough samples (100) to judge, and people's verdicts on the requests
        that named the version (how many went to people, the share they rejected or approved with changes)."""
        models = _models(ctx)
        async with domain_errors():
            report = await models.telemetry.stats(name, window_seconds)
            outcomes = await ctx.request_context.lifespan_context.service.store.human_outcomes(
                name, report.since, report.until
            )
            return ModelStats.of(report, outcomes)

    @mcp.tool(title="Analyze a canary", annotations=READ_ONLY)
    async def analyze_canary(
        ctx: Context[AppState],
        name: ModelName,
        baseline: Annotated[str, Field(min_length=1, description="The version to compare against, usually production")],
        candidate: Annotated[str, Field(min_length=1, description="The canary version")],
        min_samples: Annotated[int, Field(ge=1, le=1_000_000, description="Inferences each side needs")] = 100,
        window_seconds: WindowSeconds = 3600,
    ) -> CanaryAnalysis:
        """Is the candidate worse than the baseline? Returns pass, fail, inconclusive or insufficient_data, with
        per-metric detail: error rate by a two-proportion z-test, latency by a Mann-Whitney U test.

        fail: take its traffic away (set_traffic or rollback_model). pass: reasonable to widen or promote.
        The server's guard also checks running canaries and returns a failing one's traffic to production."""
        models = _models(ctx)
        async with domain_errors():
            analysis = await models.telemetry.analyze(name, baseline, candidate, min_samples, window_seconds)
            outcomes = await ctx.request_context.lifespan_context.service.store.human_outcomes(
                name, analysis.since, analysis.until
            )
            return CanaryAnalysis.of(analysis, outcomes)

    @mcp.tool(title="Set a model's traffic split", annotations=WRITES)
    async def set_traffic(
        ctx: Context[AppState],
        name: ModelName,
        weights: Annotated[
            dict[str, float],
            Field(description="Percent per version, summing to 100, e.g. {'v1': 90, 'v2': 10}; left out = 0"),
        ],
        reason: Reason,
        agent_id: AgentId = None,
    ) -> ChangeResult:
        """Change the traffic split. Giving any non-production version more traffic than now needs a human:
        it becomes an approval request (status pending) and applies when approved. Only moving traffic back
        to production (e.g. a canary to 0) applies at once, unless another caller's change is waiting for approval.
        Refused while the model has no production version: promote_model first, then start a canary beside it."""
        caller = _operator("set_traffic")
        models = _models(ctx)
        async with domain_errors():
            return ChangeResult.of(
                await models.set_traffic(name, weights, reason, caller or agent_id, authenticated=caller is not None)
            )

    @mcp.tool(title="Promote a version to production", annotations=WRITES)
    async def promote_model(
        ctx: Context[AppState], name: ModelName, version: Version, reason: Reason, agent_id: AgentId = None
    ) -> ChangeResult:
        """Ask to make a version production (it takes all traffic; the old production becomes 'previous').
        Always an approval request whose summary carries the stats and the canary verdict; it applies when
        a human approves it. Wait with get_status(request_id, wait_seconds)."""
        caller = _operator("promote_model")
        models = _models(ctx)
        async with domain_errors():
            return ChangeResult.of(await models.promote(name, version, reason, caller or agent_id))

    @mcp.tool(
        title="Roll a model back",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
        ),
    )
    async def rollback_model(
        ctx: Context[AppState], name: ModelName, reason: Reason, agent_id: AgentId = None
    ) -> ChangeResult:
        """Return at once, without approval, to the last approved production version: if a canary has traffic,
        all traffic goes back to production; otherwise production goes back to the 'previous' version.
        Pending approval requests for the model are cancelled. Call it once per problem."""
        caller = _operator("rollback_model")
        models = _models(ctx)
        async with domain_errors():
            return ChangeResult.of(await models.rollback(name, reason, caller or agent_id))

    @mcp.tool(title="Model history", annotations=READ_ONLY)
    async def model_history(
        ctx: Context[AppState],
        name: ModelName,
        at: Annotated[
            datetime | None, Field(description="A moment (ISO 8601 with timezone): also say what served then")
        ] = None,
    ) -> ModelHistory:
        """Every change to the model, oldest first: who asked, when, why, the approval request and how it was
        decided. With 'at', also which version was production and the traffic split at that moment."""
        if at is not None and at.tzinfo is None:
            raise ToolError("at needs a timezone, e.g. 2026-01-31T09:00:00Z")
        models = _models(ctx)
        async with domain_errors():
            return ModelHistory.of(await models.history(name, at))


async def _record(models: ModelService, reports: list[Report], caller: str | None) -> int:
    recorded = await models.telemetry.record(reports)
    if caller is not None:  # telemetry is stored in aggregate; who fed it is in the log
        logger.info(
            "inferences recorded",
            extra={"recorded_by": caller, "count": recorded, "models": sorted({r.model for r in reports})},
        )
    return recorded

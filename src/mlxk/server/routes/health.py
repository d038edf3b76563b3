"""GET /health (no key, no model work: answers while models generate) and GET /v1/mlxk/stats."""

from __future__ import annotations

from fastapi import APIRouter, Request

from mlxk.server.protocol import Health, Stats
from mlxk.server.service import state_of

router = APIRouter()


@router.get("/health", response_model=Health)
async def health() -> Health:
    return Health()


@router.get("/v1/mlxk/stats", response_model=Stats)
async def stats(request: Request) -> Stats:
    """mlxk: counters (cancelled requests, generated tokens, loaded models) for operators."""
    state = state_of(request)
    s = state.engine.stats
    return Stats(
        admitted=state.admission.admitted,
        rejected_busy=state.admission.rejected,
        cancelled=s.cancelled,
        completed=s.completed,
        failed=s.failed,
        generated_tokens=s.generated_tokens,
        active_sequences=state.engine.active_sequences,
        in_flight=state.admission.in_flight,
        max_queue=state.admission.limit,
        memory_budget_bytes=state.pool.budget,
        memory_reserved_bytes=state.pool.reserved_bytes,
        loaded=state.pool.snapshot(),
    )

"""GET /v1/models: every runnable model, with capabilities, backend and context length."""

from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import APIRouter, Request

from mlxk.config import Settings
from mlxk.ops.catalog import ModelRecord, list_models
from mlxk.server.protocol import ModelCard, ModelList
from mlxk.server.routes import ERRORS
from mlxk.server.service import state_of

router = APIRouter()


def model_id(rec: ModelRecord) -> str:
    """The name clients use: org/name for cache models, the folder name for workspaces."""
    m = rec.model
    return m.name if m.cached else (m.display_name or m.path.name)


def _created(rec: ModelRecord) -> int:
    if not rec.last_modified:
        return 0
    return int(datetime.strptime(rec.last_modified, "%Y-%m-%dT%H:%M:%S%z").timestamp())


def cards(settings: Settings, loaded: dict[str, bool]) -> list[ModelCard]:
    out = []
    for rec in list_models(settings):
        if not rec.runnable:
            continue
        name = model_id(rec)
        backend = rec.runtime.backend.value if rec.runtime.backend else None
        out.append(
            ModelCard(
                id=name,
                created=_created(rec),
                capabilities=list(rec.info.capabilities),
                backend=backend,
                context_length=rec.info.context_length,
                loaded=name in loaded,
                pinned=loaded.get(name, False),
            )
        )
    return out


@router.get("/v1/models", response_model=ModelList, responses=ERRORS)
async def models(request: Request) -> ModelList:
    state = state_of(request)
    found = await asyncio.to_thread(cards, state.settings, state.pool.loaded_names())
    return ModelList(data=found)

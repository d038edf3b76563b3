"""What every route shares: the server's state, admission (the bounded queue), model lookup
through the CLI's own pipeline (ops/run.prepare), and loading through the pool on the engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request

from mlxk.backends.memory import MemoryEstimate, available_bytes, estimate
from mlxk.backends.platform import PlatformInfo, setup_platform
from mlxk.config import Settings
from mlxk.ops.run import PreparedRun, RunOptions, modality_of, prepare, prepare_by_kind
from mlxk.server.engine import Engine
from mlxk.server.errors import ApiError, QueueFullError
from mlxk.server.options import ServerOptions
from mlxk.server.pool import Loaded, ModelKey, ModelPool
from mlxk.store.resolve import is_explicit_path
from mlxk.types import Backend

log = logging.getLogger("mlxk.server")


@dataclass
class Admission:
    """At most ``limit`` requests in flight (running or waiting for the engine)."""

    limit: int
    retry_after: int
    in_flight: int = 0
    admitted: int = 0
    rejected: int = 0

    def enter(self) -> None:
        if self.in_flight >= self.limit:
            self.rejected += 1
            raise QueueFullError(self.retry_after, self.limit)
        self.in_flight += 1
        self.admitted += 1

    def leave(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)


@dataclass
class ServerState:
    settings: Settings
    options: ServerOptions
    platform: PlatformInfo
    pool: ModelPool
    engine: Engine
    admission: Admission
    pinned: list[PreparedRun] = field(default_factory=list)


def build_state(settings: Settings, options: ServerOptions) -> ServerState:
    plat = setup_platform(settings)  # before anything imports mlx
    budget = options.memory_budget or available_bytes(plat.device, settings.memory_limit_bytes)
    pool = ModelPool(budget, options.idle_ttl)
    engine = Engine(pool, max_batch=options.max_batch)
    admission = Admission(options.max_queue, options.retry_after)
    return ServerState(settings, options, plat, pool, engine, admission)


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.mlxk
    return state


# -- finding the model ---------------------------------------------------------------------------


def _check_spec(spec: str) -> None:
    # Clients name models; they do not get to point the server at directories on its disk.
    if is_explicit_path(spec) or "\\" in spec or "\x00" in spec:
        raise ApiError(
            404,
            f"model '{spec[:96]}' not found (give a model name, not a path)",
            param="model",
            code="model_not_found",
        )


async def prepare_run(state: ServerState, spec: str, opts: RunOptions) -> PreparedRun:
    """resolve → probe/health/runtime → select backend: the CLI's pipeline, off the loop."""
    _check_spec(spec)
    return await asyncio.to_thread(prepare, state.settings, spec, opts)


def prepare_any(settings: Settings, spec: str) -> PreparedRun:
    """For --model: the backend the model's own kind calls for (speech, embeddings, text)."""
    return prepare_by_kind(settings, spec)


async def prepare_embeddings(state: ServerState, spec: str) -> PreparedRun:
    _check_spec(spec)
    opts = RunOptions(embeddings=True)
    return await asyncio.to_thread(prepare, state.settings, spec, opts)


# -- loading -------------------------------------------------------------------------------------


def memory_estimate(state: ServerState, prep: PreparedRun) -> MemoryEstimate:
    return estimate(
        prep.record.model.path,
        prep.record.info,
        device=state.platform.device,
        modality=modality_of(prep),
        override=state.settings.memory_limit_bytes,
    )


def _loader(state: ServerState, backend: Backend, path: Path) -> Callable[[], Any]:
    f32 = state.platform.device == "cpu"  # fp16/bf16 compute is slow on MLX's CPU backend
    if backend is Backend.MLX_LM:
        from mlxk.backends.text import load_text

        return lambda: load_text(path, float32_activations=f32)
    if backend is Backend.MLX_VLM:
        from mlxk.backends.vision import load_vision

        limit = state.settings.max_image_bytes
        return lambda: load_vision(path, float32_activations=f32, max_image_bytes=limit)
    if backend is Backend.MLX_AUDIO:
        from mlxk.backends.speech import load_whisper

        return lambda: load_whisper(path, state.platform)
    from mlxk.backends.embeddings import load_embeddings

    return lambda: load_embeddings(path)


def acquire_now(state: ServerState, prep: PreparedRun, *, pin: bool = False) -> Loaded:
    """On the engine thread: the loaded model (loaded after the budget check when needed)."""
    key = ModelKey(prep.backend, prep.record.model.path)
    loader = _loader(state, prep.backend, key.path)
    return state.pool.acquire(key, prep.name, lambda: memory_estimate(state, prep), loader, pin=pin)


async def acquire(state: ServerState, prep: PreparedRun) -> Loaded:
    return await state.engine.call(lambda: acquire_now(state, prep))


async def release(state: ServerState, entry: Loaded) -> None:
    await state.engine.call(lambda: state.pool.release(entry))


async def run_with_model(state: ServerState, prep: PreparedRun, work: Callable[[Any], Any]) -> Any:
    """Load if needed and run ``work(runner)`` on the engine thread, holding the model."""

    def job() -> Any:
        entry = acquire_now(state, prep)
        try:
            return work(entry.runner)
        finally:
            state.pool.release(entry)

    return await state.engine.call(job)

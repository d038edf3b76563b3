"""What every route shares: the server's state (one ops.run.Runtime: the engine and its
budgeted pool), admission (the bounded queue), model lookup through the CLI's own pipeline
(ops/run.prepare), and the asyncio side of the engine's sinks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from mlxk.backends.engine import Engine
from mlxk.backends.memory import available_bytes
from mlxk.backends.platform import PlatformInfo, setup_platform
from mlxk.backends.pool import ModelPool
from mlxk.backends.select import Inputs
from mlxk.config import Settings
from mlxk.ops.run import (
    Embedded,
    PreparedRun,
    RunOptions,
    Runtime,
    prepare,
    prepare_by_kind,
    prepare_for,
    start_embeddings,
)
from mlxk.server.errors import ApiError, QueueFullError
from mlxk.server.options import ServerOptions
from mlxk.store.resolve import is_explicit_path

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
    runtime: Runtime
    admission: Admission
    pinned: list[PreparedRun] = field(default_factory=list)
    live_sessions: int = 0  # open Realtime transcription sessions

    @property
    def platform(self) -> PlatformInfo:
        plat: PlatformInfo = self.runtime.platform
        return plat

    @property
    def pool(self) -> ModelPool:
        return self.runtime.pool

    @property
    def engine(self) -> Engine:
        return self.runtime.engine


def build_state(settings: Settings, options: ServerOptions) -> ServerState:
    plat = setup_platform(settings)  # before anything imports mlx
    budget = options.memory_budget or available_bytes(plat.device, settings.memory_limit_bytes)
    pool = ModelPool(budget, options.idle_ttl)
    rt = Runtime.create(settings, pool, max_batch=options.max_batch, max_tokens=options.max_tokens)
    admission = Admission(options.max_queue, options.retry_after)
    return ServerState(settings, options, rt, admission)


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.mlxk
    return state


class AsyncSink:
    """The engine's line back to one request: thread-safe puts into an asyncio queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.cancelled = threading.Event()

    def put(self, event: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the loop is closed: the server is shutting down
            self.cancelled.set()

    def cancel(self) -> None:
        self.cancelled.set()


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


async def prepare_inputs(state: ServerState, spec: str, inputs: Inputs) -> PreparedRun:
    """The same, for a request that says what it sends instead of sending it yet."""
    _check_spec(spec)
    return await asyncio.to_thread(prepare_for, state.settings, spec, inputs)


def prepare_any(settings: Settings, spec: str) -> PreparedRun:
    """For --model: the backend the model's own kind calls for (speech, embeddings, text)."""
    return prepare_by_kind(settings, spec)


async def prepare_embeddings(state: ServerState, spec: str) -> PreparedRun:
    _check_spec(spec)
    opts = RunOptions(embeddings=True)
    return await asyncio.to_thread(prepare, state.settings, spec, opts)


async def embed(
    state: ServerState, prep: PreparedRun, inputs: list[str] | list[list[int]],
    dimensions: int | None,
) -> Embedded:  # fmt: skip
    """Vectors from the engine thread, the model held while they are computed."""
    sink = AsyncSink(asyncio.get_running_loop())
    start_embeddings(state.runtime, prep, inputs, sink, dimensions=dimensions)
    result = await sink.queue.get()
    if isinstance(result, BaseException):
        raise result
    done: Embedded = result
    return done

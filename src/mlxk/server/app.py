"""The FastAPI app factory and `serve` (uvicorn)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from functools import partial

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from mlxk import __version__
from mlxk.config import Settings
from mlxk.ops.run import PreparedRun, pin
from mlxk.server.errors import install_handlers
from mlxk.server.middleware import ApiKey, BodyLimit, HostCheck, RequestId
from mlxk.server.options import (
    DEFAULT_CORS_REGEX,
    ServerOptions,
    check_bind,
    max_request_bytes,
    validate,
)
from mlxk.server.routes import audio, chat, completions, embeddings, health, models, realtime, ui
from mlxk.server.service import ServerState, build_state, prepare_any

log = logging.getLogger("mlxk.server")


def _lifespan(state: ServerState) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.engine.start()
        for prep in state.pinned:  # --model: loaded before the first request, never evicted
            await asyncio.to_thread(state.engine.call, partial(pin, state.runtime, prep))
            log.info("pinned %s", prep.name)
        try:
            yield
        finally:
            state.engine.stop()

    return lifespan


def create_app(
    settings: Settings, options: ServerOptions, pinned: list[PreparedRun] | None = None
) -> FastAPI:
    """Build the app; nothing is loaded until the lifespan starts (pinned models first)."""
    state = build_state(settings, options)
    state.pinned = list(pinned or [])
    app = FastAPI(
        title="mlxk",
        version=__version__,
        lifespan=_lifespan(state),
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.mlxk = state
    install_handlers(app)
    for module in (health, models, chat, completions, audio, embeddings, realtime):
        app.include_router(module.router)
    # add_middleware wraps: the last added is the outermost.
    app.add_middleware(BodyLimit, limit=max_request_bytes(settings))
    app.add_middleware(ApiKey, key=options.api_key)
    app.add_middleware(ui.WebUi)  # the page at / (routes/ui.py): public, so outside the key
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(options.cors_origins),
        allow_origin_regex=None if options.cors_origins else DEFAULT_CORS_REGEX,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        expose_headers=["X-Request-ID", "Retry-After"],
    )
    app.add_middleware(HostCheck, allowed=options.host_allowlist())
    app.add_middleware(RequestId)
    return app


def prepare_pinned(settings: Settings, options: ServerOptions) -> list[PreparedRun]:
    """Resolve every --model before binding: a typo fails now, not at the first request."""
    return [prepare_any(settings, spec) for spec in options.models]


def serve(settings: Settings, options: ServerOptions) -> int:
    """Run until SIGINT/SIGTERM; uvicorn stops accepting, in-flight work gets
    ``graceful_timeout`` seconds, then the engine cancels the rest and unloads."""
    import uvicorn

    validate(options)
    warning = check_bind(options)
    if warning:
        sys.stderr.write(warning + "\n")
    logging.basicConfig(
        level=options.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    app = create_app(settings, options, prepare_pinned(settings, options))
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_level=options.log_level,
        timeout_graceful_shutdown=max(1, round(options.graceful_timeout)),
        server_header=False,
        proxy_headers=False,
        # above the Realtime session's own 15 MiB per append, so an oversized append gets
        # an error event instead of a dropped connection
        ws_max_size=24 * 1024 * 1024,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    with _quiet_signals() as received:
        server.run()
    if received:
        log.info("stopped by %s", ", ".join(signal.Signals(s).name for s in received))
    return 0 if server.started else 1


@contextmanager
def _quiet_signals() -> Iterator[list[int]]:
    """uvicorn handles SIGINT/SIGTERM (stop accepting, drain, shut down) and then re-raises
    the signal to the handler that was there before it. Ours only notes it, so a requested,
    clean shutdown ends with exit status 0 instead of dying by the signal afterwards."""
    received: list[int] = []
    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda num, _frame: received.append(num)) for sig in wanted}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

"""serve: the OpenAI-compatible server (src/mlxk/server)."""

from __future__ import annotations

import argparse

from mlxk.cli.commands import CommandResult, CommandSpec
from mlxk.config import Settings


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="MODEL",
        help="preload and pin a model (repeatable)",
    )
    p.add_argument(
        "--api-key",
        help="require 'Authorization: Bearer KEY' on every route "
        "but /health (needed for a non-loopback --host)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without --api-key (prints a warning)",
    )
    p.add_argument("--max-tokens", type=int, default=4096, help="ceiling per request")
    p.add_argument(
        "--max-queue",
        type=int,
        default=64,
        help="requests in flight before new ones get 503 + Retry-After",
    )
    p.add_argument(
        "--idle-ttl",
        type=float,
        default=600.0,
        help="seconds before an unused unpinned model is unloaded (0: never)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allowed browser origin (repeatable; default: localhost origins)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST",
        help="extra Host header value to accept (repeatable)",
    )
    p.add_argument(
        "--memory-budget",
        type=float,
        metavar="GB",
        help="memory for all loaded models (default: MLXK_MEMORY_LIMIT or free memory)",
    )
    p.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )


def _serve(args: argparse.Namespace, settings: Settings) -> CommandResult:
    from mlxk.server.app import serve
    from mlxk.server.options import ServerOptions

    budget = int(args.memory_budget * 1024**3) if args.memory_budget else None
    options = ServerOptions(
        host=args.host,
        port=args.port,
        models=tuple(args.model),
        api_key=args.api_key,
        insecure=args.insecure,
        max_tokens=args.max_tokens,
        max_queue=args.max_queue,
        idle_ttl=args.idle_ttl,
        cors_origins=tuple(args.cors_origin),
        allowed_hosts=tuple(args.allowed_host),
        log_level=args.log_level,
        memory_budget=budget,
    )
    code = serve(settings, options)
    return CommandResult({"host": args.host, "port": args.port}, lambda: None, code)


COMMANDS = {
    "serve": CommandSpec(
        "OpenAI-compatible server for text, vision, audio and embeddings", _serve_args, _serve
    ),
}

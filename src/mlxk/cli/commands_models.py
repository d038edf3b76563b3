"""import / convert / clone: commands that create managed workspaces."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mlxk.cli.commands import CommandResult, CommandSpec, err, out
from mlxk.config import Settings


@contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr, or nothing when not on a terminal / in --json mode."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TimeRemainingColumn(), transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield update


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=Path, help="a .gguf file, or a faster-whisper folder / model.bin")
    p.add_argument("dst", nargs="?", help="target workspace (default: $MLXK_WORKSPACE_HOME/<name>)")
    p.add_argument(
        "--part", action="append", type=Path, default=[], metavar="FILE",
        help="a further model.bin.partN kept in another folder (repeatable)",
    )  # fmt: skip
    p.add_argument("--quantize", type=int, choices=(4, 8), help="quantize after import (GGUF)")
    p.add_argument("--q-group-size", type=int, default=64, help="quantization group size")


def _import(args: argparse.Namespace, settings: Settings) -> CommandResult:
    from mlxk.ops.imports import import_model

    with progress_bar("import", not getattr(args, "json", False)) as progress:
        res = import_model(
            settings, args.path, args.dst, extra_parts=args.part, quantize=args.quantize,
            q_group_size=args.q_group_size, progress=progress,
        )  # fmt: skip
    data = {
        "source": res.source,
        "target": str(res.target),
        "format": res.format,
        "name": res.name,
        "source_sha256": res.source_sha256,
        "details": res.details,
    }
    return CommandResult(data, lambda: out(f"import: {res.source} → {res.target} ({res.format})"))


def _convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="source model (workspace path, or a cached model)")
    p.add_argument("dst", help="new workspace directory (must not exist)")
    p.add_argument("--quantize", type=int, metavar="BITS", help="2, 3, 4, 6 or 8")
    p.add_argument("--q-group-size", type=int, default=64, help="quantization group size")
    p.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), help="cast weights")
    p.add_argument("--repair-index", action="store_true", help="rebuild the safetensors index")


def _convert(args: argparse.Namespace, settings: Settings) -> CommandResult:
    from mlxk.ops.convert import convert_model

    res = convert_model(
        settings, args.src, args.dst, quantize=args.quantize, q_group_size=args.q_group_size,
        dtype=args.dtype, repair_index=args.repair_index,
    )  # fmt: skip
    data = {
        "source": res.source,
        "target": str(res.target),
        "mode": res.mode,
        "health_check": True,
        "health_status": "healthy" if res.health.healthy else "unhealthy",
        "health_reason": res.health.reason,
        "warning": res.warning,
        "bits": res.bits,
        "group_size": res.group_size,
        "content_hash": res.content_hash,
    }

    def human() -> None:
        out(f"convert: {res.source} → {res.target}")
        out(f"Mode: {res.mode}")
        if res.warning:
            err(f"⚠ {res.warning}")
        mark = "✓" if res.health.healthy else "✗"
        out(f"{mark} Health check: {res.health.reason}")

    return CommandResult(data, human, 0 if res.health.healthy else 1)


def _clone_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="cached or hub model (name, fragment, org/name@rev)")
    p.add_argument("dst", nargs="?", help="target directory (default: $MLXK_WORKSPACE_HOME/<name>)")


def _clone(args: argparse.Namespace, settings: Settings) -> CommandResult:
    from mlxk.ops.hub.clone import clone_any

    with progress_bar(f"clone {args.model}", not getattr(args, "json", False)) as progress:
        res = clone_any(settings, args.model, args.dst, progress=progress)
    data = {
        "model": args.model,
        "clone_status": "success",
        "message": f"Cloned to {res.target}",
        "target_dir": str(res.target),
        "health_check": True,
        "health": "healthy" if res.health.healthy else "unhealthy",
        "health_reason": res.health.reason,
        "content_hash": res.content_hash,
        "source_revision": getattr(res, "commit", None),
    }
    state = "✓ healthy" if res.health.healthy else f"⚠ unhealthy: {res.health.reason}"
    return CommandResult(data, lambda: out(f"clone: {args.model} → {res.target} ({state})"))


COMMANDS = {
    "import": CommandSpec("import a GGUF or faster-whisper model as an MLX workspace", _import_args, _import),
    "convert": CommandSpec("quantize, cast or repair a model into a new workspace", _convert_args, _convert),
    "clone": CommandSpec("copy a cached or hub model into a managed workspace", _clone_args, _clone),
}  # fmt: skip

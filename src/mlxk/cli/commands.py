"""The command registry: each command adds its arguments and runs one op.

Handlers return a CommandResult (JSON data + a human renderer); main.py does the printing of
envelopes and the mapping of errors, once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlxk.config import Settings


@dataclass
class CommandResult:
    data: Any
    human: Callable[[], None] | None = None
    exit_code: int = 0


@dataclass(frozen=True)
class CommandSpec:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Settings], CommandResult]


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def err(line: str) -> None:
    sys.stderr.write(line + "\n")


# -- version -----------------------------------------------------------------------------


def _version_args(p: argparse.ArgumentParser) -> None:
    pass


def _version(args: argparse.Namespace, settings: Settings) -> CommandResult:
    from mlxk import JSON_API_SPEC_VERSION, __version__
    from mlxk.ops.system import system_report

    prog = "mlx-run" if sys.argv and sys.argv[0].endswith("mlx-run") else "mlxk"
    data: dict[str, Any] = {
        "cli_version": __version__,
        "json_api_spec_version": JSON_API_SPEC_VERSION,
    }
    if getattr(args, "json", False):
        data["system"] = system_report(settings)
    return CommandResult(data, lambda: out(f"{prog} {__version__}"))


# -- list / show / health -------------------------------------------------------------------


def _list_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", help="substring of a name, or a ./path prefix")
    p.add_argument("--all", action="store_true", help="show every model, not only runnable ones")
    p.add_argument("--health", action="store_true", help="add health columns")
    p.add_argument("--verbose", "-v", action="store_true", help="more columns, full names")


def _list(args: argparse.Namespace, settings: Settings) -> CommandResult:
    from mlxk.formats.human import list_table, warning_lines
    from mlxk.formats.models import model_object, warning_objects
    from mlxk.ops.catalog import catalog

    cat = catalog(settings, args.pattern)
    objects = [model_object(r) for r in cat.records]
    data = {"models": objects, "count": len(objects), "warnings": warning_objects(cat.warnings)}

    def human() -> None:
        for line in warning_lines(cat.warnings):
            err(line)
        out(list_table(cat.records, show_all=args.all, health=args.health, verbose=args.verbose))

    return CommandResult(data, human)


def _show_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="name, fuzzy fragment, name@rev or path")
    p.add_argument("--files", action="store_true", help="list the model's files")
    p.add_argument("--config", action="store_true", help="print config.json")
    p.add_argument("--recalc-hash", action="store_true", help="recompute a workspace's hash")


def _show(args: argparse.Namespace, settings: Settings) -> CommandResult:
    from mlxk.formats.human import show_lines
    from mlxk.formats.models import show_object
    from mlxk.ops.catalog import show_model
    from mlxk.ops.workspaces import refresh_sentinel_hash
    from mlxk.store.probe import ModelFiles

    res = show_model(settings, args.model, files=args.files, config=args.config)
    if args.recalc_hash and res.record.sentinel is not None:
        refresh_sentinel_hash(res.record.model.path)
        res = show_model(settings, args.model, files=args.files, config=args.config)
        res = type(res)(res.record, res.files, res.config, hash_updated=True)
    cfg = ModelFiles.read(res.record.model.path).config if res.record.model.path.is_dir() else None
    data = show_object(res, cfg)
    return CommandResult(data, lambda: out("\n".join(show_lines(data))))


def _health_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", help="a model, fragment or path (default: all)")


def _health(args: argparse.Namespace, settings: Settings) -> CommandResult:
    from mlxk.formats.human import warning_lines
    from mlxk.formats.models import warning_objects
    from mlxk.ops.catalog import health_models

    res = health_models(settings, args.pattern)
    good = [
        {"name": n, "status": "healthy", "reason": h.reason} for n, h in res.entries if h.healthy
    ]
    bad = [
        {"name": n, "status": "unhealthy", "reason": h.reason}
        for n, h in res.entries
        if not h.healthy
    ]
    summary = {"total": len(res.entries), "healthy_count": len(good), "unhealthy_count": len(bad)}
    warnings = warning_objects(res.warnings)
    data = {"healthy": good, "unhealthy": bad, "summary": summary, "warnings": warnings}

    def human() -> None:
        for line in warning_lines(res.warnings):
            err(line)
        if len(res.entries) != 1:
            out(f"Summary: total {summary['total']}, healthy {len(good)}, unhealthy {len(bad)}")
        for n, h in res.entries:
            out(f"{'healthy  ' if h.healthy else 'unhealthy'} {n} — {h.reason}")

    return CommandResult(data, human)


# -- rm ----------------------------------------------------------------------------------------


def _rm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="cached model (name@rev deletes only that snapshot)")
    p.add_argument("-f", "--force", action="store_true", help="no confirmation; ignore locks")


def _rm(args: argparse.Namespace, settings: Settings) -> CommandResult:
    from mlxk.ops.remove import remove_model

    confirm = None
    if sys.stdin.isatty() and not getattr(args, "json", False):

        def confirm(question: str) -> bool:
            err(f"{question} [y/N]: ")
            return sys.stdin.readline().strip().lower() in ("y", "yes")

    res = remove_model(settings, args.model, force=args.force, confirm=confirm)
    data = {
        "model": res.model,
        "action": res.action,
        "message": res.message,
        "requires_confirmation": False,
        "matches": res.matches,
        "lock_files_cleaned": res.lock_files_cleaned,
        "revision": res.revision,
        "freed_bytes": res.freed_bytes,
    }
    return CommandResult(data, lambda: out(f"rm: {res.model} — {res.action}: {res.message}"))


COMMANDS: dict[str, CommandSpec] = {
    "list": CommandSpec("list models in the HF cache and workspaces", _list_args, _list),
    "show": CommandSpec("details of one model", _show_args, _show),
    "health": CommandSpec("integrity report for one or all models", _health_args, _health),
    "rm": CommandSpec("delete a cached model or one snapshot", _rm_args, _rm),
}
VERSION = CommandSpec("version", _version_args, _version)

"""pull and push: the commands that talk to a Hugging Face hub."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from mlxk.cli.commands import CommandResult, CommandSpec, err, out
from mlxk.cli.commands_models import progress_bar
from mlxk.config import Settings

if TYPE_CHECKING:  # the hub code (and huggingface_hub) loads only when pull/push runs
    from mlxk.ops.hub.push import PushResult


def _pull_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model", help="hub repo id (org/name), an exact local name, name@branch or name@commit"
    )
    p.add_argument(
        "--force-resume", action="store_true",
        help="repair an existing unhealthy copy without asking (re-verifies every file)",
    )  # fmt: skip


def _pull(args: argparse.Namespace, settings: Settings) -> CommandResult:
    from mlxk.errors import ConfirmationRequired
    from mlxk.ops.hub.pull import pull_model

    as_json = getattr(args, "json", False)
    confirm = None
    if sys.stdin.isatty() and not as_json:

        def confirm(question: str) -> bool:
            err(f"{question} [Y/n]: ")
            return sys.stdin.readline().strip().lower() in ("", "y", "yes")

    with progress_bar(f"pull {args.model}", not as_json) as progress:
        res = pull_model(settings, args.model, force_resume=args.force_resume, confirm=confirm,
                         progress=progress)  # fmt: skip
    if res.download_status == "requires_confirmation" and not as_json:
        # No terminal to ask on (mlx-knife: an error, exit 1); --json reports it and exits 0.
        raise ConfirmationRequired(res.message, model=res.model)
    return CommandResult(res.to_data(), lambda: out(f"pull: {res.model} — {res.message}"))


def _push_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("local_dir", help="workspace directory (or an explicit ./prefix naming one)")
    p.add_argument("repo_id", help="target repository, org/name")
    p.add_argument("--private", action="store_true", required=True,
                   help="required: mlxk only pushes to private repositories")  # fmt: skip
    p.add_argument("--create", action="store_true", help="create the repo/branch if missing")
    p.add_argument("--branch", default="main", help="target branch (default: main)")
    p.add_argument("--commit", default="mlxk push", metavar="MESSAGE", help="commit message")
    p.add_argument("--check-only", action="store_true", help="offline workspace analysis only")
    p.add_argument("--dry-run", action="store_true", help="show what would be uploaded")
    p.add_argument("--verbose", action="store_true", help="show the commit URL")


def _push(args: argparse.Namespace, settings: Settings) -> CommandResult:
    from mlxk.formats.hub import push_object
    from mlxk.ops.hub.push import push_workspace

    quiet = getattr(args, "json", False) and not args.verbose
    if quiet:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()  # one JSON envelope on stdout, nothing else on the terminal
    res = push_workspace(
        settings, args.local_dir, args.repo_id, private=args.private, branch=args.branch,
        commit_message=args.commit, check_only=args.check_only, dry_run=args.dry_run,
        create=args.create,
    )  # fmt: skip
    return CommandResult(push_object(res), lambda: _push_human(res, args.verbose))


def _push_human(res: PushResult, verbose: bool) -> None:
    from mlxk.formats.hub import SHOWN_FILES

    head = f"push (experimental): {res.repo_id}@{res.branch} —"
    if res.health is not None:
        state = "healthy" if res.health.healthy else "unhealthy"
        out(f"{head} check-only: {res.health.files_count} files, {state}")
        for a in res.health.anomalies:
            out(f"  {a.severity}: {a.code}: {a.message}")
        return
    if res.mode == "dry-run":
        out(f"{head} {res.message}")
        added = res.changes.added if res.changes else res.local_files
        modified = res.changes.modified if res.changes else []
        for path in added[:SHOWN_FILES]:
            out(f"  + {path}")
        for path in modified[:SHOWN_FILES]:
            out(f"  ~ {path}")
    elif res.no_changes:
        out(f"{head} no changes")
    else:
        cs = res.changes.summary() if res.changes else {"added": 0, "modified": 0}
        out(f"{head} commit {(res.commit_sha or '')[:7]} (+{cs['added']} ~{cs['modified']} -0)")
    if verbose and res.commit_url:
        out(f"  {res.commit_url}")


PULL_HELP = "download a model from the hub into the HF cache (resumable, verified)"
PUSH_HELP = "upload a workspace to a private hub repo (experimental)"
COMMANDS = {
    "pull": CommandSpec(PULL_HELP, _pull_args, _pull),
    "push": CommandSpec(PUSH_HELP, _push_args, _push),
}

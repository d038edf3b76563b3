"""rm: delete a cached model, or only one of its snapshots."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlxk.config import Settings
from mlxk.errors import (
    ConfirmationRequired,
    LocksPresentError,
    PermissionDeniedError,
    ValidationError,
)
from mlxk.store.hf_cache import CacheRepo, held_locks, lock_files, repo_id_to_dirname
from mlxk.store.resolve import Resolver, split_rev


@dataclass(frozen=True)
class RemoveResult:
    model: str
    action: str  # deleted / deleted_revision / cancelled
    message: str
    revision: str | None = None
    freed_bytes: int = 0
    lock_files_cleaned: int = 0
    matches: list[str] = field(default_factory=list)


Confirm = Callable[[str], bool]


def remove_model(
    settings: Settings, spec: str, *, force: bool, confirm: Confirm | None
) -> RemoveResult:
    resolution = Resolver(settings).resolve(spec)
    model = resolution.model
    if not model.cached or model.repo_dir is None:
        raise ValidationError(
            f"'{model.name}' is a workspace, not a cached model. "
            f"Delete it with: rm -rf {model.name}"
        )
    _, rev = split_rev(spec)
    if not resolution.exact and not force:
        question = f"Delete '{model.name}' (matched from '{spec}')?"
        if confirm is None:
            raise ConfirmationRequired(
                f"'{spec}' matched '{model.name}' by fuzzy search; repeat with the full name "
                "or with -f to delete it",
                matches=[model.name],
            )
        if not confirm(question):
            return RemoveResult(model.name, "cancelled", "Nothing deleted")
    held = held_locks(settings.hub_dir, model.name)
    if held and not force:
        raise LocksPresentError(
            f"{model.name} is locked by a running download ({len(held)} lock(s) held). "
            "Wait for it to finish, or use -f to override.",
            lock_files=[str(p) for p in held],
        )
    locks = lock_files(settings.hub_dir, model.name)
    try:
        if rev is not None and model.commit is not None:
            return _remove_revision(CacheRepo(model.name, model.repo_dir), model.commit)
        return _remove_repo(settings.hub_dir, model.name, model.repo_dir, len(locks))
    except PermissionError as exc:
        raise PermissionDeniedError(f"Permission denied deleting {model.name}: {exc}") from exc


def _remove_repo(hub: Path, name: str, repo_dir: Path, n_locks: int) -> RemoveResult:
    freed = _blob_bytes(repo_dir / "blobs", None)
    shutil.rmtree(repo_dir)
    shutil.rmtree(hub / ".locks" / repo_id_to_dirname(name), ignore_errors=True)
    return RemoveResult(name, "deleted", f"Deleted entire model {name}", None, freed, n_locks)


def _blob_targets(snapshot: Path) -> set[str]:
    out: set[str] = set()
    for root, _dirs, files in os.walk(snapshot):
        for f in files:
            p = Path(root) / f
            if p.is_symlink():
                out.add(Path(os.readlink(p)).name)
    return out


def _blob_bytes(blobs: Path, names: set[str] | None) -> int:
    total = 0
    if not blobs.is_dir():
        return 0
    for blob in blobs.iterdir():
        if names is None or blob.name in names:
            total += blob.stat().st_size
    return total


def _remove_revision(repo: CacheRepo, commit: str) -> RemoveResult:
    """Delete one snapshot, the blobs only it used, and refs that point at it."""
    snapshots = repo.snapshots()
    if snapshots == [commit]:
        hub = repo.repo_dir.parent
        return _remove_repo(hub, repo.repo_id, repo.repo_dir, 0)
    mine = _blob_targets(repo.snapshot_path(commit))
    others: set[str] = set()
    for other in snapshots:
        if other != commit:
            others |= _blob_targets(repo.snapshot_path(other))
    orphans = mine - others
    freed = _blob_bytes(repo.repo_dir / "blobs", orphans)
    shutil.rmtree(repo.snapshot_path(commit))
    for name in orphans:
        (repo.repo_dir / "blobs" / name).unlink(missing_ok=True)
    for ref, target in repo.refs().items():
        if target == commit:
            (repo.repo_dir / "refs" / ref).unlink(missing_ok=True)
    msg = f"Deleted {repo.repo_id}@{commit[:8]} ({len(orphans)} blob(s) freed)"
    return RemoveResult(repo.repo_id, "deleted_revision", msg, commit, freed)

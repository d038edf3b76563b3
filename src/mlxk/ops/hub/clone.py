"""clone: a managed workspace from the local cache or, when the model is not local, the hub.

A hub clone pulls into a private HF cache beside the target (``.mlxk_temp_<hash>``, named
after spec and target so running the same clone again resumes) and never touches the user's
cache; the workspace appears in one rename.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from mlxk.config import Settings
from mlxk.errors import (
    AmbiguousMatchError,
    HashNotFoundError,
    MlxkError,
    ModelNotFoundError,
    ValidationError,
)
from mlxk.ops.convert import ConvertResult, clone_model, copy_model_files
from mlxk.ops.download import Progress
from mlxk.ops.hub.client import parse_pull_spec
from mlxk.ops.hub.pull import PullResult, pull_model
from mlxk.ops.staging import (
    TEMP_PREFIX,
    check_free_target,
    ensure_outside_cache,
    staged_dir,
    target_path,
)
from mlxk.store.health import check_health
from mlxk.store.resolve import Resolver, is_explicit_path, split_rev, workspace_model
from mlxk.store.workspace import build_sentinel, write_sentinel

TEMP_SENTINEL = ".mlxk_temp_cache_sentinel"


@dataclass(frozen=True)
class HubCloneResult(ConvertResult):
    """A clone made from the hub: ConvertResult plus the commit and the pull's counters."""

    commit: str | None = None
    pull: PullResult | None = None


def temp_cache_dir(spec: str, target: Path) -> Path:
    """Deterministic per (spec, target), so running the same clone again resumes."""
    digest = hashlib.sha256(f"{spec}:{target}".encode()).hexdigest()[:16]
    return target.parent / f"{TEMP_PREFIX}{digest}"


def clone_from_hub(
    settings: Settings,
    spec: str,
    dst: str | None,
    *,
    progress: Progress | None = None,
) -> HubCloneResult:
    """hub → managed workspace, through a resumable private cache beside the target."""
    name, _rev = parse_pull_spec(spec)
    target = target_path(settings, dst, name.split("/")[-1])
    ensure_outside_cache(settings, target, "target")
    check_free_target(target)
    temp = temp_cache_dir(spec, target)
    try:
        (temp / "hub").mkdir(parents=True, exist_ok=True)
        (temp / TEMP_SENTINEL).write_text(spec + "\n", encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"Cannot write next to {target}: {exc.strerror or exc}") from exc
    private = dataclasses.replace(settings, hf_home=temp, workspace_home=None)
    try:
        pulled = pull_model(private, spec, force_resume=True, progress=progress)
    except MlxkError as exc:
        exc.message += f" (partial download kept in {temp}; run the same clone again to resume)"
        raise
    assert pulled.snapshot_path is not None and pulled.commit_hash is not None
    with staged_dir(target) as tmp:
        copy_model_files(Path(pulled.snapshot_path), tmp)
        sentinel = build_sentinel(
            tmp, operation="clone", source_repo=pulled.model, source_revision=pulled.commit_hash
        )
        write_sentinel(tmp, sentinel)
    shutil.rmtree(temp, ignore_errors=True)
    health = check_health(workspace_model(target))
    return HubCloneResult(spec, target, "clone", health, content_hash=sentinel["content_hash"],
                          commit=pulled.commit_hash, pull=pulled)  # fmt: skip


def clone_source_is_local(settings: Settings, spec: str) -> bool:
    """Local cache/workspace when the spec names one; the hub otherwise.

    Paths, exact names and local revisions are local. A fuzzy hit counts only for a bare
    fragment: someone who types ``org/name`` that is not cached means the hub repo.
    """
    if is_explicit_path(spec):
        return True
    name, _ = split_rev(spec)
    try:
        res = Resolver(settings).resolve(spec)
    except AmbiguousMatchError:
        if "/" in name:
            return False
        raise
    except (ModelNotFoundError, HashNotFoundError):
        return False
    if not res.model.path.is_dir():  # a broken cache entry: fetch it fresh
        return False
    return res.exact or "/" not in name


def clone_any(
    settings: Settings, spec: str, dst: str | None, *, progress: Progress | None = None
) -> ConvertResult:
    """``mlxk clone``: from the local cache or a workspace when there, else from the hub."""
    if clone_source_is_local(settings, spec):
        return clone_model(settings, spec, dst)
    if settings.offline:
        raise ModelNotFoundError(
            f"'{spec}' is not in the local cache and HF_HUB_OFFLINE is set: cannot fetch it"
        )
    return clone_from_hub(settings, spec, dst, progress=progress)

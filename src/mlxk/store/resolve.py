"""The one resolver: turns what a user types into a LocalModel, for every command and the server.

Order: explicit paths; then exact names (workspace, ``org/name``, ``mlx-community/<name>``);
then case-insensitive substring matches over workspaces and cache together. More than one
fuzzy hit is an error listing them (mlx-knife silently took the first workspace hit).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from mlxk.config import Settings
from mlxk.errors import (
    AmbiguousMatchError,
    HashNotFoundError,
    ModelNotFoundError,
    ValidationError,
)
from mlxk.store.hf_cache import CacheRepo, CacheWarning, find_repo, iter_repos, scan_repos
from mlxk.store.workspace import is_workspace
from mlxk.types import LocalModel

HEX_RE = re.compile(r"^[0-9a-f]{4,40}$")
MAX_NAME = 96


@dataclass(frozen=True)
class ModelScan:
    models: list[LocalModel]
    warnings: list[CacheWarning]  # cache entries that could not be read (list/health show them)


@dataclass(frozen=True)
class Resolution:
    model: LocalModel
    exact: bool  # False when a fuzzy fragment picked the model (rm asks for confirmation)
    typed: str


def is_explicit_path(spec: str) -> bool:
    return spec in (".", "..", "~") or spec.startswith(("./", "../", "/", "~/"))


def split_rev(spec: str) -> tuple[str, str | None]:
    if "@" in spec and not is_explicit_path(spec):
        name, rev = spec.rsplit("@", 1)
        if not name or not rev:
            raise ValidationError(f"Invalid model reference '{spec}': expected name@revision")
        return name, rev
    return spec, None


def workspace_model(path: Path, display: str | None = None) -> LocalModel:
    path = path.expanduser().absolute()
    return LocalModel(name=str(path), path=path, cached=False, display_name=display or path.name)


def cache_model(repo: CacheRepo, commit: str | None = None) -> LocalModel:
    commit = commit or repo.current_commit()
    if commit is None:
        snaps = repo.repo_dir / "snapshots"
        unreadable = snaps.is_dir() and not os.access(snaps, os.R_OK | os.X_OK)
        problem = f"Permission denied reading {snaps}" if unreadable else "No snapshots found"
        return LocalModel(
            repo.repo_id, repo.repo_dir / "snapshots", True, None, repo.repo_dir,
            problem=problem,
        )  # fmt: skip
    return LocalModel(repo.repo_id, repo.snapshot_path(commit), True, commit, repo.repo_dir)


def list_workspaces(home: Path | None) -> list[Path]:
    if home is None:
        return []
    try:
        children = sorted(home.iterdir(), key=lambda p: p.name.lower())
    except OSError:
        return []
    return [c for c in children if c.is_dir() and is_workspace(c)]


def path_matches(spec: str) -> list[LocalModel]:
    """Workspaces an explicit path names: the dir itself, its model children, or a prefix."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if is_workspace(path):
            return [workspace_model(path, spec)]
        return [workspace_model(c, _display(spec, c.name)) for c in list_workspaces(path)]
    parent, prefix = path.parent, path.name
    hits = [c for c in list_workspaces(parent) if c.name.startswith(prefix)]
    base = spec[: len(spec) - len(prefix)]
    return [workspace_model(c, base + c.name) for c in hits]


def _display(spec: str, child: str) -> str:
    return spec.rstrip("/") + "/" + child


class Resolver:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub_dir = settings.hub_dir

    def resolve(self, spec: str) -> Resolution:
        spec = spec.strip()
        if not spec:
            raise ValidationError("Invalid model name: empty")
        if is_explicit_path(spec):
            return Resolution(self._resolve_path(spec), True, spec)
        name, rev = split_rev(spec)
        if len(name) > MAX_NAME or name.startswith("/") or "//" in name or name.endswith("/"):
            raise ValidationError(f"Invalid model name '{name}'")
        model, exact = self._resolve_name(name)
        if rev is not None:
            model = self._with_rev(model, rev)
        return Resolution(model, exact, spec)

    def _resolve_path(self, spec: str) -> LocalModel:
        hits = path_matches(spec)
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise AmbiguousMatchError(spec, [h.display_name or h.name for h in hits])
        if Path(spec).expanduser().is_dir():
            raise ModelNotFoundError(f"'{spec}' is a directory without config.json: not a model")
        raise ModelNotFoundError(f"No model found at '{spec}'")

    def _resolve_name(self, name: str) -> tuple[LocalModel, bool]:
        workspaces = list_workspaces(self.settings.workspace_home)
        for ws in workspaces:
            if ws.name == name:
                return workspace_model(ws), True
        for candidate in (name, f"mlx-community/{name}") if "/" not in name else (name,):
            repo = find_repo(self.hub_dir, candidate)
            if repo is not None:
                return cache_model(repo), True
        return self._fuzzy(name, workspaces), False

    def _fuzzy(self, name: str, workspaces: list[Path]) -> LocalModel:
        low = name.lower()
        hits: list[LocalModel] = [workspace_model(w) for w in workspaces if low in w.name.lower()]
        repos = list(iter_repos(self.hub_dir))
        hits += [cache_model(r) for r in repos if low in r.repo_id.lower()]
        if len(hits) > 1:
            same = [h for h in hits if _short(h).lower() == low]
            hits = same if len(same) == 1 else hits
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise AmbiguousMatchError(name, [_label(h) for h in hits])
        known = [w.name for w in workspaces] + [r.repo_id for r in repos]
        raise ModelNotFoundError(_not_found_message(name, known), suggestions=_close(name, known))

    def _with_rev(self, model: LocalModel, rev: str) -> LocalModel:
        if not model.cached or model.repo_dir is None:
            raise ValidationError(
                f"'{model.name}' is a workspace: @revision applies to cached models"
            )
        repo = CacheRepo(model.name, model.repo_dir)
        snaps = repo.snapshots()
        branch = repo.refs().get(rev)
        if branch is not None:
            if branch not in snaps:
                raise HashNotFoundError(
                    f"Branch '{rev}' of {model.name} points to {branch[:8]}, which is not in "
                    f"the cache. Run: mlxk pull {model.name}@{rev}",
                    available_hashes=[s[:8] for s in snaps],
                )
            return cache_model(repo, branch)
        hits = [s for s in snaps if HEX_RE.match(rev.lower()) and s.startswith(rev.lower())]
        if len(hits) == 1:
            return cache_model(repo, hits[0])
        if hits:
            raise AmbiguousMatchError(f"{model.name}@{rev}", [f"{model.name}@{h}" for h in hits])
        raise HashNotFoundError(
            f"Revision '{rev}' not found for {model.name}. "
            f"Available: {', '.join(s[:8] for s in snaps) or 'none'}",
            available_hashes=[s[:8] for s in snaps],
        )

    def all_models(self, pattern: str | None = None) -> list[LocalModel]:
        """Workspaces in the home dir plus every cache repo, filtered by a substring."""
        return self.scan(pattern).models

    def scan(self, pattern: str | None = None) -> ModelScan:
        """``all_models`` plus the unreadable cache entries whose names match ``pattern``."""
        if pattern and is_explicit_path(pattern):
            return ModelScan(path_matches(pattern), [])
        low = (pattern or "").lower()
        models = [workspace_model(w) for w in list_workspaces(self.settings.workspace_home)]
        models = [m for m in models if low in (m.display_name or "").lower()]
        cache = scan_repos(self.hub_dir)
        warnings = [w for w in cache.warnings if w.repo_id is None or low in w.repo_id.lower()]
        for repo in cache.repos:
            if low in repo.repo_id.lower():
                commit, warning = repo.head()
                models.append(cache_model(repo, commit))
                warnings += [warning] if warning else []
        return ModelScan(sorted(models, key=lambda m: _label(m).lower()), warnings)


def _short(model: LocalModel) -> str:
    return (
        model.display_name if not model.cached and model.display_name else model.name.split("/")[-1]
    )


def _label(model: LocalModel) -> str:
    return model.name if model.cached else (model.display_name or model.name)


def _close(name: str, known: list[str]) -> list[str]:
    by_short = {k.split("/")[-1].lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_short), n=3, cutoff=0.6)
    return [by_short[c] for c in close]


def _not_found_message(name: str, known: list[str]) -> str:
    close = _close(name, known)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return f"No model found matching '{name}'.{hint}"

"""push: upload a workspace to a private hub repo (experimental, as in mlx-knife).

``--check-only`` (workspace analysis) and ``--dry-run`` (what would change) work offline; an
upload commits exactly the files it compared, in one commit, and never deletes anything.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mlxk.config import Settings
from mlxk.errors import (
    AmbiguousWorkspaceError,
    AuthError,
    MlxkError,
    NetworkError,
    OfflineError,
    RepoMissingError,
    UploadFailedError,
    UsageError,
    ValidationError,
    WorkspaceMissingError,
)
from mlxk.ops.download import check_ref, file_digest
from mlxk.ops.hub.client import endpoint_of, hf_api, hub_errors, parse_pull_spec
from mlxk.ops.staging import TEMP_PREFIX
from mlxk.store.health import WorkspaceHealth, analyze_workspace
from mlxk.store.resolve import is_explicit_path, path_matches
from mlxk.store.workspace import SENTINEL

PushMode = Literal["check-only", "dry-run", "upload"]

PUSH_IGNORES = [
    ".git/", ".DS_Store", ".hfignore", ".gitignore", "__pycache__/", ".venv/", "venv/", "*.pyc",
    # ours: local bookkeeping and leftovers that would only confuse the hub copy
    ".hf_cache/", SENTINEL, "*.incomplete", "*.partial", f"{TEMP_PREFIX}*/",
]  # fmt: skip


@dataclass(frozen=True)
class LocalFile:
    path: str  # relative POSIX path: the path in the repo
    abs: Path
    size: int


@dataclass(frozen=True)
class Changes:
    added: list[str]
    modified: list[str]
    unchanged: list[str]
    remote_only: list[str]  # on the hub, not in the workspace: kept (push never deletes)

    @property
    def upload(self) -> list[str]:
        return self.added + self.modified

    def summary(self) -> dict[str, int]:
        return {"added": len(self.added), "modified": len(self.modified), "deleted": 0}


@dataclass(frozen=True)
class PushResult:
    """What push did, or with --check-only / --dry-run would do; the CLI renders it."""

    repo_id: str
    branch: str
    repo_url: str
    mode: PushMode
    message: str
    local_files: tuple[str, ...]  # repo paths, directory by directory in sorted order
    local_bytes: int
    health: WorkspaceHealth | None = None  # check-only
    changes: Changes | None = None  # the comparison with the hub; None when it was not asked
    remote_state: str | None = None  # dry-run, hub asked: "ok", "no_repo" or "no_branch"
    remote_error: str | None = None  # dry-run, hub not asked: why it could not be reached
    created_repo: bool = False
    commit_sha: str | None = None
    commit_url: str | None = None

    @property
    def no_changes(self) -> bool | None:
        return None if self.changes is None else not self.changes.upload

    @property
    def uploaded_files_count(self) -> int:
        return len(self.changes.upload) if self.changes is not None and self.commit_sha else 0


def find_push_dir(local_dir: str) -> Path:
    """An existing directory as is; otherwise an explicit path prefix naming one workspace."""
    path = Path(local_dir).expanduser()
    if path.is_dir():
        return path.absolute()
    hits = path_matches(local_dir) if is_explicit_path(local_dir) else []
    if len(hits) == 1:
        return hits[0].path
    if hits:
        names = [str(h.path) for h in hits]
        raise AmbiguousWorkspaceError(
            f"Ambiguous pattern '{local_dir}' matches {len(hits)} workspaces: "
            f"{', '.join(h.path.name for h in hits)}. Give the exact path.", matches=names,
        )  # fmt: skip
    raise WorkspaceMissingError(f"Workspace not found or not a directory: {local_dir}")


def ignore_patterns(root: Path) -> list[str]:
    patterns = list(PUSH_IGNORES)
    try:
        lines = (root / ".hfignore").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    for line in lines:
        s = line.strip()
        if s and not s.startswith("#") and s not in patterns:
            patterns.append(s)
    return patterns


def _ignored(rel: str, is_dir: bool, patterns: list[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    for pat in patterns:
        if pat.endswith("/"):
            if is_dir and (
                fnmatch.fnmatchcase(name, pat[:-1]) or fnmatch.fnmatchcase(rel, pat[:-1])
            ):
                return True
        elif not is_dir and (fnmatch.fnmatchcase(name, pat) or fnmatch.fnmatchcase(rel, pat)):
            return True
    return False


def collect_files(root: Path, patterns: list[str]) -> list[LocalFile]:
    """Files to push, sorted; symlinks are followed only when they stay inside ``root``."""
    out: list[LocalFile] = []
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        prefix = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not _ignored(prefix + d, True, patterns))
        for fname in sorted(filenames):
            rel = prefix + fname
            path = Path(dirpath) / fname
            if _ignored(rel, False, patterns) or not path.is_file():
                continue
            if not os.path.realpath(path).startswith(real_root + os.sep):
                continue  # a link out of the workspace is not part of it
            out.append(LocalFile(rel, path, path.stat().st_size))
    return out


def remote_tree(settings: Settings, repo_id: str, branch: str) -> tuple[str, dict[str, Any]]:
    """("ok"|"no_repo"|"no_branch", {path: RepoFile}) for the branch on the hub."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
    from huggingface_hub.hf_api import RepoFile

    api = hf_api(settings)
    with hub_errors(settings, repo_id, branch):
        try:
            # model_info first: one request without retries, so an unreachable hub or a
            # missing repo answers at once (list_repo_tree retries for about 20 s).
            api.model_info(repo_id, revision=branch)
        except RevisionNotFoundError:
            return "no_branch", {}
        except RepositoryNotFoundError as exc:
            if exc.__class__ is not RepositoryNotFoundError:
                raise  # gated: an access problem, not a missing repo
            return "no_repo", {}
        items = api.list_repo_tree(repo_id, revision=branch, recursive=True)
        return "ok", {f.path: f for f in items if isinstance(f, RepoFile)}


def diff_files(files: list[LocalFile], remote: dict[str, Any]) -> Changes:
    """Compare by the hub's own ids: sha256 for LFS files, the git blob id for the rest."""
    added: list[str] = []
    modified: list[str] = []
    same: list[str] = []
    for f in files:
        r = remote.get(f.path)
        if r is None:
            added.append(f.path)
            continue
        if r.size != f.size:
            modified.append(f.path)
            continue
        if r.lfs is not None:
            local = file_digest(f.abs, "sha256", None) == r.lfs.sha256
        else:
            local = file_digest(f.abs, "sha1", f.size) == r.blob_id
        (same if local else modified).append(f.path)
    local_paths = {f.path for f in files}
    only = sorted(p for p in remote if p not in local_paths and p != ".gitattributes")
    return Changes(added, modified, same, only)


def push_workspace(
    settings: Settings,
    local_dir: str,
    repo_id: str,
    *,
    private: bool,
    branch: str = "main",
    commit_message: str = "mlxk push",
    check_only: bool = False,
    dry_run: bool = False,
    create: bool = False,
) -> PushResult:
    """Upload a workspace to a private hub repo; ``check_only``/``dry_run`` work offline."""
    if not private:
        raise UsageError("push needs --private: mlxk only creates and pushes private repos")
    name, _ = parse_pull_spec(repo_id)
    if "/" not in name or "@" in repo_id:
        raise ValidationError(f"Invalid repo id '{repo_id}': expected org/name")
    check_ref(branch)
    root = find_push_dir(local_dir)
    files = collect_files(root, ignore_patterns(root))
    base = PushResult(
        repo_id, branch, f"{endpoint_of(settings)}/{repo_id}", "check-only",
        "Check-only: no upload performed.", tuple(f.path for f in files),
        sum(f.size for f in files),
    )  # fmt: skip
    if check_only:
        health = analyze_workspace(root, {f.path: f.size for f in files})
        return dataclasses.replace(base, health=health)
    if dry_run:
        return _dry_run(settings, base, files)
    if not settings.hf_token:
        raise AuthError("HF_TOKEN not set: push needs a token with write access")
    if settings.offline:
        raise OfflineError("HF_HUB_OFFLINE is set: push needs the network (try --dry-run)")
    return _upload(settings, base, files, commit_message, create)


def _dry_run(settings: Settings, base: PushResult, files: list[LocalFile]) -> PushResult:
    """Compare with the hub when it can be asked; otherwise say what would be uploaded."""
    base = dataclasses.replace(base, mode="dry-run")
    remote_error = None
    if settings.hf_token and not settings.offline:
        try:
            state, remote = remote_tree(settings, base.repo_id, base.branch)
            return _dry_run_remote(base, state, diff_files(files, remote))
        except MlxkError as exc:
            remote_error = exc.message
    why = (
        f"hub unreachable: {remote_error}" if remote_error
        else "offline: HF_HUB_OFFLINE is set" if settings.offline
        else "no HF_TOKEN set"
    )  # fmt: skip
    msg = (
        f"Dry-run: would upload {len(files)} files ({base.local_bytes / 1e6:.1f} MB) to "
        f"{base.repo_id}@{base.branch}. The hub was not asked ({why}), so unchanged files "
        "are not known."
    )
    return dataclasses.replace(base, message=msg, remote_error=remote_error)


def _dry_run_remote(base: PushResult, state: str, changes: Changes) -> PushResult:
    a, m = len(changes.added), len(changes.modified)
    msg = "Dry-run: no changes" if not changes.upload else f"Dry-run: +{a} ~{m} -0"
    if state != "ok":
        msg += f" ({'repository' if state == 'no_repo' else 'branch'} would be created)"
    return dataclasses.replace(base, message=msg, changes=changes, remote_state=state)


def _upload(
    settings: Settings, base: PushResult, files: list[LocalFile], message: str, create: bool
) -> PushResult:
    repo_id, branch = base.repo_id, base.branch
    created = _ensure_target(settings, repo_id, branch, create)
    _state, remote = remote_tree(settings, repo_id, branch)
    changes = diff_files(files, remote)
    res = dataclasses.replace(base, mode="upload", changes=changes, created_repo=created)
    if not changes.upload:
        return dataclasses.replace(res, message="No files changed; skipped empty commit.")
    info = _commit(settings, repo_id, branch, files, changes, message)
    a, m = len(changes.added), len(changes.modified)
    return dataclasses.replace(
        res, commit_sha=info.oid, commit_url=info.commit_url,
        message=f"Committed {a + m} files (+{a} ~{m} -0).",
    )  # fmt: skip


def _ensure_target(settings: Settings, repo_id: str, branch: str, create: bool) -> bool:
    """Make sure repo and branch exist (creating them only with --create); True if created."""
    state, _ = remote_tree(settings, repo_id, branch)
    if state == "ok":
        return False
    if not create:
        what = "Repository" if state == "no_repo" else f"Branch '{branch}' of"
        raise RepoMissingError(f"{what} {repo_id} not found on the hub (use --create)")
    api = hf_api(settings)
    with hub_errors(settings, repo_id, branch):
        if state == "no_repo":
            api.create_repo(repo_id, private=True, exist_ok=True)
        if branch != "main":
            api.create_branch(repo_id, branch=branch, exist_ok=True)
    return state == "no_repo"


def _commit(
    settings: Settings, repo_id: str, branch: str, files: list[LocalFile], changes: Changes,
    message: str,
) -> Any:  # fmt: skip
    """One commit of exactly the files we compared (so --dry-run and the upload agree)."""
    from huggingface_hub import CommitOperationAdd

    by_path = {f.path: f for f in files}
    ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(by_path[p].abs))
           for p in changes.upload]  # fmt: skip
    try:
        with hub_errors(settings, repo_id, branch):
            return hf_api(settings).create_commit(
                repo_id, operations=ops, commit_message=message, revision=branch
            )
    except NetworkError as exc:
        raise UploadFailedError(f"Upload to {repo_id}@{branch} failed: {exc.message}") from exc

"""pull: hub → HF cache, in huggingface_hub's layout; resumable, every blob verified, the
snapshot visible only when complete (docs/hub.md)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlxk import __version__
from mlxk.config import Settings
from mlxk.errors import DownloadFailedError, MlxkError, OfflineError, RemoteNotFoundError
from mlxk.ops.download import (
    Progress,
    RemoteFile,
    Tally,
    check_blob_name,
    check_commit,
    check_space,
    fetch_blob,
    httpx,
    link_snapshot,
    safe_relpath,
    same_origin,
    write_ref,
)
from mlxk.ops.hub.client import endpoint_of, hf_api, http_headers, hub_errors, parse_pull_spec
from mlxk.store.health import check_health
from mlxk.store.hf_cache import CacheRepo, find_repo, repo_id_to_dirname
from mlxk.store.resolve import HEX_RE, Resolver, cache_model

Confirm = Callable[[str], bool]


@dataclass(frozen=True)
class PullResult:
    model: str
    download_status: str  # success / already_exists / requires_confirmation / cancelled
    message: str
    expanded_name: str | None = None
    commit_hash: str | None = None
    revision: str | None = None
    snapshot_path: str | None = None
    bytes_total: int = 0
    bytes_downloaded: int = 0
    bytes_resumed: int = 0
    files_total: int = 0
    files_downloaded: int = 0
    files_reused: int = 0

    def to_data(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PullPlan:
    repo_id: str
    commit: str
    ref: str | None  # the refs/<name> to write, None when pulled by commit
    files: list[RemoteFile]


def _target_repo(settings: Settings, name: str) -> tuple[str, str | None]:
    """An exact local cache model (``name`` → ``mlx-community/name``) or the name verbatim.

    mlx-knife re-targeted a pull to any fuzzy local match; a name the user typed that is not
    exactly local is a hub repo id.
    """
    try:
        res = Resolver(settings).resolve(name)
    except MlxkError:
        return name, None
    if res.exact and res.model.cached:
        return res.model.name, (res.model.name if res.model.name != name else None)
    return name, None


def local_commit(settings: Settings, repo_id: str, rev: str | None) -> str | None:
    """The cached snapshot for ``rev`` (None: the main branch), or None when it is not local."""
    repo = find_repo(settings.hub_dir, repo_id)
    if repo is None:
        return None
    refs, snaps = repo.refs(), repo.snapshots()
    if rev is None:
        commit = refs.get("main") if refs else (snaps[0] if snaps else None)
    elif rev in refs:
        commit = refs[rev]
    else:
        low = rev.lower()
        hits = [s for s in snaps if HEX_RE.match(low) and s.startswith(low)]
        commit = hits[0] if len(hits) == 1 else None
    return commit if commit in snaps else None


def pull_model(
    settings: Settings,
    spec: str,
    *,
    force_resume: bool = False,
    confirm: Confirm | None = None,
    progress: Progress | None = None,
) -> PullResult:
    """Download ``spec`` (``org/name[@branch|@commit]``) into the HF cache; resumable, verified."""
    name, rev = parse_pull_spec(spec)
    repo_id, expanded = _target_repo(settings, name)
    early, thorough = _check_local(settings, repo_id, rev, expanded, force_resume, confirm)
    if early is not None:
        return early
    if settings.offline:
        raise OfflineError("HF_HUB_OFFLINE is set: pull needs the network. Unset it to download.")
    plan = _plan_with_fallback(settings, repo_id, rev, expand=expanded is None and "/" not in name)
    expanded = plan.repo_id if plan.repo_id != name else expanded
    tally, snap = execute_plan(settings, plan, thorough=thorough, progress=progress)
    return PullResult(
        plan.repo_id, "success", f"Downloaded to {snap}", expanded, plan.commit, rev, str(snap),
        tally.total, tally.downloaded, tally.resumed, len(plan.files), tally.files_downloaded,
        tally.files_reused,
    )  # fmt: skip


def _check_local(
    settings: Settings, repo_id: str, rev: str | None, expanded: str | None,
    force_resume: bool, confirm: Confirm | None,
) -> tuple[PullResult | None, bool]:  # fmt: skip
    """(a final answer from the local copy, or None to download; whether to re-verify blobs)."""
    commit = local_commit(settings, repo_id, rev)
    if commit is None:
        return None, False
    repo = CacheRepo(repo_id, settings.hub_dir / repo_id_to_dirname(repo_id))
    health = check_health(cache_model(repo, commit))
    if health.healthy:
        if _branch_moved(settings, repo, rev, commit):
            return None, False
        snap = repo.snapshot_path(commit)
        msg = f"Already downloaded: {snap}"
        return PullResult(repo_id, "already_exists", msg, expanded, commit, rev, str(snap)), False
    if force_resume:
        return None, True  # repairing: re-hash what is there, fetch what is bad
    return _confirm_resume(repo_id, expanded, commit, health.reason, confirm), True


def _branch_moved(settings: Settings, repo: CacheRepo, rev: str | None, commit: str) -> bool:
    """``pull name@branch`` asks the hub where the branch is now (plain ``pull name`` does not,
    as in mlx-knife: it works offline). An unreachable hub keeps the local copy."""
    if rev is None or rev not in repo.refs() or settings.offline:
        return False
    try:
        with hub_errors(settings, repo.repo_id, rev):
            remote = hf_api(settings).model_info(repo.repo_id, revision=rev).sha
    except MlxkError:
        return False
    return bool(remote) and remote != commit


def _confirm_resume(
    repo_id: str, expanded: str | None, commit: str, reason: str, confirm: Confirm | None
) -> PullResult | None:
    """mlx-knife's flow for an unhealthy copy: ask, or report that we would have to."""
    if confirm is None:
        msg = f"{reason}. Use --force-resume to attempt resume or 'mlxk rm' to delete."
        return PullResult(repo_id, "requires_confirmation", msg, expanded, commit)
    if confirm(f"{repo_id} is unhealthy ({reason}). Resume download?"):
        return None
    msg = f"Download cancelled. Partial download kept. Delete it with: mlxk rm {repo_id}"
    return PullResult(repo_id, "cancelled", msg, expanded, commit)


def _plan_with_fallback(
    settings: Settings, repo_id: str, rev: str | None, expand: bool
) -> PullPlan:
    """A bare ``name`` that is not on the hub is tried as ``mlx-community/name`` too."""
    try:
        return plan_pull(settings, repo_id, rev)
    except RemoteNotFoundError:
        if not expand:
            raise
        try:
            return plan_pull(settings, f"mlx-community/{repo_id}", rev)
        except RemoteNotFoundError:
            pass
        raise RemoteNotFoundError(
            f"Model '{repo_id}' not found on {endpoint_of(settings)} (also tried "
            f"mlx-community/{repo_id}). Check the name (org/name); if it is private, set HF_TOKEN."
        ) from None


def plan_pull(settings: Settings, repo_id: str, rev: str | None) -> PullPlan:
    """Ask the hub what to fetch; every name, commit and ETag is checked before any write."""
    with hub_errors(settings, repo_id, rev):
        info = hf_api(settings).model_info(repo_id, revision=rev, files_metadata=True)
        commit = check_commit(info.sha)
        siblings = list(info.siblings or [])
        for sibling in siblings:  # all names first: a hostile listing writes nothing at all
            safe_relpath(sibling.rfilename)
        files = [_remote_file(settings, repo_id, commit, s) for s in siblings]
    ref = "main" if rev is None else (None if commit.startswith(rev.lower()) else rev)
    return PullPlan(repo_id, commit, ref, files)


def _remote_file(settings: Settings, repo_id: str, commit: str, sibling: Any) -> RemoteFile:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    path = sibling.rfilename
    url = hf_hub_url(repo_id, path, revision=commit, endpoint=endpoint_of(settings))
    meta = get_hf_file_metadata(
        url, token=settings.hf_token, endpoint=endpoint_of(settings),
        library_name="mlxk", library_version=__version__,
    )  # fmt: skip
    etag = check_blob_name(meta.etag, path)
    if meta.commit_hash and meta.commit_hash != commit:
        raise DownloadFailedError(f"{path}: the hub served commit {meta.commit_hash}, not {commit}")
    size = meta.size if meta.size is not None else sibling.size
    if size is None or (sibling.size is not None and sibling.size != size):
        raise DownloadFailedError(
            f"{path}: the hub reports no consistent size ({size}, {sibling.size})"
        )
    lfs = getattr(sibling, "lfs", None)
    sha256 = lfs.sha256 if lfs else (etag if len(etag) == 64 else None)
    if sha256 is not None and len(etag) == 64 and etag != sha256:
        raise DownloadFailedError(
            f"{path}: the hub's ETag and LFS sha256 disagree; not downloading"
        )
    git_oid = etag if len(etag) == 40 and not lfs else None
    return RemoteFile(path, meta.location, etag, int(size), sha256, git_oid,
                      same_origin(url, meta.location))  # fmt: skip


def execute_plan(
    settings: Settings, plan: PullPlan, *, thorough: bool = False, progress: Progress | None = None
) -> tuple[Tally, Path]:
    """Fetch every blob (locked, resumable, verified), then link the snapshot and the ref."""
    dirname = repo_id_to_dirname(plan.repo_id)
    repo_dir = settings.hub_dir / dirname
    blobs = repo_dir / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    unique = list({rf.etag: rf for rf in plan.files}.values())  # same content, one blob
    check_space(blobs, unique)
    tally = Tally(total=sum(rf.size for rf in unique), progress=progress)
    headers = http_headers(settings)
    timeout = httpx.Timeout(60.0, connect=15.0)
    with (
        httpx.Client(follow_redirects=True, timeout=timeout) as client,
        hub_errors(settings, plan.repo_id, plan.ref),
    ):
        for rf in unique:
            lock = settings.hub_dir / ".locks" / dirname / f"{rf.etag}.lock"
            fetch_blob(client, rf, blobs, lock, headers, tally, thorough=thorough)
    snap = link_snapshot(repo_dir, plan.commit, plan.files)
    if plan.ref is not None:
        write_ref(repo_dir, plan.ref, plan.commit)
    return tally, snap

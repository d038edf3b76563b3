"""pull, clone-from-hub and push: mlxk against a Hugging Face hub (or anything speaking its API).

huggingface_hub does what it is good at — repo info, file URLs and metadata, its error classes,
the cache layout and lock conventions, uploads — while the byte transfer is our own
(``mlxk.ops.download``) so pulls resume across processes and every file is verified before
the snapshot appears. JSON fields follow mlx-knife's ``pull``/``clone``/``push``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlxk import __version__
from mlxk.config import Settings
from mlxk.errors import (
    AccessDeniedError,
    AmbiguousMatchError,
    AmbiguousWorkspaceError,
    AuthError,
    DownloadFailedError,
    HashNotFoundError,
    MlxkError,
    ModelNotFoundError,
    NetworkError,
    OfflineError,
    RemoteNotFoundError,
    RepoMissingError,
    RevisionMissingError,
    UploadFailedError,
    ValidationError,
    WorkspaceMissingError,
)
from mlxk.ops.convert import ConvertResult, clone_model
from mlxk.ops.download import (
    Progress,
    RemoteFile,
    Tally,
    check_blob_name,
    check_commit,
    check_ref,
    check_space,
    fetch_blob,
    httpx,
    link_snapshot,
    safe_relpath,
    same_origin,
    write_ref,
)
from mlxk.ops.staging import check_free_target, ensure_outside_cache, staged_dir, target_path
from mlxk.store.health import check_health
from mlxk.store.hf_cache import CacheRepo, find_repo, repo_id_to_dirname
from mlxk.store.resolve import (
    HEX_RE,
    MAX_NAME,
    Resolver,
    cache_model,
    is_explicit_path,
    split_rev,
    workspace_model,
)
from mlxk.store.workspace import SENTINEL, build_sentinel, write_sentinel

Confirm = Callable[[str], bool]
DEFAULT_ENDPOINT = "https://huggingface.co"
TEMP_PREFIX = ".mlxk_temp_"
TEMP_SENTINEL = ".mlxk_temp_cache_sentinel"


# ----------------------------------------------------------------------------- results


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
class HubCloneResult(ConvertResult):
    """A clone made from the hub: ConvertResult plus the commit and the pull's counters."""

    commit: str | None = None
    pull: PullResult | None = None


@dataclass(frozen=True)
class PullPlan:
    repo_id: str
    commit: str
    ref: str | None  # the refs/<name> to write, None when pulled by commit
    files: list[RemoteFile]


# ----------------------------------------------------------------------------- hub access


def endpoint_of(settings: Settings) -> str:
    return (settings.hf_endpoint or DEFAULT_ENDPOINT).rstrip("/")


def hf_api(settings: Settings) -> Any:
    from huggingface_hub import HfApi

    return HfApi(
        endpoint=endpoint_of(settings), token=settings.hf_token,
        library_name="mlxk", library_version=__version__,
    )  # fmt: skip


def gated_message(settings: Settings, repo_id: str) -> str:
    return (
        f"Access denied: '{repo_id}' is a gated model. Accept the terms on the model page "
        f"({endpoint_of(settings)}/{repo_id}) and set HF_TOKEN to an access token of that account."
    )


@contextmanager
def hub_errors(settings: Settings, repo_id: str, rev: str | None) -> Iterator[None]:
    """Turn huggingface_hub / HTTP failures into mlxk errors that say what to do."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except GatedRepoError as exc:  # a subclass of RepositoryNotFoundError: test it first
        raise AccessDeniedError(gated_message(settings, repo_id)) from exc
    except RepositoryNotFoundError as exc:
        raise RemoteNotFoundError(
            f"Model '{repo_id}' not found on {endpoint_of(settings)}. Check the name (org/name); "
            "if the repository is private, set HF_TOKEN."
        ) from exc
    except RevisionNotFoundError as exc:
        raise RevisionMissingError(f"Revision '{rev}' not found for {repo_id}") from exc
    except RemoteEntryNotFoundError as exc:
        raise DownloadFailedError(
            f"{repo_id}: a listed file is missing on the hub ({exc})"
        ) from exc
    except OfflineModeIsEnabled as exc:
        raise OfflineError("HF_HUB_OFFLINE is set: unset it to reach the hub") from exc
    except HfHubHTTPError as exc:
        raise _http_error(settings, repo_id, exc) from exc
    except HFValidationError as exc:
        raise ValidationError(f"Invalid model name '{repo_id}': {exc}") from exc
    except httpx.TransportError as exc:
        raise NetworkError(
            f"Cannot reach {endpoint_of(settings)} ({exc or type(exc).__name__}). Check the "
            "connection (or HF_ENDPOINT) and run the same command again (a pull resumes "
            "where it stopped)."
        ) from exc


def _http_error(settings: Settings, repo_id: str, exc: Any) -> MlxkError:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return AccessDeniedError(
            f"Access denied for '{repo_id}' (HTTP {status}). Set HF_TOKEN to a token with access."
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else f"HTTP {status}"
    return NetworkError(
        f"The hub answered HTTP {status} for '{repo_id}' ({first}). Try again later; "
        "downloaded parts are kept and resume."
    )


def http_headers(settings: Settings) -> dict[str, str]:
    from huggingface_hub.utils import build_hf_headers

    headers: dict[str, str] = build_hf_headers(
        token=settings.hf_token, library_name="mlxk", library_version=__version__
    )
    headers["Accept-Encoding"] = "identity"  # sizes and Range offsets are of the raw file
    return headers


# ----------------------------------------------------------------------------- the spec


def parse_pull_spec(spec: str) -> tuple[str, str | None]:
    """``name[@rev]`` → (repo-id-shaped name, revision); the same rules as the resolver."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    spec = spec.strip()
    if not spec:
        raise ValidationError("Invalid model name: empty")
    if is_explicit_path(spec):
        raise ValidationError(f"'{spec}' is a path; pull takes a hub name like org/name[@rev]")
    name, rev = split_rev(spec)
    if len(name) > MAX_NAME or name.startswith("/") or "//" in name or name.endswith("/"):
        raise ValidationError(f"Invalid model name '{name}'")
    try:
        validate_repo_id(name)
    except HFValidationError as exc:
        raise ValidationError(f"Invalid model name '{name}': {exc}") from exc
    return name, check_ref(rev) if rev is not None else None


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


# ----------------------------------------------------------------------------- pull


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


# ----------------------------------------------------------------------------- clone


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
        _copy_tree(Path(pulled.snapshot_path), tmp)
        sentinel = build_sentinel(
            tmp, operation="clone", source_repo=pulled.model, source_revision=pulled.commit_hash
        )
        write_sentinel(tmp, sentinel)
    shutil.rmtree(temp, ignore_errors=True)
    health = check_health(workspace_model(target))
    return HubCloneResult(spec, target, "clone", health, content_hash=sentinel["content_hash"],
                          commit=pulled.commit_hash, pull=pulled)  # fmt: skip


def _copy_tree(src: Path, dst: Path) -> None:
    """Copy a snapshot's files (following its blob links) into a plain directory."""
    for item in sorted(src.iterdir()):
        if item.name in (SENTINEL, ".git"):
            continue
        if item.is_dir():
            shutil.copytree(item, dst / item.name, symlinks=False)
        else:
            shutil.copy2(item, dst / item.name)


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


# ----------------------------------------------------------------------------- push

PUSH_IGNORES = [
    ".git/", ".DS_Store", ".hfignore", ".gitignore", "__pycache__/", ".venv/", "venv/", "*.pyc",
    # ours: local bookkeeping and leftovers that would only confuse the hub copy
    ".hf_cache/", SENTINEL, "*.incomplete", "*.partial", f"{TEMP_PREFIX}*/",
]  # fmt: skip
DISCLAIMER = "Experimental: uploads the workspace files as they are; review the result on the hub."
WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".npz")
LFS_MARK = b"version https://git-lfs.github.com/spec/v1"


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


def find_push_dir(local_dir: str) -> Path:
    """An existing directory as is; otherwise an explicit path prefix naming one workspace."""
    from mlxk.store.resolve import path_matches

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
    import fnmatch

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
    import os

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


def analyze_workspace(root: Path, files: list[LocalFile]) -> dict[str, Any]:
    """mlx-knife's ``workspace_health`` for ``push --check-only``; offline, reads files only."""
    config = _config_health(root)
    weights = [f for f in files if f.path.endswith(WEIGHT_SUFFIXES)]
    anomalies = _config_anomalies(config) + _weight_anomalies(weights)
    index = _index_health(root, {f.path for f in files})
    if index.get("parse_error"):
        anomalies.append({"severity": "error", "code": "index_parse_error",
                          "message": "model.safetensors.index.json parse error"})  # fmt: skip
    if index["missing"]:
        anomalies.append({"severity": "error", "code": "index_missing_shard",
                          "message": f"Missing/invalid shards: {len(index['missing'])}",
                          "missing": index["missing"]})  # fmt: skip
    for f in files:
        low = f.path.rsplit("/", 1)[-1].lower()
        if "partial" in low or low.endswith((".tmp", ".incomplete")):
            anomalies.append({"severity": "warn", "code": "partial_marker",
                              "message": f"Partial/tmp marker: {low}", "path": f.path})  # fmt: skip
    return {
        "files_count": len(files),
        "total_bytes": sum(f.size for f in files),
        "config": config,
        "weights": {"count": len(weights),
                    "formats": sorted({f.path.rsplit(".", 1)[-1] for f in weights}),
                    "index": index, "pattern_complete": _shards_complete(weights)},
        "anomalies": anomalies,
        "healthy": not any(a["severity"] == "error" for a in anomalies),
    }  # fmt: skip


def _config_health(root: Path) -> dict[str, Any]:
    import json

    path = root / "config.json"
    if not path.is_file():
        return {"exists": False, "valid_json": False, "path": None}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        valid = isinstance(data, dict) and bool(data)
    except (OSError, ValueError):
        valid = False
    return {"exists": True, "valid_json": valid, "path": str(path)}


def _config_anomalies(config: dict[str, Any]) -> list[dict[str, Any]]:
    if not config["exists"]:
        return [{"severity": "error", "code": "config_missing", "message": "config.json not found"}]
    if not config["valid_json"]:
        return [{"severity": "error", "code": "config_invalid_json",
                 "message": "config.json invalid or empty"}]  # fmt: skip
    return []


def _is_lfs_pointer(path: Path, size: int) -> bool:
    if size > 200:
        return False
    try:
        with path.open("rb") as fh:
            return fh.read(len(LFS_MARK)) == LFS_MARK
    except OSError:
        return False


def _weight_anomalies(weights: list[LocalFile]) -> list[dict[str, Any]]:
    if not weights:
        return [{"severity": "error", "code": "no_weights_found",
                 "message": "No weights (*.safetensors/*.gguf/*.bin/*.npz)"}]  # fmt: skip
    out = []
    for w in weights:
        if w.size == 0:
            out.append({"severity": "error", "code": "empty_weight_file",
                        "message": f"Empty file: {w.path}", "path": w.path})  # fmt: skip
        elif _is_lfs_pointer(w.abs, w.size):
            out.append({"severity": "error", "code": "lfs_pointer_detected",
                        "message": f"LFS pointer: {w.path}", "path": w.path})  # fmt: skip
    return out


def _index_health(root: Path, present: set[str]) -> dict[str, Any]:
    import json

    index = root / "model.safetensors.index.json"
    info: dict[str, Any] = {"has_index": index.is_file(), "missing": []}
    if not info["has_index"]:
        return info
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        named = sorted({str(v) for v in weight_map.values()})
    except (OSError, ValueError, AttributeError):
        info["parse_error"] = True
        return info
    for name in named:
        path = root / name
        ok = name in present and path.is_file() and path.stat().st_size > 0
        if not ok or _is_lfs_pointer(path, path.stat().st_size):
            info["missing"].append(name)
    return info


def _shards_complete(weights: list[LocalFile]) -> bool | None:
    from mlxk.store.health import SHARD_RE

    seen: dict[str, tuple[int, set[int]]] = {}
    for w in weights:
        m = SHARD_RE.match(w.path.rsplit("/", 1)[-1])
        if m:
            _total, got = seen.setdefault(m["stem"], (int(m["n"]), set()))
            got.add(int(m["i"]))
    if not seen:
        return None
    return all(len(got) == total for total, got in seen.values())


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
    from mlxk.ops.download import file_digest

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


def _push_data(
    settings: Settings, repo_id: str, branch: str, files: list[LocalFile]
) -> dict[str, Any]:
    return {
        "repo_id": repo_id, "branch": branch, "commit_sha": None, "commit_url": None,
        "repo_url": f"{endpoint_of(settings)}/{repo_id}", "uploaded_files_count": 0,
        "local_files_count": len(files), "local_bytes": sum(f.size for f in files),
        "no_changes": None, "created_repo": False, "message": None, "experimental": True,
        "disclaimer": DISCLAIMER,
    }  # fmt: skip


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
) -> dict[str, Any]:
    """Upload a workspace to a private hub repo; ``check_only``/``dry_run`` work offline."""
    from mlxk.errors import UsageError

    if not private:
        raise UsageError("push needs --private: mlxk only creates and pushes private repos")
    name, _ = parse_pull_spec(repo_id)
    if "/" not in name or "@" in repo_id:
        raise ValidationError(f"Invalid repo id '{repo_id}': expected org/name")
    check_ref(branch)
    root = find_push_dir(local_dir)
    files = collect_files(root, ignore_patterns(root))
    data = _push_data(settings, repo_id, branch, files)
    if check_only:
        health = analyze_workspace(root, files)
        return data | {"message": "Check-only: no upload performed.", "workspace_health": health}
    if dry_run:
        return data | _dry_run(settings, repo_id, branch, files)
    if not settings.hf_token:
        raise AuthError("HF_TOKEN not set: push needs a token with write access")
    if settings.offline:
        raise OfflineError("HF_HUB_OFFLINE is set: push needs the network (try --dry-run)")
    return data | _upload(settings, repo_id, branch, files, commit_message, create)


def _dry_run(
    settings: Settings, repo_id: str, branch: str, files: list[LocalFile]
) -> dict[str, Any]:
    """Compare with the hub when it can be asked; otherwise say what would be uploaded."""
    base: dict[str, Any] = {"dry_run": True, "uploaded_files_count": 0}
    remote_error = None
    if settings.hf_token and not settings.offline:
        try:
            state, remote = remote_tree(settings, repo_id, branch)
            return base | _dry_run_remote(state, remote, files)
        except MlxkError as exc:
            remote_error = exc.message
    why = (
        f"hub unreachable: {remote_error}" if remote_error
        else "offline: HF_HUB_OFFLINE is set" if settings.offline
        else "no HF_TOKEN set"
    )  # fmt: skip
    paths = [f.path for f in files]
    mb = sum(f.size for f in files) / 1e6
    return base | {
        "remote_checked": False, "remote_error": remote_error, "no_changes": None,
        "change_summary": {"added": len(paths), "modified": None, "deleted": 0},
        "dry_run_summary": {"added": len(paths), "modified": None, "deleted": 0},
        "would_create_repo": None, "would_create_branch": None,
        "added_files": paths[:20], "deleted_files": [],
        "message": f"Dry-run: would upload {len(paths)} files ({mb:.1f} MB) to {repo_id}@{branch}. "
        f"The hub was not asked ({why}), so unchanged files are not known.",
    }  # fmt: skip


def _dry_run_remote(state: str, remote: dict[str, Any], files: list[LocalFile]) -> dict[str, Any]:
    changes = diff_files(files, remote)
    no_changes = not changes.upload
    a, m = len(changes.added), len(changes.modified)
    msg = "Dry-run: no changes" if no_changes else f"Dry-run: +{a} ~{m} -0"
    if state != "ok":
        msg += f" ({'repository' if state == 'no_repo' else 'branch'} would be created)"
    return {
        "remote_checked": True, "no_changes": no_changes,
        "change_summary": changes.summary(), "dry_run_summary": changes.summary(),
        "would_create_repo": state == "no_repo", "would_create_branch": state != "ok",
        "added_files": changes.added[:20], "modified_files": changes.modified[:20],
        "deleted_files": [], "remote_only_files": changes.remote_only[:20],
        "message": msg,
    }  # fmt: skip


def _upload(
    settings: Settings, repo_id: str, branch: str, files: list[LocalFile], message: str,
    create: bool,
) -> dict[str, Any]:  # fmt: skip
    created = _ensure_target(settings, repo_id, branch, create)
    _state, remote = remote_tree(settings, repo_id, branch)
    changes = diff_files(files, remote)
    out: dict[str, Any] = {"created_repo": created, "change_summary": changes.summary()}
    if not changes.upload:
        return out | {"no_changes": True, "message": "No files changed; skipped empty commit."}
    info = _commit(settings, repo_id, branch, files, changes, message)
    a, m = len(changes.added), len(changes.modified)
    return out | {
        "commit_sha": info.oid, "commit_url": info.commit_url, "no_changes": False,
        "uploaded_files_count": a + m, "message": f"Committed {a + m} files (+{a} ~{m} -0).",
    }  # fmt: skip


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

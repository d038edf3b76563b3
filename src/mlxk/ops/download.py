"""Resumable, verified file transfers into the Hugging Face cache (huggingface_hub's layout).

huggingface_hub's own downloader writes to a process-unique ``.incomplete`` file and deletes it
on failure, so an interrupted multi-GB pull starts from zero again. Here a partial file lives
at ``blobs/<etag>.incomplete`` and survives the process: the next pull continues it with an
HTTP ``Range`` request. Each blob is verified (sha256 for LFS files, the git blob id for
regular ones) before it is renamed into ``blobs/``; a bad one is deleted. The snapshot
(``snapshots/<commit>/…`` relative symlinks) appears in one rename only when every blob is
complete, so a model is never listed healthy while it is incomplete. Locks follow
huggingface_hub's convention: ``hub/.locks/models--…/<etag>.lock``, so its downloads and ours
of the same blob exclude each other.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mlxk.errors import (
    DiskFullError,
    DownloadFailedError,
    HashMismatchError,
    NetworkError,
    UnsafeRepoError,
)

try:  # huggingface_hub 2.x ships its HTTP client as ``httpx2``; 1.x used ``httpx``
    import httpx2 as httpx
except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
    import httpx  # type: ignore[no-redef]

Progress = Callable[[int, int], None]  # (bytes done, bytes total), called per chunk

CHUNK = 1 << 20
MAX_ATTEMPTS = 12  # per file: a hard bound on the retry loop
MAX_STALLED = 3  # attempts in a row that brought no new byte before we give up
DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
BLOB_RE = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
DRIVE_RE = re.compile(r"^[A-Za-z]:")


# ----------------------------------------------------------------------------- validation


def safe_relpath(name: object) -> str:
    """A repo file name that is safe as a relative path under the snapshot, or UnsafeRepoError.

    Checked before anything is written: a hostile listing must not reach outside the cache.
    """
    bad = not isinstance(name, str) or not name or len(name) > 1024
    if not bad:
        assert isinstance(name, str)
        parts = name.split("/")
        bad = (
            "\x00" in name or "\\" in name or name.startswith("/") or bool(DRIVE_RE.match(name))
            or any(p in ("", ".", "..") for p in parts)
            or any(ord(c) < 32 for c in name)
        )  # fmt: skip
    if bad:
        raise UnsafeRepoError(
            f"Refusing repo file name {name!r}: not a plain relative path. Nothing was written."
        )
    return str(name)


def check_commit(sha: object) -> str:
    if not isinstance(sha, str) or not COMMIT_RE.match(sha):
        raise UnsafeRepoError(f"The hub answered with an invalid commit id {sha!r}")
    return sha


def check_blob_name(etag: object, path: str) -> str:
    if not isinstance(etag, str) or not BLOB_RE.match(etag):
        raise UnsafeRepoError(f"The hub answered with an invalid ETag {etag!r} for {path}")
    return etag


def check_ref(ref: str) -> str:
    """Branch names become files under ``refs/``: no traversal, no odd characters."""
    parts = ref.split("/")
    if any(p in ("", ".", "..") for p in parts) or "\\" in ref or "\x00" in ref:
        raise UnsafeRepoError(f"Refusing revision name {ref!r}")
    return ref


def inside(base: Path, rel: str) -> Path:
    """``base/rel``, asserting lexically that it stays under ``base`` (belt and braces)."""
    target = Path(os.path.normpath(base / rel))
    if not str(target).startswith(str(base) + os.sep):
        raise UnsafeRepoError(f"Refusing path {rel!r}: it leaves {base}")
    return target


# ----------------------------------------------------------------------------- one blob


@dataclass(frozen=True)
class RemoteFile:
    path: str  # repo-relative, validated
    url: str  # where the bytes are (the CDN location for LFS files)
    etag: str  # the blob name in the cache
    size: int
    sha256: str | None  # expected content sha256 (LFS files)
    git_oid: str | None  # expected git blob id (regular files)
    send_auth: bool  # False for a CDN on another origin, like huggingface_hub


@dataclass
class Tally:
    """Byte counters for one pull, and the progress callback they feed."""

    total: int = 0
    done: int = 0
    downloaded: int = 0
    resumed: int = 0
    files_downloaded: int = 0
    files_reused: int = 0
    progress: Progress | None = None

    def add(self, n: int, *, network: bool) -> None:
        self.done += n
        if network:
            self.downloaded += n
        if self.progress is not None:
            self.progress(self.done, self.total)


def blob_ok(path: Path, rf: RemoteFile, *, thorough: bool) -> bool:
    """Is a blob already in the cache usable? Size always; content too when ``thorough``."""
    try:
        if path.stat().st_size != rf.size:
            return False
    except OSError:
        return False
    return not thorough or content_matches(path, rf)


def content_matches(path: Path, rf: RemoteFile) -> bool:
    if rf.sha256:
        return file_digest(path, "sha256", None) == rf.sha256
    if rf.git_oid:
        return file_digest(path, "sha1", rf.size) == rf.git_oid
    return True  # no hash the hub vouches for: the size check is all we can do


def file_digest(path: Path, algo: str, git_size: int | None) -> str:
    """sha256 of the content, or (with ``git_size``) git's blob id: sha1("blob N\\0" + data)."""
    h = hashlib.new(algo)
    if git_size is not None:
        h.update(b"blob %d\x00" % git_size)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch_blob(
    client: httpx.Client,
    rf: RemoteFile,
    blobs: Path,
    lock_path: Path,
    headers: dict[str, str],
    tally: Tally,
    *,
    thorough: bool = False,
) -> None:
    """Make ``blobs/<etag>`` hold the verified file, downloading or resuming as needed."""
    from huggingface_hub.utils import WeakFileLock

    blob = blobs / rf.etag
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(lock_path):
        try:
            if blob_ok(blob, rf, thorough=thorough):
                tally.files_reused += 1
                tally.add(rf.size, network=False)
            else:
                blob.unlink(missing_ok=True)  # wrong size or content: never reuse it
                _download_verified(client, rf, blob, headers, tally)
                tally.files_downloaded += 1
        finally:
            # rm reads leftover lock files as a running pull, so ours goes, as the last step
            # while still held: whoever locks the path after this finds the work done (or the
            # partial to resume), and filelock 4 re-checks after flock that its inode is still
            # linked, so a waiter on the old file retries. Even a lock library without that
            # check cannot admit a bad blob: two writers of one partial fail its hash check.
            lock_path.unlink(missing_ok=True)


def _download_verified(
    client: httpx.Client, rf: RemoteFile, blob: Path, headers: dict[str, str], tally: Tally
) -> None:
    partial = blob.with_name(blob.name + ".incomplete")
    try:
        if rf.size == 0:
            partial.write_bytes(b"")  # nothing to fetch, but the blob must exist
        _transfer(client, rf, partial, headers, tally)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise _disk_full(partial, rf) from exc
        raise
    if not content_matches(partial, rf):
        partial.unlink(missing_ok=True)
        want = rf.sha256 or rf.git_oid
        raise HashMismatchError(
            f"{rf.path}: the downloaded bytes do not match the hub's hash ({want}). "
            "The bad file was deleted and no snapshot was made; run the pull again. If it keeps "
            "failing, something between you and the hub alters the data."
        )
    with partial.open("rb") as fh:
        os.fsync(fh.fileno())  # durable before it becomes the blob
    os.replace(partial, blob)


def _disk_full(partial: Path, rf: RemoteFile) -> DiskFullError:
    have = partial.stat().st_size if partial.exists() else 0
    return DiskFullError(
        f"Disk full while writing {rf.path} into {partial.parent}: {_mb(have)} of {_mb(rf.size)} "
        "written. Free some space and run the same pull again; it resumes from there. "
        "No snapshot was made.",
        path=str(partial.parent),
        written_bytes=have,
    )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _transfer(
    client: httpx.Client, rf: RemoteFile, partial: Path, headers: dict[str, str], tally: Tally
) -> None:
    """Bring ``partial`` to ``rf.size`` bytes, resuming with Range; bounded retries."""
    have = _start_size(partial, rf)
    tally.resumed += have
    tally.add(have, network=False)
    stalled, last_error = 0, ""
    for _attempt in range(MAX_ATTEMPTS):
        if have >= rf.size:
            return
        try:
            _get_from(client, rf, partial, have, headers, tally)
        except (httpx.TransportError, _Transient) as exc:
            last_error = str(exc) or type(exc).__name__
        now = partial.stat().st_size if partial.exists() else 0
        stalled = 0 if now > have else stalled + 1
        have = now
        if have >= rf.size:
            return
        if stalled >= MAX_STALLED:
            break
        if stalled:
            time.sleep(min(4.0, 0.25 * 2 ** (stalled - 1)))
    raise NetworkError(
        f"Network failure while downloading {rf.path} ({last_error or 'connection closed'}): "
        f"{_mb(have)} of {_mb(rf.size)} kept. Run the same pull again to resume.",
        kept_bytes=have,
    )


def _start_size(partial: Path, rf: RemoteFile) -> int:
    try:
        have = partial.stat().st_size
    except OSError:
        return 0
    if have > rf.size:  # not a prefix of this file: start over
        partial.unlink()
        return 0
    return have


class _Transient(Exception):
    """A server answer worth retrying (5xx, 429, a Range the server did not honour)."""


def _get_from(
    client: httpx.Client,
    rf: RemoteFile,
    partial: Path,
    have: int,
    headers: dict[str, str],
    tally: Tally,
) -> None:
    req = dict(headers) if rf.send_auth else _without_auth(headers)
    if have:
        req["Range"] = f"bytes={have}-"
    with client.stream("GET", rf.url, headers=req) as resp:
        offset = _check_response(resp, have, rf)
        if offset != have:  # Range ignored (200) or refused (416): start the file over
            tally.add(-have, network=False)
            partial.unlink(missing_ok=True)
            if offset < 0:
                return
        with open(partial, "ab" if offset else "wb", buffering=0) as fh:
            for chunk in resp.iter_bytes():  # as it arrives: a cut loses nothing buffered
                _write_all(fh, chunk)
                tally.add(len(chunk), network=True)
                if fh.tell() > rf.size:
                    raise _Transient("server sent more bytes than the file has")


def _check_response(resp: httpx.Response, have: int, rf: RemoteFile) -> int:
    """The offset the body starts at; raises for errors (transient ones retryable)."""
    from huggingface_hub.utils import hf_raise_for_status

    if resp.status_code == 206:
        start = _content_range_start(resp.headers.get("Content-Range", ""))
        if start != have:
            raise _Transient(f"server answered Range {have} with {start}")
        return have
    if resp.status_code == 200:
        return 0
    if resp.status_code == 416:  # the server does not know our partial's length as a prefix
        return -1
    resp.read()
    if resp.status_code >= 500 or resp.status_code == 429:
        raise _Transient(f"HTTP {resp.status_code}")
    hf_raise_for_status(resp)
    raise DownloadFailedError(f"Unexpected HTTP {resp.status_code} for {rf.path}")


def _content_range_start(value: str) -> int:
    m = re.match(r"^bytes (\d+)-\d+/\d+$", value.strip())
    return int(m[1]) if m else -1


def _write_all(fh: object, data: bytes) -> None:
    """Unbuffered writes: what is on disk is always a correct prefix, even after ENOSPC."""
    view = memoryview(data)
    while view:
        n = fh.write(view)  # type: ignore[attr-defined]
        view = view[n:]


def _without_auth(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != "authorization"}


def same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


# ----------------------------------------------------------------------------- snapshot


def check_space(directory: Path, files: Iterable[RemoteFile]) -> None:
    """Refuse up front when the blobs cannot fit (huggingface_hub only warns)."""
    need = 0
    for rf in files:
        blob = directory / rf.etag
        if blob.exists():
            continue
        partial = blob.with_name(blob.name + ".incomplete")
        need += rf.size - (partial.stat().st_size if partial.exists() else 0)
    free = shutil.disk_usage(directory).free
    if need > free:
        raise DiskFullError(
            f"Not enough disk space in {directory}: the download needs {_mb(need)} more, "
            f"{_mb(free)} is free. Free some space (or point HF_HOME elsewhere) and pull again.",
            needed_bytes=need,
            free_bytes=free,
        )


def link_snapshot(repo_dir: Path, commit: str, files: list[RemoteFile]) -> Path:
    """Create ``snapshots/<commit>`` in one rename; fix links in place if it already exists."""
    snaps = repo_dir / "snapshots"
    snap = inside(snaps, check_commit(commit))
    snaps.mkdir(parents=True, exist_ok=True)
    if snap.is_dir():
        _merge_links(repo_dir, snap, files)
        return snap
    tmp = snaps / f".{commit}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        for rf in files:
            link = inside(tmp, rf.path)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(_link_target(repo_dir, snap, rf))
        os.rename(tmp, snap)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not snap.is_dir():
            raise
        _merge_links(repo_dir, snap, files)  # a concurrent pull made it first
    return snap


def _link_target(repo_dir: Path, snap: Path, rf: RemoteFile) -> str:
    final = inside(snap, rf.path)
    return os.path.relpath(repo_dir / "blobs" / rf.etag, final.parent)


def _merge_links(repo_dir: Path, snap: Path, files: list[RemoteFile]) -> None:
    for rf in files:
        link = inside(snap, rf.path)
        target = _link_target(repo_dir, snap, rf)
        if link.is_symlink() and os.readlink(link) == target:
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        tmp = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.symlink_to(target)
        os.replace(tmp, link)  # atomic: readers see the old or the new link


def write_ref(repo_dir: Path, ref: str, commit: str) -> None:
    path = inside(repo_dir / "refs", check_ref(ref))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(commit, encoding="utf-8")
    os.replace(tmp, path)

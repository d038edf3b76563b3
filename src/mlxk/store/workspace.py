"""Workspaces: model directories with an optional ``.mlxk_workspace.json`` sentinel.

The content hash (algorithm "v2") is byte-compatible with mlx-knife's, so a workspace made by
either tool reads the same: safetensors hash their JSON header only, other files their full
content up to 1 GiB, larger files their name and size; symlinks hash their target path.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import tempfile
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlxk import __version__
from mlxk.errors import WorkspaceError
from mlxk.store.safetensors_header import SafetensorsHeaderError, header_bytes

SENTINEL = ".mlxk_workspace.json"
HASH_ALGORITHM = "v2"
FULL_HASH_LIMIT = 1 << 30
DEFAULT_EXCLUDES = [
    ".hf_cache/", ".mlxk_workspace.json", ".git/", ".github/", "__pycache__/", ".vscode/",
    ".idea/", ".ipynb_checkpoints/", ".mypy_cache/", ".pytest_cache/", ".ruff_cache/", ".tox/",
    "node_modules/", ".venv/", "venv/", "*.lock", "*.tmp", "*.log", "*.bak", ".DS_Store", "._*",
    ".Spotlight-V100/", ".Trashes/", ".fseventsd/", ".TemporaryItems/", ".apdisk", "Icon\r",
    "Thumbs.db", "desktop.ini", "$RECYCLE.BIN/", "System Volume Information/", "*~", ".*.swp",
    ".*.swo",
]  # fmt: skip


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_workspace(path: Path) -> bool:
    return (path / "config.json").is_file()


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON next to ``path`` in a temp file, fsync, then rename over it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_sentinel(path: Path) -> dict[str, Any] | None:
    """The sentinel dict, or None when absent or unreadable (never raises)."""
    try:
        data = json.loads((path / SENTINEL).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class HashAbort(Exception):
    """The tree cannot be hashed safely (corrupt safetensors, symlink leaving the root)."""


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    mtime_ns: int
    sha: str


def _excluded(name: str, is_dir: bool, patterns: list[str]) -> bool:
    for pat in patterns:
        if pat.endswith("/"):
            if is_dir and fnmatch.fnmatchcase(name, pat[:-1]):
                return True
        elif not is_dir and fnmatch.fnmatchcase(name, pat):
            return True
    return False


def _sha_safetensors_header(path: Path) -> str:
    try:
        header = header_bytes(path)
    except SafetensorsHeaderError as exc:
        raise HashAbort(f"corrupt safetensors header: {path.name}") from exc
    return "sha256:" + hashlib.sha256(header).hexdigest()


def _sha_file(path: Path, size: int) -> str:
    if path.name.endswith(".safetensors"):
        return _sha_safetensors_header(path)
    h = hashlib.sha256()
    if size > FULL_HASH_LIMIT:
        h.update(path.name.encode("utf-8") + b"\x00" + str(size).encode("ascii"))
        return "sha256:" + h.hexdigest()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def _sha_symlink(root: Path, link: Path) -> str:
    target = os.readlink(link)
    resolved = (link.parent / target).resolve()
    try:
        rel = resolved.relative_to(root.resolve())
    except ValueError as exc:
        raise HashAbort(f"symlink leaves the workspace: {link.name}") from exc
    if not resolved.exists():
        raise HashAbort(f"broken symlink: {link.name}")
    payload = b"SYMLINK\x00" + unicodedata.normalize("NFC", rel.as_posix()).encode("utf-8")
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def walk_files(root: Path, excludes: list[str]) -> list[tuple[str, Path]]:
    """(relative NFC posix path, absolute path) depth-first, sorted by NFC name, no follow."""
    out: list[tuple[str, Path]] = []

    def visit(directory: Path, prefix: str) -> None:
        entries = sorted(os.scandir(directory), key=lambda e: unicodedata.normalize("NFC", e.name))
        for entry in entries:
            name = unicodedata.normalize("NFC", entry.name)
            is_dir = entry.is_dir(follow_symlinks=False)
            if _excluded(name, is_dir, excludes):
                continue
            rel = f"{prefix}{name}"
            if is_dir:
                visit(Path(entry.path), rel + "/")
            else:
                out.append((rel, Path(entry.path)))

    visit(root, "")
    return out


def hash_entry(root: Path, rel: str, path: Path) -> FileEntry:
    if path.is_symlink():
        return FileEntry(rel, 0, 0, _sha_symlink(root, path))
    st = path.stat()
    return FileEntry(rel, st.st_size, st.st_mtime_ns, _sha_file(path, st.st_size))


def aggregate(entries: list[FileEntry]) -> str:
    h = hashlib.sha256()
    for entry in sorted(entries, key=lambda e: e.path):
        h.update(entry.path.encode("utf-8") + b"\x00" + entry.sha.encode("ascii"))
    return "sha256:" + h.hexdigest()


def compute_content_hash(
    root: Path, excludes: list[str] | None = None
) -> tuple[str, list[FileEntry]]:
    pats = DEFAULT_EXCLUDES if excludes is None else excludes
    entries = [hash_entry(root, rel, path) for rel, path in walk_files(root, pats)]
    return aggregate(entries), entries


def build_sentinel(
    root: Path,
    *,
    operation: str,
    source_repo: str | None,
    source_revision: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    try:
        content_hash, entries = compute_content_hash(root)
    except (HashAbort, OSError) as exc:
        raise WorkspaceError(f"Cannot hash workspace {root}: {exc}") from exc
    now = utc_now()
    data: dict[str, Any] = {
        "mlxk_version": __version__,
        "created_at": now,
        "source_repo": source_repo,
        "source_revision": source_revision,
        "managed": True,
        "operation": operation,
    }
    data.update(extra or {})
    data.update(
        hash_algorithm=HASH_ALGORITHM,
        content_hash=content_hash,
        hash_modified=now,
        exclude_patterns=list(DEFAULT_EXCLUDES),
        file_index=[e.__dict__ for e in entries],
    )
    return data


def write_sentinel(root: Path, data: dict[str, Any]) -> None:
    atomic_write_json(root / SENTINEL, data)


def _valid_index_path(p: object) -> bool:
    if not isinstance(p, str) or not p or "\x00" in p or "\\" in p:
        return False
    if p.startswith("/") or (len(p) > 1 and p[1] == ":"):
        return False
    return ".." not in p.split("/")


def clean_state(root: Path, sentinel: dict[str, Any] | None) -> bool | None:
    """True/False when the v2 file index can decide, None when it cannot.

    Unlike mlx-knife this never writes: reading a model must not change it on disk.
    Files whose mtime drifted are re-hashed and compared instead of self-healed.
    """
    if not sentinel or sentinel.get("hash_algorithm") != HASH_ALGORITHM:
        return None
    index = sentinel.get("file_index")
    if not isinstance(index, list) or not all(
        isinstance(e, dict) and _valid_index_path(e.get("path")) for e in index
    ):
        return None
    excludes = sentinel.get("exclude_patterns")
    pats = excludes if isinstance(excludes, list) else DEFAULT_EXCLUDES
    try:
        current = dict(walk_files(root, [str(p) for p in pats]))
    except OSError:
        return None
    if set(current) != {e["path"] for e in index}:
        return False
    try:
        return all(_entry_unchanged(root, current[e["path"]], e) for e in index)
    except (OSError, HashAbort):
        return False


def _entry_unchanged(root: Path, path: Path, entry: dict[str, Any]) -> bool:
    if path.is_symlink():
        return _sha_symlink(root, path) == entry.get("sha")
    st = path.stat()
    if st.st_size != entry.get("size"):
        return False
    if st.st_mtime_ns == entry.get("mtime_ns"):
        return True
    return _sha_file(path, st.st_size) == entry.get("sha")

"""Workspace maintenance: refreshing a sentinel's content hash."""

from __future__ import annotations

from pathlib import Path

from mlxk.errors import WorkspaceError
from mlxk.store.workspace import (
    compute_content_hash,
    read_sentinel,
    utc_now,
    write_sentinel,
)


def refresh_sentinel_hash(root: Path) -> str:
    """Recompute content hash v2 (also migrates v1 sentinels) and persist it atomically."""
    sentinel = read_sentinel(root)
    if sentinel is None:
        raise WorkspaceError(f"{root} is not a managed workspace (no readable sentinel)")
    content_hash, entries = compute_content_hash(root)
    sentinel.update(
        hash_algorithm="v2",
        content_hash=content_hash,
        hash_modified=utc_now(),
        file_index=[e.__dict__ for e in entries],
    )
    sentinel.setdefault("exclude_patterns", [])
    write_sentinel(root, sentinel)
    return content_hash

"""JSON shape of ``push``, field-compatible with mlx-knife's (docs/hub.md).

Which keys appear depends on the mode, as in mlx-knife: the dry-run keys only after a
dry run, ``change_summary`` only after a comparison with the hub.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mlxk.ops.hub.push import PushResult
from mlxk.store.health import WorkspaceHealth

DISCLAIMER = "Experimental: uploads the workspace files as they are; review the result on the hub."
SHOWN_FILES = 20  # file lists in a dry run are capped


def push_object(res: PushResult) -> dict[str, Any]:
    data: dict[str, Any] = {
        "repo_id": res.repo_id, "branch": res.branch, "commit_sha": res.commit_sha,
        "commit_url": res.commit_url, "repo_url": res.repo_url,
        "uploaded_files_count": res.uploaded_files_count,
        "local_files_count": len(res.local_files), "local_bytes": res.local_bytes,
        "no_changes": res.no_changes, "created_repo": res.created_repo, "message": res.message,
        "experimental": True, "disclaimer": DISCLAIMER,
    }  # fmt: skip
    if res.health is not None:
        data["workspace_health"] = workspace_health_object(res.health)
    elif res.mode == "dry-run":
        data |= _dry_run_fields(res)
    elif res.changes is not None:
        data["change_summary"] = res.changes.summary()
    return data


def _dry_run_fields(res: PushResult) -> dict[str, Any]:
    n = SHOWN_FILES
    ch = res.changes
    if ch is None:  # the hub was not asked: every local file counts as added
        summary = {"added": len(res.local_files), "modified": None, "deleted": 0}
        return {
            "dry_run": True, "remote_checked": False, "remote_error": res.remote_error,
            "change_summary": summary, "dry_run_summary": summary,
            "would_create_repo": None, "would_create_branch": None,
            "added_files": list(res.local_files[:n]), "deleted_files": [],
        }  # fmt: skip
    return {
        "dry_run": True, "remote_checked": True,
        "change_summary": ch.summary(), "dry_run_summary": ch.summary(),
        "would_create_repo": res.remote_state == "no_repo",
        "would_create_branch": res.remote_state != "ok",
        "added_files": ch.added[:n], "modified_files": ch.modified[:n], "deleted_files": [],
        "remote_only_files": ch.remote_only[:n],
    }  # fmt: skip


def workspace_health_object(health: WorkspaceHealth) -> dict[str, Any]:
    """mlx-knife's ``workspace_health``; ``parse_error``, ``path``, ``missing`` only when set."""
    data = dataclasses.asdict(health)
    index = data["weights"]["index"]
    if not index["parse_error"]:
        del index["parse_error"]
    data["anomalies"] = [{k: v for k, v in a.items() if v is not None} for a in data["anomalies"]]
    data["healthy"] = health.healthy
    return data

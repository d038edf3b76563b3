"""JSON shapes of model records, kept field-compatible with mlx-knife's ``modelObject``."""

from __future__ import annotations

from typing import Any

from mlxk.backends.select import backends_by_input
from mlxk.ops.catalog import ModelRecord, ShowResult
from mlxk.store.hf_cache import CacheWarning
from mlxk.types import ModelInfo


def model_object(rec: ModelRecord) -> dict[str, Any]:
    m, info, ws = rec.model, rec.info, rec.sentinel or {}
    obj: dict[str, Any] = {
        "name": m.name,
        "hash": m.commit,
        "size_bytes": rec.size_bytes,
        "last_modified": rec.last_modified,
        "framework": info.framework.value,
        "model_type": info.model_type,
        "capabilities": list(info.capabilities),
        "health": "healthy" if rec.health.healthy else "unhealthy",
        "runtime_compatible": rec.runtime.compatible,
        "reason": rec.reason,
        "cached": m.cached,
        "origin": ws.get("source_repo"),
        "content_hash": ws.get("content_hash"),
        "hash_modified": ws.get("hash_modified"),
        "clean": rec.clean,
        # mlxk additions (extra fields are allowed by the schema)
        "audio_backend": info.audio_backend.value if info.audio_backend else None,
        "backend": rec.runtime.backend.value if rec.runtime.backend else None,
        "context_length": info.context_length,
    }
    if not m.cached:
        obj["display_name"] = m.display_name
    return obj


def metadata_block(info: ModelInfo, config: dict[str, Any] | None) -> dict[str, Any] | None:
    cfg = config or {}
    meta: dict[str, Any] = {}
    for key in ("model_type", "vocab_size", "hidden_size", "num_attention_heads"):
        if key in cfg:
            meta[key] = cfg[key]
    if "num_hidden_layers" in cfg:
        meta["num_hidden_layers"] = cfg["num_hidden_layers"]
    if info.architecture:
        meta["architecture"] = info.architecture
    if info.quantization and "bits" in info.quantization:
        meta["quantization"] = f"{info.quantization['bits']}bit"
    if info.context_length:
        meta["context_length"] = info.context_length
    return meta or None


def show_object(res: ShowResult, config: dict[str, Any] | None) -> dict[str, Any]:
    rec = res.record
    model = model_object(rec) | {"quantization": rec.info.quantization}
    data: dict[str, Any] = {
        "model": model,
        "backends": backends_by_input(rec.info),
        "workspace_metadata": rec.sentinel,
        "files": None,
        "config": None,
        "metadata": None,
    }
    if res.files is not None:
        data["files"] = [
            {"name": n, "size": human_size(s), "size_bytes": s, "type": t} for n, s, t in res.files
        ]
    elif res.config is not None:
        data["config"] = res.config
    else:
        data["metadata"] = metadata_block(rec.info, config)
    if res.hash_updated:
        data["hash_updated"] = True
    return data


def warning_objects(warnings: list[CacheWarning]) -> list[dict[str, Any]]:
    """``data.warnings`` of list and health: cache entries that could not be read."""
    return [{"path": str(w.path), "repo_id": w.repo_id, "reason": w.reason} for w in warnings]


def human_size(n: int) -> str:
    if n < 1000:
        return f"{n}B"
    value = float(n)
    for unit in ("KB", "MB", "GB", "TB", "PB"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f}{unit}"
    return f"{value:.1f}EB"

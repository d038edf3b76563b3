"""list / show / health: what is installed and in what state. Typed results, no printing."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlxk.config import Settings
from mlxk.errors import AmbiguousMatchError, ModelNotFoundError
from mlxk.store.health import check_health
from mlxk.store.hf_cache import CacheWarning
from mlxk.store.probe import ModelFiles, probe
from mlxk.store.resolve import Resolver
from mlxk.store.runtime import RuntimeVerdict, runtime_check
from mlxk.store.workspace import clean_state, read_sentinel
from mlxk.types import HealthReport, LocalModel, ModelInfo


@dataclass(frozen=True)
class ModelRecord:
    model: LocalModel
    info: ModelInfo
    health: HealthReport
    runtime: RuntimeVerdict
    size_bytes: int
    last_modified: str | None
    sentinel: dict[str, Any] | None
    clean: bool | None

    @property
    def runnable(self) -> bool:
        return self.health.healthy and self.runtime.compatible

    @property
    def reason(self) -> str | None:
        return None if self.health.healthy and self.runtime.compatible else self.runtime.reason


def _mtime_utc(path: Path) -> str | None:
    try:
        ts = os.stat(path).st_mtime
    except OSError:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_record(model: LocalModel) -> ModelRecord:
    files = ModelFiles.read(model.path) if model.path.is_dir() else ModelFiles(model.path)
    info = probe(model, files)
    health = check_health(model, files)
    sentinel = None if model.cached else read_sentinel(model.path)
    return ModelRecord(
        model=model,
        info=info,
        health=health,
        runtime=runtime_check(info, files, health),
        size_bytes=files.total_size,
        last_modified=_mtime_utc(model.path),
        sentinel=sentinel,
        clean=clean_state(model.path, sentinel) if sentinel else None,
    )


@dataclass(frozen=True)
class Catalog:
    records: list[ModelRecord]
    warnings: list[CacheWarning]  # cache entries that could not be read


def catalog(settings: Settings, pattern: str | None = None) -> Catalog:
    """``mlxk list``: every model matching ``pattern``, and what could not be read."""
    scan = Resolver(settings).scan(pattern)
    return Catalog([build_record(m) for m in scan.models], scan.warnings)


def list_models(settings: Settings, pattern: str | None = None) -> list[ModelRecord]:
    return catalog(settings, pattern).records


@dataclass(frozen=True)
class ShowResult:
    record: ModelRecord
    files: list[tuple[str, int, str]] | None  # (relative name, size, kind) with --files
    config: dict[str, Any] | None  # raw config.json with --config
    hash_updated: bool = False


def file_kind(name: str) -> str:
    base = name.split("/")[-1]
    if base == "config.json":
        return "config"
    if base.endswith((".safetensors", ".bin", ".gguf")) or ".bin.part" in base:
        return "weights"
    if "tokenizer" in base:
        return "tokenizer"
    if base.endswith(".json"):
        return "config"
    return "readme" if base == "README.md" else "other"


def show_model(settings: Settings, spec: str, *, files: bool, config: bool) -> ShowResult:
    model = Resolver(settings).resolve(spec).model
    record = build_record(model)
    listing = None
    if files:
        names = ModelFiles.read(model.path).names if model.path.is_dir() else []
        listing = [(n, _size(model.path / n), file_kind(n)) for n in names]
    raw = ModelFiles.read(model.path).config if config and not files else None
    return ShowResult(record, listing, raw)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _label(m: LocalModel) -> str:
    return m.name if m.cached else (m.display_name or m.name)


@dataclass(frozen=True)
class HealthResult:
    entries: list[tuple[str, HealthReport]]
    warnings: list[CacheWarning] = field(default_factory=list)


def health_models(settings: Settings, pattern: str | None) -> HealthResult:
    resolver = Resolver(settings)
    scan = resolver.scan(pattern)
    models = scan.models
    if pattern is not None:
        try:
            models = [resolver.resolve(pattern).model]
        except AmbiguousMatchError:
            raise
        except ModelNotFoundError:
            pass  # no single model: every one the fragment matches
    entries = [
        (m.display_name or m.name if not m.cached else m.name, check_health(m)) for m in models
    ]
    return HealthResult(entries, scan.warnings)

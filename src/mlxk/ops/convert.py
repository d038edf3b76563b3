"""convert (quantize, cast, repair the index) and clone: new managed workspaces from models."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from mlxk.config import Settings
from mlxk.errors import ConversionError, UsageError
from mlxk.ops.staging import ensure_outside_cache, staged_dir, target_path
from mlxk.store.health import check_health
from mlxk.store.resolve import Resolver, workspace_model
from mlxk.store.workspace import SENTINEL, build_sentinel, read_sentinel, write_sentinel
from mlxk.types import HealthReport, LocalModel

QUANT_BITS = (2, 3, 4, 6, 8)
DTYPES = ("float16", "bfloat16", "float32")


@dataclass(frozen=True)
class ConvertResult:
    source: str
    target: Path
    mode: str  # quantize / dtype / repair-index / clone
    health: HealthReport
    warning: str | None = None
    bits: int | None = None
    group_size: int | None = None
    content_hash: str | None = None


def _source_name(model: LocalModel) -> str:
    sentinel = None if model.cached else read_sentinel(model.path)
    return str((sentinel or {}).get("source_repo") or model.name)


def copy_model_files(src: Path, dst: Path) -> None:
    """Copy a snapshot or workspace (following cache symlinks), skipping our own sentinel."""
    for item in sorted(src.iterdir()):
        if item.name in (SENTINEL, ".hf_cache", ".git"):
            continue
        if item.is_dir():
            shutil.copytree(item, dst / item.name, symlinks=False)
        else:
            shutil.copy2(item, dst / item.name)


def convert_model(
    settings: Settings,
    src_spec: str,
    dst: str,
    *,
    quantize: int | None = None,
    q_group_size: int = 64,
    dtype: str | None = None,
    repair_index: bool = False,
) -> ConvertResult:
    modes = [
        m
        for m, on in (("quantize", quantize), ("dtype", dtype), ("repair-index", repair_index))
        if on
    ]
    if len(modes) != 1:
        raise UsageError("Choose exactly one of --quantize, --dtype or --repair-index")
    if quantize is not None and quantize not in QUANT_BITS:
        raise UsageError(f"--quantize must be one of {', '.join(map(str, QUANT_BITS))}")
    if dtype is not None and dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}")
    source = Resolver(settings).resolve(src_spec).model
    target = target_path(settings, dst, "")
    ensure_outside_cache(settings, target, "target")
    warning = None
    with staged_dir(target) as tmp:
        warning = _run_mode(modes[0], source.path, tmp, quantize, q_group_size, dtype)
        extra: dict[str, object] = {"mode": modes[0]}
        if quantize is not None:
            extra["quantization"] = {"bits": quantize, "group_size": q_group_size}
        sentinel = build_sentinel(
            tmp, operation="convert", source_repo=_source_name(source),
            source_revision=source.commit, extra=extra,
        )  # fmt: skip
        write_sentinel(tmp, sentinel)
    health = check_health(workspace_model(target))
    return ConvertResult(
        src_spec, target, modes[0], health, warning, quantize,
        q_group_size if quantize else None, sentinel["content_hash"],
    )  # fmt: skip


def _run_mode(
    mode: str, src: Path, out: Path, bits: int | None, group: int, dtype: str | None
) -> str | None:
    from mlxk.backends.platform import setup_platform

    setup_platform()  # before mlx loads: the BLAS preload and library settings
    from mlxk.backends import convert as engine

    if mode == "repair-index":
        copy_model_files(src, out)
        if not list(out.glob("*.safetensors")):
            raise ConversionError("No safetensors shards to index in the source model")
        engine.repair_index(out)
        return None
    if mode == "quantize":
        assert bits is not None
        return engine.quantize_model(src, out, bits=bits, group_size=group)
    assert dtype is not None
    engine.cast_model(src, out, dtype=dtype)
    return None


def clone_model(settings: Settings, spec: str, dst: str | None) -> ConvertResult:
    """Copy a cached model (or a workspace) into a new managed workspace."""
    model = Resolver(settings).resolve(spec).model
    if not model.path.is_dir():
        raise ConversionError(f"{model.name} has no usable snapshot: {model.problem or 'missing'}")
    target = target_path(settings, dst, model.name.split("/")[-1])
    ensure_outside_cache(settings, target, "target")
    with staged_dir(target) as tmp:
        copy_model_files(model.path, tmp)
        sentinel = build_sentinel(
            tmp, operation="clone", source_repo=_source_name(model), source_revision=model.commit
        )
        write_sentinel(tmp, sentinel)
    health = check_health(workspace_model(target))
    return ConvertResult(spec, target, "clone", health, content_hash=sentinel["content_hash"])

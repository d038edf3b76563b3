"""import: models from other ecosystems (GGUF, CTranslate2 Whisper) → managed MLX workspaces."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlxk.config import Settings
from mlxk.errors import ImportFormatError, TargetExistsError, ValidationError
from mlxk.ops.staging import check_free_target, ensure_outside_cache, staged_dir, target_path
from mlxk.store.workspace import build_sentinel, write_sentinel

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ImportResult:
    source: str
    target: Path
    format: str  # "gguf" / "ct2-whisper"
    name: str
    source_sha256: str
    details: dict[str, object]


def detect_format(src: Path) -> str:
    from mlxk.importers.ct2_whisper import looks_like_ct2_whisper
    from mlxk.importers.gguf_llama import looks_like_gguf

    if not src.exists():
        raise ValidationError(f"No such file or directory: {src}")
    if looks_like_gguf(src):
        return "gguf"
    if looks_like_ct2_whisper(src):
        return "ct2-whisper"
    raise ImportFormatError(
        f"Cannot import {src}: not a GGUF file nor a CTranslate2 Whisper model "
        "(supported: GGUF llama-family text models, faster-whisper model folders)"
    )


def import_model(
    settings: Settings,
    src: Path,
    dst: str | None,
    *,
    extra_parts: Sequence[Path] = (),
    quantize: int | None = None,
    q_group_size: int = 64,
    progress: Progress | None = None,
) -> ImportResult:
    src = src.expanduser().absolute()
    fmt = detect_format(src)
    _prepare_platform(settings)
    if dst is not None:
        target = target_path(settings, dst, "")
        ensure_outside_cache(settings, target, "target")
        check_free_target(target)
    # Without a target name we learn the model's name only by reading it: build in a
    # scratch dir under the workspace home, then move it to <home>/<name>.
    scratch_parent = (settings.workspace_home or Path.cwd()).absolute()
    holder = target if dst is not None else scratch_parent / f".mlxk-import-{os.getpid()}"
    ensure_outside_cache(settings, holder, "target")
    with staged_dir(holder) as tmp:
        name, sha, details = _run_importer(
            fmt, src, tmp, extra_parts, quantize, q_group_size, progress
        )
        _write_import_sentinel(tmp, src, fmt, sha, details)
    final = holder if dst is not None else _move_to_named(holder, scratch_parent / _slug(name))
    return ImportResult(str(src), final, fmt, name, sha, details)


def _prepare_platform(settings: Settings) -> None:
    """Importers use MLX and transformers: set the platform up first (BLAS before mlx)."""
    from mlxk.backends.platform import setup_platform

    setup_platform(settings)


def _run_importer(
    fmt: str,
    src: Path,
    out: Path,
    extra_parts: Sequence[Path],
    quantize: int | None,
    q_group_size: int,
    progress: Progress | None,
) -> tuple[str, str, dict[str, object]]:
    if fmt == "gguf":
        from mlxk.importers.gguf_llama import import_gguf

        if extra_parts:
            raise ValidationError("--part applies to split CTranslate2 model.bin files only")
        g = import_gguf(src, out, quantize=quantize, q_group_size=q_group_size, progress=progress)
        details: dict[str, object] = {
            "architecture": g.architecture,
            "source_quantization": g.source_quantization,
            "dtype": g.dtype,
            "quantization": g.quantization,
            "n_params": g.n_params,
            "warnings": list(g.warnings),
        }
        return g.name_guess, g.source_sha256, details
    from mlxk.importers.ct2_whisper import import_ct2_whisper

    if quantize is not None:
        raise ValidationError("--quantize applies to GGUF imports only")
    w = import_ct2_whisper(src, out, extra_parts=list(extra_parts), progress=progress)
    info: dict[str, object] = {
        "multilingual": w.multilingual,
        "layers": list(w.layers),
        "source": w.source,
    }
    return w.name, w.sha256, info


def _write_import_sentinel(
    root: Path, src: Path, fmt: str, sha: str, details: dict[str, object]
) -> None:
    extra: dict[str, object] = {
        "source_path": str(src),
        "source_sha256": f"sha256:{sha}",
        "source_format": fmt,
    }
    if details.get("quantization"):
        extra["quantization"] = details["quantization"]
    write_sentinel(
        root, build_sentinel(root, operation="import", source_repo=str(src), extra=extra)
    )


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name.split("/")[-1]).strip("-.")
    return slug or "imported-model"


def _move_to_named(holder: Path, final: Path) -> Path:
    try:
        check_free_target(final)
    except TargetExistsError:
        # Keep nothing behind: the user asked for no partial output.
        shutil.rmtree(holder, ignore_errors=True)
        raise
    holder.rename(final)
    return final

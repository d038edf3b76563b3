"""Quantize or cast an MLX model with mlx-lm's public utilities; rebuild a shard index."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

from mlxk.errors import ConversionError
from mlxk.store.safetensors_header import SafetensorsHeaderError, read_header, tensor_entries

INDEX_NAME = "model.safetensors.index.json"
QUANT_BITS = (2, 3, 4, 5, 6, 8)
QUANT_GROUP_SIZES = (32, 64, 128)
CAST_DTYPES = ("float16", "bfloat16", "float32")
# Files besides the weights that a converted model keeps unchanged (tokenizer, templates, code).
_SIDE_FILE_PATTERNS = (
    "tokenizer*", "special_tokens_map.json", "added_tokens.json", "generation_config.json",
    "chat_template*", "*.jinja", "*.tiktoken", "vocab.*", "merges.txt", "*.py",
)  # fmt: skip


def _copy_side_files(src: Path, out_dir: Path) -> None:
    for pattern in _SIDE_FILE_PATTERNS:
        for path in src.glob(pattern):
            if path.is_file():
                shutil.copy2(path, out_dir / path.name)


def _load(src: Path) -> tuple[Any, dict[str, Any]]:
    from mlx_lm.utils import load_model

    try:
        return load_model(Path(src), lazy=True)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise ConversionError(f"cannot load model at {src}: {exc}") from exc


def _save(model: Any, config: dict[str, Any], src: Path, out_dir: Path) -> None:
    from mlx_lm.utils import save_config, save_model

    out_dir.mkdir(parents=True, exist_ok=True)
    save_model(out_dir, model, donate_model=True)
    save_config(config, config_path=out_dir / "config.json")
    _copy_side_files(src, out_dir)


def _existing_bits(config: dict[str, Any]) -> int | None:
    quant = config.get("quantization") or config.get("quantization_config") or {}
    bits = quant.get("bits") if isinstance(quant, dict) else None
    return bits if isinstance(bits, int) else None


def quantize_model(src: Path, out_dir: Path, *, bits: int, group_size: int = 64) -> str | None:
    """Affine-quantize the model at ``src`` into ``out_dir`` (created if missing).

    An already quantized source is dequantized first. Returns a warning when that source had
    fewer bits than asked (re-quantizing cannot bring precision back), else None.
    """
    from mlx_lm.utils import dequantize_model
    from mlx_lm.utils import quantize_model as mlx_quantize

    if bits not in QUANT_BITS or group_size not in QUANT_GROUP_SIZES:
        raise ConversionError(
            f"unsupported quantization {bits}-bit / group {group_size}; bits: "
            f"{', '.join(map(str, QUANT_BITS))}; group sizes: "
            f"{', '.join(map(str, QUANT_GROUP_SIZES))}"
        )
    model, config = _load(src)
    warning = None
    if (old_bits := _existing_bits(config)) is not None:
        if bits > old_bits:
            warning = (
                f"Source already {old_bits}-bit. Quantizing to {bits}-bit does not increase "
                "precision."
            )
        model = dequantize_model(model)
        config.pop("quantization", None)
        config.pop("quantization_config", None)
    with contextlib.redirect_stdout(io.StringIO()):  # mlx-lm prints its bits-per-weight line
        model, config = mlx_quantize(model, config, group_size, bits)
    _save(model, config, Path(src), Path(out_dir))
    return warning


def cast_model(src: Path, out_dir: Path, dtype: str) -> None:
    """Cast the floating parameters of the model at ``src`` to ``dtype`` into ``out_dir``.

    Quantized weights stay packed; their scales and biases take the new dtype.
    """
    import mlx.core as mx
    from mlx.utils import tree_map_with_path

    if dtype not in CAST_DTYPES:
        raise ConversionError(f"unsupported dtype {dtype!r}; choose {', '.join(CAST_DTYPES)}")
    model, config = _load(src)
    target = getattr(mx, dtype)
    # Some mlx-lm models keep a few parameters in float32 on purpose; respect their predicate.
    keep = getattr(model, "cast_predicate", lambda _path: True)

    def cast(path: str, value: Any) -> Any:
        if keep(path) and mx.issubdtype(value.dtype, mx.floating):
            return value.astype(target)
        return value

    model.update(tree_map_with_path(cast, model.parameters()))
    config["torch_dtype"] = dtype
    _save(model, config, Path(src), Path(out_dir))


def _shard_map(model_dir: Path) -> tuple[dict[str, str], int]:
    weight_map: dict[str, str] = {}
    total = 0
    # Same selection as mlx-lm's loader: other *.safetensors (consolidated.*, adapters) are
    # not part of the model and would duplicate its tensors.
    shards = sorted(model_dir.glob("model*.safetensors"))
    if not shards:
        raise ConversionError(f"no model*.safetensors files in {model_dir}")
    for shard in shards:
        try:
            entries = tensor_entries(read_header(shard))
        except SafetensorsHeaderError as exc:
            raise ConversionError(f"cannot rebuild the index: {exc.message}") from exc
        for name, entry in entries.items():
            if name in weight_map:
                raise ConversionError(
                    f"tensor {name} is in both {weight_map[name]} and {shard.name}"
                )
            weight_map[name] = shard.name
            start, end = entry["data_offsets"]
            total += int(end) - int(start)
    return weight_map, total


def repair_index(model_dir: Path) -> dict[str, Any]:
    """Rebuild model.safetensors.index.json from the shard headers alone; returns it.

    No tensor is loaded. ``total_size`` is the sum of the tensors' bytes, as transformers and
    mlx-lm write it. The file is replaced atomically.
    """
    model_dir = Path(model_dir)
    weight_map, total = _shard_map(model_dir)
    index = {
        "metadata": {"total_size": total},
        "weight_map": dict(sorted(weight_map.items())),
    }
    tmp = model_dir / f".{INDEX_NAME}.{os.getpid()}.tmp"
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(index, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, model_dir / INDEX_NAME)
    finally:
        tmp.unlink(missing_ok=True)
    return index

"""analyze_workspace (push --check-only): every anomaly of a directory, with mlx-knife's codes."""

from __future__ import annotations

import json
from pathlib import Path

from mlxk.store.health import analyze_workspace

WEIGHTS = b"\x01" * 64  # never parsed: the analysis reads names, sizes and pointer heads
LFS = b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n"


def _write(root: Path, files: dict[str, bytes]) -> dict[str, int]:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return {name: len(data) for name, data in files.items()}


def test_a_clean_workspace_is_healthy(tmp_path: Path) -> None:
    files = _write(tmp_path, {"config.json": b'{"model_type": "llama"}',
                              "model.safetensors": WEIGHTS})  # fmt: skip
    health = analyze_workspace(tmp_path, files)
    assert health.healthy and health.anomalies == ()
    assert health.files_count == 2 and health.total_bytes == sum(files.values())
    assert health.weights.formats == ("safetensors",) and health.weights.pattern_complete is None


def test_every_problem_is_listed(tmp_path: Path) -> None:
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors",
                            "b": "model-00002-of-00002.safetensors"}}  # fmt: skip
    files = _write(tmp_path, {
        "config.json": b"{}",  # empty: invalid
        "model-00001-of-00002.safetensors": WEIGHTS,
        "model.safetensors.index.json": json.dumps(index).encode(),
        "extra.bin": LFS,
        "empty.npz": b"",
        "sub/weights.tmp": b"x",
    })  # fmt: skip
    health = analyze_workspace(tmp_path, files)
    codes = [(a.severity, a.code) for a in health.anomalies]
    assert codes == [
        ("error", "config_invalid_json"), ("error", "lfs_pointer_detected"),
        ("error", "empty_weight_file"), ("error", "index_missing_shard"),
        ("warn", "partial_marker"),
    ]  # fmt: skip
    assert health.weights.index.missing == ("model-00002-of-00002.safetensors",)
    assert health.weights.pattern_complete is False and not health.healthy
    assert health.anomalies[-1].path == "sub/weights.tmp"


def test_no_config_no_weights_and_a_broken_index(tmp_path: Path) -> None:
    files = _write(tmp_path, {"model.safetensors.index.json": b"not json", "README.md": b"hi"})
    health = analyze_workspace(tmp_path, files)
    assert [a.code for a in health.anomalies] == [
        "config_missing", "no_weights_found", "index_parse_error",
    ]  # fmt: skip
    assert health.config.exists is False and health.weights.index.parse_error is True

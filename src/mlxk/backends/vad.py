"""Voice activity detection with Silero VAD (MIT), its ONNX model run by onnxruntime.

Why this and not a port to MLX: the model is 2 MB and runs a 32 ms frame in well under a
millisecond on one CPU core through onnxruntime, which faster-whisper already brings in;
the ONNX file ships inside the ``silero-vad`` wheel (installed without its torch
dependencies). Frames are 512 samples at 16 kHz with 64 samples of context, as Silero's own
wrapper feeds them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlxk.errors import BackendUnavailableError

RATE = 16_000
FRAME = 512  # samples per VAD frame at 16 kHz (32 ms)
_CONTEXT = 64


def model_path() -> Path:
    """The ONNX file inside the silero-vad package, found without importing the package
    (its ``__init__`` imports torch)."""
    import importlib.util

    spec = importlib.util.find_spec("silero_vad")
    places = list(spec.submodule_search_locations or []) if spec else []
    root = Path(places[0]) / "data" / "silero_vad.onnx" if places else Path("/nonexistent")
    if not root.is_file():
        raise BackendUnavailableError(
            "Silero VAD's model is not installed (pip install --no-deps silero-vad==6.2.0)"
        )
    return root


@functools.lru_cache(maxsize=1)
def _session() -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1  # one frame at a time: threads only add latency
    return ort.InferenceSession(str(model_path()), opts, providers=["CPUExecutionProvider"])


class VadStream:
    """Speech probabilities of a 16 kHz stream, one per 512-sample frame, as audio arrives."""

    def __init__(self) -> None:
        self.session = _session()
        self.state = np.zeros((2, 1, 128), np.float32)
        self.context = np.zeros((1, _CONTEXT), np.float32)
        self.pending = np.zeros(0, np.float32)
        self.frames = 0  # frames scored so far

    def feed(self, samples: np.ndarray) -> list[float]:
        self.pending = np.concatenate([self.pending, samples.astype(np.float32, copy=False)])
        out = []
        while len(self.pending) >= FRAME:
            frame, self.pending = self.pending[:FRAME], self.pending[FRAME:]
            x = np.concatenate([self.context, frame[None, :]], axis=1)
            prob, self.state = self.session.run(
                None, {"input": x, "state": self.state, "sr": np.array(RATE, dtype=np.int64)}
            )
            self.context = x[:, -_CONTEXT:]
            out.append(float(prob[0, 0]))
            self.frames += 1
        return out


def speech_probs(samples: np.ndarray) -> np.ndarray:
    """Per-frame speech probability of a whole clip."""
    return np.array(VadStream().feed(samples), np.float32)


@dataclass(frozen=True)
class Span:
    start: float  # seconds
    end: float


def speech_spans(
    samples: np.ndarray, *, threshold: float = 0.5, min_silence_ms: int = 500,
    pad_ms: int = 200, min_speech_ms: int = 250,
) -> list[Span]:  # fmt: skip
    """Where a clip has speech: frames over ``threshold`` (with Silero's hysteresis), gaps
    shorter than ``min_silence_ms`` bridged, each span padded, blips dropped."""
    frame_s = FRAME / RATE
    spans: list[list[float]] = []
    for start, end in _runs(speech_probs(samples), threshold):
        a, b = start * frame_s, end * frame_s
        if spans and a - spans[-1][1] < min_silence_ms / 1000:
            spans[-1][1] = b
        else:
            spans.append([a, b])
    duration = len(samples) / RATE
    pad = pad_ms / 1000
    return [
        Span(max(0.0, a - pad), min(duration, b + pad))
        for a, b in spans
        if b - a >= min_speech_ms / 1000
    ]


def _runs(probs: np.ndarray, threshold: float) -> Iterator[tuple[int, int]]:
    """Frame ranges of speech: on above ``threshold``, off below ``threshold - 0.15``."""
    on, start = False, 0
    for i, p in enumerate(probs):
        if not on and p >= threshold:
            on, start = True, i
        elif on and p < threshold - 0.15:
            on = False
            yield start, i
    if on:
        yield start, len(probs)


# openai-whisper's own "this was silence" rule, applied per segment
NO_SPEECH_PROB = 0.6
LOW_LOGPROB = -1.0
MIN_OVERLAP_S = 0.1
MAX_DRIFT_S = 1.0


def gate_segment(seg: Any, spans: list[Span]) -> Any | None:
    """A Whisper segment kept only where there is speech, its times clamped into the speech
    it overlaps; None for what Whisper made up from silence or noise."""
    from dataclasses import replace

    nsp, lp = getattr(seg, "no_speech_prob", None), getattr(seg, "avg_logprob", None)
    if nsp is not None and lp is not None and nsp > NO_SPEECH_PROB and lp < LOW_LOGPROB:
        return None
    hits = [s for s in spans if min(seg.end, s.end) - max(seg.start, s.start) >= MIN_OVERLAP_S]
    if not hits:
        return None
    # Whisper's times drift into long silences; a short lead-in or tail is left as it is
    start = hits[0].start if hits[0].start - seg.start > MAX_DRIFT_S else seg.start
    end = hits[-1].end if seg.end - hits[-1].end > MAX_DRIFT_S else seg.end
    return replace(seg, start=start, end=max(end, start))

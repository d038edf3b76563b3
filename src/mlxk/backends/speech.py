"""Whisper speech-to-text through mlx-audio's Whisper model, one 30 s window at a time.

mlxk runs openai-whisper's seek loop itself (``WhisperRunner.windows``: timestamp-token
segment splitting, temperature fallback, the no-speech skip, the previous text as the next
window's prompt) so that a caller such as the engine's scheduler can decode one window per
step and send each window's segments as it finishes; mlx-audio supplies the per-window
pieces (``decode``, ``detect_language``, the word alignment in its ``timing`` module).
The windows give the same result as mlx-audio's whole-clip ``generate``.

mlxk builds the model itself so it can pick the dtype and specialise a few modules for
MLX's CPU backend, where mlx-audio's defaults are an order of magnitude slower
(benchmarks/stt_cpu.py measures it):

* float32 weights and activations (MLX's CPU fp16 matmul does not use BLAS and is ~50x
  slower; fp32 matmuls go to the BLAS that ``backends.platform`` preloaded);
* encoder self-attention softmax and MLP GELU in numpy (MLX's CPU ``exp``/``erf`` are several
  times slower than numpy's vectorised ones on 1500x1500 scores per head);
* the encoder's two convolutions as one GEMM each (im2col) instead of MLX's direct conv;
* the decoder's vocabulary projection against a contiguous transposed table (GEMV on
  ``W.T`` is ~2x slower);
* an encoder memo, so language detection, temperature fallbacks and word alignment reuse the
  window's audio features instead of re-encoding the same 30 s;
* a tokenizer wrapper that caches what mlx-audio recomputes per window (``get_vocab`` alone
  costs ~80 ms per call).

mlx / mlx-audio are imported lazily, inside functions, never at import time of this module.
"""

from __future__ import annotations

import functools
import json
import math
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np

from mlxk.backends.platform import PlatformInfo
from mlxk.errors import (
    BackendUnavailableError,
    GenerationError,
    MediaError,
    MlxkError,
    ValidationError,
)
from mlxk.types import Segment, Transcript, Word

SAMPLE_RATE = 16_000
Task = Literal["transcribe", "translate"]
_NUMPY_ATTN_MIN_LEN = 256  # shorter sequences (the decoder's) stay on MLX: no copy overhead
_TOKENIZER_PROPS = (
    "eot",
    "timestamp_begin",
    "sot",
    "sot_lm",
    "no_timestamps",
    "no_speech",
    "transcribe",
    "translate",
    "sot_prev",
    "language_token",
    "sot_sequence",
    "sot_sequence_including_notimestamps",
    "task_token",
    "all_language_tokens",
    "all_language_codes",
    "non_speech_tokens",
)


# --------------------------------------------------------------------------- CPU kernels


def exp_rows_inplace(scores: np.ndarray) -> np.ndarray:
    """Softmax numerators in place (row max subtracted, exp); returns the row sums."""
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    return scores.sum(axis=-1, keepdims=True)


# Abramowitz & Stegun 7.1.26: |erf error| < 1.5e-7, i.e. exact at float32 precision
_ERF_P = np.float32(0.3275911)
_ERF_A = tuple(
    np.float32(c) for c in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
)


def numpy_gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU in float32; MLX's CPU erf is ~4x slower than these numpy passes."""
    z = np.abs(x) * np.float32(math.sqrt(0.5))
    t = np.float32(1.0) / (np.float32(1.0) + _ERF_P * z)
    tail = _ERF_A[4] * t
    for a in reversed(_ERF_A[:4]):  # Horner: t * (a0 + t * (a1 + ...))
        tail += a
        tail *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    tail *= z
    tail *= np.float32(0.5)  # = P(N(0,1) > |x|)
    return x * np.where(x >= 0, np.float32(1.0) - tail, tail)


class _Memo:
    """Last encoder input/output; a plain object so MLX does not treat it as a parameter."""

    def __init__(self) -> None:
        self.x: Any = None
        self.y: Any = None


@functools.lru_cache(maxsize=1)
def _mlx() -> SimpleNamespace:
    """Import mlx/mlx-audio once and build the subclasses that need their base classes."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_audio.stt.models.whisper import audio as maudio
    from mlx_audio.stt.models.whisper import decoding as mdec
    from mlx_audio.stt.models.whisper import timing as mtiming
    from mlx_audio.stt.models.whisper import tokenizer as mtok
    from mlx_audio.stt.models.whisper import whisper as mw

    ns = SimpleNamespace(mx=mx, nn=nn, mw=mw, audio=maudio, tok=mtok, decoding=mdec, timing=mtiming)
    ns.Tokenizer = _tokenizer_class(mw.HFTokenizerWrapper)
    ns.Whisper = _model_class(mw.Model, ns.Tokenizer)
    ns.Attention = _attention_class(mw.MultiHeadAttention, mx)
    ns.Conv1d = _conv_class(nn.Conv1d, mx)
    ns.Encoder = _encoder_class(mw.AudioEncoder, mx)
    ns.Embedding = _embedding_class(nn.Embedding, mx)
    ns.Block = _block_class(mw.ResidualAttentionBlock, mx)
    return ns


def _tokenizer_class(base: type) -> type:
    """mlx-audio re-creates its tokenizer wrapper per window and recomputes every property."""
    attrs: dict[str, Any] = {}
    for name in _TOKENIZER_PROPS:
        prop = getattr(base, name)
        attrs[name] = functools.cached_property(prop.fget)
    return type("CachedWhisperTokenizer", (base,), attrs)  # type() calls __set_name__


def _model_class(base: type, tokenizer_cls: type) -> type:
    class MlxkWhisper(base):
        """mlx-audio's Whisper with one tokenizer per (language, task) kept for its lifetime."""

        def get_tokenizer(self, language: str | None = None, task: str = "transcribe") -> Any:
            cache = self.__dict__.setdefault("_mlxk_tokenizers", {})
            key = (language, task)
            if key not in cache:
                if getattr(self, "_processor", None) is None:
                    raise BackendUnavailableError("Whisper processor (tokenizer) not loaded")
                cache[key] = tokenizer_cls(
                    self._processor.tokenizer,
                    multilingual=self.is_multilingual,
                    num_languages=self.num_languages,
                    language=language,
                    task=task,
                )
            return cache[key]

    return MlxkWhisper


def _attention_class(base: type, mx: Any) -> type:
    class NumpyAttention(base):
        """Encoder self-attention on CPU: MLX (BLAS) matmuls, numpy's vectorised exp.

        MLX's CPU softmax is several times slower than numpy on the 1500x1500 score matrix
        per head. The scores are exponentiated in place through a zero-copy numpy view of
        the freshly evaluated MLX buffer (nothing else references it), which saves copying
        ~9 MB per head each way. The next head's scores are computed while numpy works."""

        def qkv_attention(self, q: Any, k: Any, v: Any, mask: Any = None) -> tuple[Any, Any]:
            if mask is not None or q.shape[1] < _NUMPY_ATTN_MIN_LEN or q.dtype != mx.float32:
                return super().qkv_attention(q, k, v, mask)
            b, t, d = q.shape
            n, hd = self.n_head, d // self.n_head
            q = (q * hd**-0.5).reshape(b, t, n, hd).transpose(0, 2, 1, 3)
            k = k.reshape(b, t, n, hd).transpose(0, 2, 3, 1)
            v = v.reshape(b, t, n, hd).transpose(0, 2, 1, 3)
            scores = [q[:, h] @ k[:, h] for h in range(n)]
            mx.async_eval(scores[0])
            outs = []
            for h in range(n):
                if h + 1 < n:
                    mx.async_eval(scores[h + 1])
                outs.append(self._head(scores[h], v[:, h]))
            out = mx.stack(outs, axis=1).transpose(0, 2, 1, 3).reshape(b, t, d)
            return out, None  # the encoder discards the scores: do not materialise them

        def _head(self, scores: Any, v: Any) -> Any:
            mx.eval(scores)
            view = np.asarray(scores)
            if not view.flags.writeable:  # defensive: fall back to a copy
                view = np.array(view)
                sums = exp_rows_inplace(view)
                return (mx.array(view) @ v) / mx.array(sums)
            sums = exp_rows_inplace(view)
            return (scores @ v) / mx.array(sums)

    return NumpyAttention


def _conv_class(base: type, mx: Any) -> type:
    class GemmConv1d(base):
        """Conv1d as im2col + one matmul: MLX's CPU conv is direct; BLAS GEMM is ~5x faster."""

        def __call__(self, x: Any) -> Any:
            if self.groups != 1 or self.dilation != 1:
                return super().__call__(x)
            out_ch, ksize, in_ch = self.weight.shape
            p, s = self.padding, self.stride
            xp = mx.pad(x, [(0, 0), (p, p), (0, 0)])
            t_out = (xp.shape[1] - ksize) // s + 1
            taps = [xp[:, j : j + s * (t_out - 1) + 1 : s, :] for j in range(ksize)]
            y = mx.concatenate(taps, axis=-1) @ self.weight.reshape(out_ch, ksize * in_ch).T
            return y + self.bias if "bias" in self else y

    return GemmConv1d


def _encoder_class(base: type, mx: Any) -> type:
    class MemoEncoder(base):
        """Reuse the last window's features: detection, fallbacks and alignment re-encode it."""

        def __call__(self, x: Any) -> Any:
            memo: _Memo = self.__dict__.setdefault("_mlxk_memo", _Memo())
            last = memo.x
            if last is not None and (
                x is last or (x.shape == last.shape and bool(mx.array_equal(x, last).item()))
            ):
                return memo.y
            y = super().__call__(x)
            memo.x, memo.y = x, y
            return y

        def forget(self) -> None:
            self.__dict__["_mlxk_memo"] = _Memo()

    return MemoEncoder


def _block_class(base: type, mx: Any) -> type:
    class CpuEncoderBlock(base):
        """mlx-audio's encoder block with the MLP's GELU in numpy (same math, erf-exact)."""

        def __call__(
            self, x: Any, xa: Any = None, mask: Any = None, kv_cache: Any = None
        ) -> tuple[Any, Any, Any]:
            if self.cross_attn is not None or kv_cache is not None:
                return super().__call__(x, xa, mask, kv_cache)
            y, kv, _ = self.attn(self.attn_ln(x), mask=mask)
            x = x + y
            h = self.mlp1(self.mlp_ln(x)).astype(mx.float32)
            mx.eval(h)
            h = mx.array(numpy_gelu(np.asarray(h))).astype(x.dtype)
            return x + self.mlp2(h), (kv, None), None

    return CpuEncoderBlock


def _embedding_class(base: type, mx: Any) -> type:
    class ProjectionEmbedding(base):
        """The vocabulary projection (the decoder's biggest matmul, once per token) against a
        contiguous transposed copy of the table: MLX's CPU GEMV on ``W.T`` is ~2x slower.
        Costs one extra float32 copy of the embedding table."""

        def as_linear(self, x: Any) -> Any:
            table_t = self.__dict__.get("_mlxk_table_t")
            if table_t is None:
                table_t = mx.contiguous(self.weight.T)
                mx.eval(table_t)
                self.__dict__["_mlxk_table_t"] = table_t
            return x @ table_t

    return ProjectionEmbedding


# --------------------------------------------------------------------------- loading


def _read_config(path: Path) -> dict[str, Any]:
    cfg_path = Path(path) / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BackendUnavailableError(f"{path}: cannot read config.json: {e}") from e
    if not isinstance(cfg, dict) or str(cfg.get("model_type", "whisper")).lower() != "whisper":
        raise BackendUnavailableError(f"{path}: not a Whisper model (model_type != whisper)")
    return cfg


def _model_dtype(cfg: dict[str, Any], platform: PlatformInfo, mx: Any) -> Any:
    stored = str(cfg.get("torch_dtype") or cfg.get("dtype") or "float16")
    dtype = getattr(mx, stored.rsplit(".", 1)[-1], mx.float16)
    if platform.is_cpu:
        return platform.activation_dtype(dtype)
    # mlx-audio's decoder checks features are fp16 or fp32; bf16 Whisper runs fine in fp16
    return mx.float16 if dtype == mx.bfloat16 else dtype


def _load_weights(model: Any, path: Path, cfg: dict[str, Any]) -> None:
    from mlx.utils import tree_flatten
    from mlx_audio.utils import apply_quantization
    from mlx_audio.utils import load_weights as read_weights

    try:
        weights = model.sanitize(read_weights(Path(path)))
    except FileNotFoundError as e:
        raise BackendUnavailableError(str(e)) from e
    apply_quantization(model, cfg, weights, getattr(model, "model_quant_predicate", None))
    # mlx-community checkpoints carry extras (e.g. encoder positions): not strict, but a
    # missing parameter would silently leave random weights, so check that direction
    missing = {item[0] for item in tree_flatten(model.parameters())} - set(weights)
    if missing:
        shown = ", ".join(sorted(missing)[:5])
        raise BackendUnavailableError(f"{path}: weights missing {len(missing)} tensors ({shown})")
    model.load_weights(list(weights.items()), strict=False)


def _specialise(model: Any, platform: PlatformInfo, ns: SimpleNamespace) -> None:
    """Swap in the CPU kernels; same parameters, only the class (the forward) changes."""
    model.encoder.__class__ = ns.Encoder
    if not platform.is_cpu:
        return
    model.encoder.conv1.__class__ = ns.Conv1d
    model.encoder.conv2.__class__ = ns.Conv1d
    for block in model.encoder.blocks:
        block.__class__ = ns.Block
        block.attn.__class__ = ns.Attention
    if type(model.decoder.token_embedding) is ns.nn.Embedding:  # not a quantized one
        model.decoder.token_embedding.__class__ = ns.Embedding


def _attach_processor(model: Any, path: Path, ns: SimpleNamespace) -> Any:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = ns.Whisper.post_load_hook(model, Path(path))
    if getattr(model, "_processor", None) is None:
        why = "; ".join(str(w.message) for w in caught) or "unknown reason"
        raise BackendUnavailableError(
            f"{path}: Whisper tokenizer/feature extractor files missing or broken ({why})"
        )
    return model


def load_whisper(path: Path, platform: PlatformInfo) -> WhisperRunner:
    """Build mlx-audio's Whisper from an MLX Whisper folder (e.g. an ``mlxk import`` output)."""
    cfg = _read_config(path)
    try:
        ns = _mlx()
    except ImportError as e:
        raise BackendUnavailableError(f"mlx-audio is not usable: {e}") from e
    dims = ns.mw.ModelDimensions.from_dict(cfg)
    dtype = _model_dtype(cfg, platform, ns.mx)
    model = ns.Whisper(dims, dtype)
    _load_weights(model, Path(path), cfg)
    ns.mx.eval(model.parameters())
    model.eval()
    model = _attach_processor(model, Path(path), ns)
    _specialise(model, platform, ns)
    multilingual = bool(model.is_multilingual)
    turbo = dims.n_audio_layer == 32 and dims.n_text_layer == 4  # trained without translate
    return WhisperRunner(
        model=model,
        path=Path(path),
        platform=platform,
        is_multilingual=multilingual,
        supports_translate=multilingual and not turbo,
        fp16=dtype == ns.mx.float16,
    )


# --------------------------------------------------------------------------- transcription

# openai-whisper's decoding thresholds (mlx-audio's ``generate`` defaults, which mlxk used)
_COMPRESSION_RATIO_MAX = 2.4  # above: the text loops, retry at the next temperature
_LOGPROB_MIN = -1.0  # below: the model is unsure, retry at the next temperature
_NO_SPEECH_MIN = 0.6  # above, with an unsure decode: the window is silence, skip it
_PROMPT_RESET_TEMPERATURE = 0.5  # text sampled hotter is not trusted as the next prompt
_FRAME_S = 160 / SAMPLE_RATE  # one mel frame (mlx-audio's HOP_LENGTH): 10 ms


@dataclass(frozen=True)
class WindowResult:
    """One decoded Whisper window (at most 30 s): the segments it finished, how far it got."""

    segments: tuple[Segment, ...]  # ids continue across the windows of one transcription
    start: float  # seconds: where this window started (the seek before it)
    end: float  # seconds of audio consumed after it (the new seek)
    duration: float  # the whole clip's duration in seconds
    language: str | None
    # the window's decoded text, unstripped: joined, the windows give the transcript text
    # (stripped segment texts cannot be re-joined for languages written without spaces)
    text: str = ""


@dataclass(frozen=True)
class _Request:
    """A validated transcription request."""

    samples: np.ndarray
    language: str | None  # None: detect on the first window (multilingual models only)
    task: Task
    initial_prompt: str | None
    word_timestamps: bool
    temperatures: tuple[float, ...]

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def _check_audio(audio: np.ndarray) -> np.ndarray:
    arr = np.asarray(audio)
    if arr.ndim != 1:
        raise MediaError(f"audio must be mono 1-D samples at 16 kHz, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise MediaError(f"audio must be float samples in [-1, 1], got {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise MediaError("audio contains NaN or infinite samples")
    return arr


def _temperatures(temperature: float) -> tuple[float, ...]:
    """openai-whisper's fallback ladder from the requested temperature up to 1.0."""
    if not 0.0 <= temperature <= 1.0:
        raise ValidationError(f"temperature must be within [0, 1], got {temperature}")
    steps = math.floor((1.0 - temperature) / 0.2 + 1e-9)
    return tuple(round(min(1.0, temperature + 0.2 * i), 2) for i in range(steps + 1))


def _needs_fallback(result: Any) -> bool:
    if result.no_speech_prob > _NO_SPEECH_MIN and result.avg_logprob < _LOGPROB_MIN:
        return False  # silence: a hotter decode would only invent words
    return bool(
        result.compression_ratio > _COMPRESSION_RATIO_MAX or result.avg_logprob < _LOGPROB_MIN
    )


def _is_silence(result: Any) -> bool:
    """The no-speech skip; a confident decode (high log-probability) is kept regardless."""
    return bool(result.no_speech_prob > _NO_SPEECH_MIN and not result.avg_logprob > _LOGPROB_MIN)


@dataclass
class _Cut:
    """How one window's tokens split into segments, and where the next window starts."""

    spans: list[tuple[float, float, list[int]]]  # (start, end) seconds into the window, tokens
    seek: int  # mel frames
    single_ending: bool  # the text ended on one timestamp: no speech after it


def _cut(tokens: list[int], timestamp_begin: int, seek: int, size: int, stride: int) -> _Cut:
    """openai-whisper's rule: a segment ends at each pair of consecutive timestamp tokens.

    The next window starts after the last complete segment (an unfinished one is decoded
    again with the next window), or at this window's end when the text ended on a single
    timestamp or had no pairs at all. ``stride``: mel frames per timestamp step."""
    step_s = stride * _FRAME_S
    arr = np.asarray(tokens, dtype=np.int64)
    is_ts = arr >= timestamp_begin
    single_ending = is_ts[-2:].tolist() == [False, True]
    cuts = (np.flatnonzero(is_ts[:-1] & is_ts[1:]) + 1).tolist()
    if not cuts:
        stamps = arr[is_ts] - timestamp_begin
        # no pairs: one segment for the whole window, to its last timestamp when it has one
        end = int(stamps[-1]) * step_s if len(stamps) and stamps[-1] > 0 else size * _FRAME_S
        return _Cut([(0.0, end, tokens)], seek + size, single_ending)
    if single_ending:
        cuts.append(len(tokens))
    spans, last = [], 0
    for cut in cuts:
        piece = tokens[last:cut]
        spans.append(
            ((piece[0] - timestamp_begin) * step_s, (piece[-1] - timestamp_begin) * step_s, piece)
        )
        last = cut
    if single_ending:
        return _Cut(spans, seek + size, True)
    return _Cut(spans, seek + (tokens[last - 1] - timestamp_begin) * stride, False)


def _last_end(raw: list[dict[str, Any]]) -> float | None:
    """The last word's end, else the last segment's end (mlx-audio's ``_get_end``)."""
    ends = (w["end"] for s in reversed(raw) for w in reversed(s["words"]))
    return next(ends, raw[-1]["end"] if raw else None)


def _words(raw: list[dict[str, Any]], duration: float) -> tuple[Word, ...]:
    words = []
    for w in raw:
        start = min(max(0.0, float(w["start"])), duration)
        end = min(max(start, float(w["end"])), duration)
        prob = w.get("probability")
        words.append(
            Word(start, end, str(w["word"]).strip(), None if prob is None else float(prob))
        )
    return tuple(words)


def _segment(raw: dict[str, Any], seg_id: int, duration: float) -> Segment:
    start = min(max(0.0, float(raw["start"])), duration)
    end = min(max(start, float(raw["end"])), duration)
    return Segment(
        id=seg_id,
        start=start,
        end=end,
        text=str(raw["text"]).strip(),
        words=_words(raw.get("words") or [], duration),
        avg_logprob=_opt_float(raw.get("avg_logprob")),
        no_speech_prob=_opt_float(raw.get("no_speech_prob")),
    )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


class _Decode:
    """One transcription's decoding state, window by window (openai-whisper's seek loop).

    It lives in the transcription's generator, never on the runner: the scheduler
    interleaves windows of several requests on one runner, and each must carry its own
    seek, prompt and language."""

    def __init__(self, model: Any, fp16: bool, req: _Request) -> None:
        self.model, self.fp16, self.req = model, fp16, req
        self.mel: Any = None  # the whole clip's log-mel, computed by the first step
        self.content_frames = 0
        self.seek = 0  # mel frames consumed
        self.language = req.language
        self.tokenizer: Any = None
        self.tokens: list[int] = []  # the initial prompt, then every window's text tokens
        self.prompt_from = 0  # the next window's prompt: tokens[prompt_from:]
        self.last_speech = 0.0  # seconds: the last aligned word's end (word timestamps)
        self.next_id = 0

    @property
    def finished(self) -> bool:
        return self.mel is not None and self.seek >= self.content_frames

    def _start(self) -> None:
        """The mel of the whole clip, not per window: its clamp uses the clip's global max."""
        a = _mlx().audio
        self.mel = a.log_mel_spectrogram(
            self.req.samples, n_mels=self.model.dims.n_mels, padding=a.N_SAMPLES
        )
        self.content_frames = self.mel.shape[-2] - a.N_FRAMES
        if self.language is None and self.content_frames > 0:
            # on the first window exactly as it will be decoded: the encoder memo hits
            _, probs = self.model.detect_language(self._window_mel(0, self._size(0)))
            self.language = str(max(probs, key=probs.get))
        self.tokenizer = self.model.get_tokenizer(language=self.language, task=self.req.task)
        if self.req.initial_prompt:  # never a default prompt: it biases the text
            self.tokens = list(self.tokenizer.encode(" " + self.req.initial_prompt.strip()))

    def _size(self, seek: int) -> int:
        return min(_mlx().audio.N_FRAMES, self.content_frames - seek)

    def _window_mel(self, seek: int, size: int) -> Any:
        a = _mlx().audio
        window = a.pad_or_trim(self.mel[seek : seek + size], a.N_FRAMES, axis=-2)
        return window.astype(self.model.dtype)

    def step(self) -> WindowResult | None:
        """Decode the window at the seek; None when the clip is done."""
        if self.mel is None:
            self._start()
        if self.finished:
            return None
        seek, size = self.seek, self._size(self.seek)
        mel = self._window_mel(seek, size)
        result = self._decode(mel)
        if _is_silence(result):
            self.seek = seek + size
            return self._result(seek, [])
        stride = _mlx().audio.N_FRAMES // self.model.dims.n_audio_ctx  # 2 frames per step
        cut = _cut(list(result.tokens), self.tokenizer.timestamp_begin, seek, size, stride)
        raw = [self._raw(seek, s, e, toks, result) for s, e, toks in cut.spans]
        self.seek = cut.seek
        if self.req.word_timestamps:
            self._align(raw, mel, seek, size, cut.single_ending)
        for seg in raw:  # an instantaneous or textless segment carries nothing
            if seg["start"] == seg["end"] or not seg["text"].strip():
                seg.update(text="", tokens=[], words=[])
        if self.seek <= seek:  # a window must move on, or it would be decoded forever
            self.seek = seek + size
        self.tokens.extend(t for seg in raw for t in seg["tokens"])
        if result.temperature > _PROMPT_RESET_TEMPERATURE:
            self.prompt_from = len(self.tokens)
        return self._result(seek, raw)

    def _decode(self, mel: Any) -> Any:
        """Decode at each temperature of the ladder until the text is neither looping nor
        improbable (or is silence)."""
        options = _mlx().decoding.DecodingOptions(
            task=self.req.task,
            language=self.language,
            prompt=self.tokens[self.prompt_from :],
            fp16=self.fp16,
        )
        result = None
        for t in self.req.temperatures:
            result = self.model.decode(mel, replace(options, temperature=t))
            if not _needs_fallback(result):
                break
        return result

    def _raw(self, seek: int, start: float, end: float, tokens: list[int], result: Any) -> dict:
        """A segment in mlx-audio's dict form, which its word alignment reads and fills."""
        offset = seek * _FRAME_S
        text_tokens = [t for t in tokens if t < self.tokenizer.eot]
        return {
            "seek": seek,
            "start": offset + start,
            "end": offset + end,
            "text": self.tokenizer.decode(text_tokens),
            "tokens": tokens,
            "words": [],
            "avg_logprob": result.avg_logprob,
            "no_speech_prob": result.no_speech_prob,
        }

    def _align(self, raw: list[dict], mel: Any, seek: int, size: int, single: bool) -> None:
        """Word timestamps (cross-attention + DTW); the next window starts after the last
        aligned word rather than at the last timestamp token when the text ran on."""
        _mlx().timing.add_word_timestamps(
            segments=raw,
            model=self.model,
            tokenizer=self.tokenizer,
            mel=mel,
            num_frames=size,
            last_speech_timestamp=self.last_speech,
        )
        last = _last_end(raw)
        if not single and last is not None and last > seek * _FRAME_S:
            self.seek = round(last / _FRAME_S)
        if last is not None:
            self.last_speech = last

    def _result(self, seek: int, raw: list[dict[str, Any]]) -> WindowResult:
        duration = self.req.duration
        segments = []
        for seg in raw:
            if seg["text"].strip():  # blanked above: not a segment of the transcript
                segments.append(_segment(seg, self.next_id, duration))
                self.next_id += 1
        text = self.tokenizer.decode([t for seg in raw for t in seg["tokens"]])
        return WindowResult(
            segments=tuple(segments),
            start=min(seek * _FRAME_S, duration),
            end=min(min(self.seek, self.content_frames) * _FRAME_S, duration),
            duration=duration,
            language=self.language,
            text=text,
        )


@dataclass
class WhisperRunner:
    model: Any  # mlx-audio Whisper Model (our subclass)
    path: Path
    platform: PlatformInfo
    is_multilingual: bool
    supports_translate: bool
    fp16: bool  # mlx-audio's DecodingOptions.fp16: must match the model dtype
    # held while one window is decoded (never across a yield): the model's encoder memo
    # and MLX's streams are shared, so windows run one at a time per runner
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _language(self, language: str | None) -> str | None:
        if language is None or not language.strip():
            return None if self.is_multilingual else "en"
        mtok = _mlx().tok
        code = language.strip().lower()
        code = mtok.TO_LANGUAGE_CODE.get(code, code)
        if code not in mtok.LANGUAGES:
            raise ValidationError(f"unknown language {language!r}")
        if not self.is_multilingual and code != "en":
            raise ValidationError(f"{self.path.name} is English-only; cannot take {language!r}")
        return str(code)

    def _request(
        self,
        audio: np.ndarray,
        language: str | None,
        task: Task,
        initial_prompt: str | None,
        word_timestamps: bool,
        temperature: float,
    ) -> _Request:
        """Every check a request can fail, before any decoding."""
        samples = _check_audio(audio)
        if task not in ("transcribe", "translate"):
            raise ValidationError(f"task must be 'transcribe' or 'translate', got {task!r}")
        if task == "translate" and not self.supports_translate:
            raise ValidationError(f"{self.path.name} cannot translate (English-only or turbo)")
        return _Request(
            samples=samples,
            language=self._language(language),
            task=task,
            initial_prompt=initial_prompt or None,
            word_timestamps=bool(word_timestamps),
            temperatures=_temperatures(temperature),
        )

    def windows(
        self,
        audio: np.ndarray,
        *,
        language: str | None = None,
        task: Task = "transcribe",
        initial_prompt: str | None = None,
        word_timestamps: bool = False,
        temperature: float = 0.0,
    ) -> Iterator[WindowResult]:
        """Transcribe window by window: each ``next()`` decodes exactly one window (encoder,
        decode with temperature fallbacks, word alignment) and returns its segments.

        The request is validated now, so a bad one fails at this call; nothing is decoded
        before the first ``next()``. Closing the iterator early leaves the runner usable."""
        req = self._request(audio, language, task, initial_prompt, word_timestamps, temperature)
        if req.samples.size == 0:
            return iter(())
        return self._windows(req)

    def _windows(self, req: _Request) -> Iterator[WindowResult]:
        state = _Decode(self.model, self.fp16, req)
        try:
            while not state.finished:
                with self._lock:
                    window = self._step(state)
                if window is None:
                    return
                yield window
        finally:
            state.mel = None  # the clip's mel is the big per-request buffer: drop it early
            # return MLX's buffer cache after a transcription (as mlx-audio's generate does);
            # never wait for the lock here: a close() from the GC may run inside a step
            if self._lock.acquire(blocking=False):
                try:
                    _mlx().mx.clear_cache()
                finally:
                    self._lock.release()

    def _step(self, state: _Decode) -> WindowResult | None:
        try:
            # the memo may hold another request's window (interleaved): features are
            # reused within one window step only
            self.model.encoder.forget()
            return state.step()
        except MlxkError:
            raise
        except Exception as e:  # mlx / mlx-audio failures surface as one error type
            raise GenerationError(f"Whisper transcription failed: {e}") from e

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None = None,
        task: Task = "transcribe",
        initial_prompt: str | None = None,
        word_timestamps: bool = False,
        temperature: float = 0.0,
    ) -> Transcript:
        """Transcribe (or translate to English) float32 mono 16 kHz samples of any length."""
        windows = list(
            self.windows(
                audio,
                language=language,
                task=task,
                initial_prompt=initial_prompt,
                word_timestamps=word_timestamps,
                temperature=temperature,
            )
        )
        code = windows[-1].language if windows else self._language(language)
        return Transcript(
            text="".join(w.text for w in windows).strip(),
            language=code,
            duration=len(audio) / SAMPLE_RATE,
            segments=tuple(s for w in windows for s in w.segments),
            task=task,
        )

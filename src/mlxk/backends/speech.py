"""Whisper speech-to-text through mlx-audio's Whisper model and its ``generate`` loop.

mlx-audio does the decoding (30 s windows, timestamp rules, temperature fallback, word
alignment); mlxk builds the model itself so it can pick the dtype and specialise a few
modules for MLX's CPU backend, where mlx-audio's defaults are an order of magnitude slower
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
from dataclasses import dataclass, field
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
    from mlx_audio.stt.models.whisper import tokenizer as mtok
    from mlx_audio.stt.models.whisper import whisper as mw

    ns = SimpleNamespace(mx=mx, nn=nn, mw=mw, audio=maudio, tok=mtok)
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


def _segments(raw: list[dict[str, Any]], duration: float) -> tuple[Segment, ...]:
    out: list[Segment] = []
    for seg in raw:
        text = str(seg.get("text", "")).strip()
        if not text:  # mlx-audio blanks zero-length and hallucination-skipped segments
            continue
        start = min(max(0.0, float(seg["start"])), duration)
        end = min(max(start, float(seg["end"])), duration)
        out.append(
            Segment(
                id=len(out),
                start=start,
                end=end,
                text=text,
                words=_words(seg.get("words") or [], duration),
                avg_logprob=_opt_float(seg.get("avg_logprob")),
                no_speech_prob=_opt_float(seg.get("no_speech_prob")),
            )
        )
    return tuple(out)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass
class WhisperRunner:
    model: Any  # mlx-audio Whisper Model (our subclass)
    path: Path
    platform: PlatformInfo
    is_multilingual: bool
    supports_translate: bool
    fp16: bool  # mlx-audio's DecodingOptions.fp16: must match the model dtype
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

    def _detect_language(self, samples: np.ndarray) -> str:
        """Detect on the first window exactly as the decode loop will feed it (memo hit)."""
        ns = _mlx()
        a = ns.audio
        mel = a.log_mel_spectrogram(samples, n_mels=self.model.dims.n_mels, padding=a.N_SAMPLES)
        frames = min(a.N_FRAMES, mel.shape[-2] - a.N_FRAMES)
        segment = a.pad_or_trim(mel[:frames], a.N_FRAMES, axis=-2).astype(self.model.dtype)
        _, probs = self.model.detect_language(segment)
        return str(max(probs, key=probs.get))

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
        samples = _check_audio(audio)
        if task not in ("transcribe", "translate"):
            raise ValidationError(f"task must be 'transcribe' or 'translate', got {task!r}")
        if task == "translate" and not self.supports_translate:
            raise ValidationError(f"{self.path.name} cannot translate (English-only or turbo)")
        code = self._language(language)
        temps = _temperatures(temperature)
        duration = len(samples) / SAMPLE_RATE
        if samples.size == 0:
            return Transcript(text="", language=code, duration=0.0, task=task)
        with self._lock:
            self.model.encoder.forget()  # features are per request; do not pin memory
            out = self._generate(samples, code, task, initial_prompt, word_timestamps, temps)
        return Transcript(
            text=str(out.text).strip(),
            language=str(out.language) if out.language else code,
            duration=duration,
            segments=_segments(list(out.segments or []), duration),
            task=task,
        )

    def _generate(
        self,
        samples: np.ndarray,
        language: str | None,
        task: Task,
        initial_prompt: str | None,
        word_timestamps: bool,
        temperatures: tuple[float, ...],
    ) -> Any:
        try:
            if language is None:
                language = self._detect_language(samples)
            return self.model.generate(
                samples,
                language=language,
                task=task,
                initial_prompt=initial_prompt or None,  # never a default prompt: it biases
                word_timestamps=word_timestamps,
                temperature=temperatures,
                fp16=self.fp16,
                verbose=None,
            )
        except MlxkError:
            raise
        except Exception as e:  # mlx / mlx-audio failures surface as one error type
            raise GenerationError(f"Whisper transcription failed: {e}") from e

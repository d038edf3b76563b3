"""Images, omni audio and plain text through mlx-vlm's public API.

One request becomes one or more mlx-vlm calls ("batches"), run in order and streamed as they
complete:

* images only: ``chunk`` images per call (1..5), each chunk's answer streamed as it comes;
* audio (omni models such as Gemma-3n/Gemma-4): each clip is cut into windows no longer than
  the model's audio window (mlx-vlm would otherwise truncate silently at about 30 s); every
  window is one call, together with all images of the request, and the texts join in order;
* neither: one text-only call (mlx-vlm's text path), so a vision/omni model answers plain text.

``VisionRunner.stream`` returns a ``VisionStream`` whose ``request`` records what was actually
used (prompt, temperature, windows and per-call token counts) so callers can report it.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mlxk.errors import (
    CapabilityMismatchError,
    GenerationError,
    MediaError,
    MlxkError,
    ValidationError,
)
from mlxk.media.image import LoadedImage, load_image, readable_exif
from mlxk.types import GenerationChunk, Sampling

log = logging.getLogger(__name__)

IMAGE_PROMPT = "Describe the image."
AUDIO_PROMPT = "Transcribe what is spoken in this audio."
AUDIO_TEMPERATURE = 0.2  # mlx-knife's omni-audio default: transcripts want little sampling
DEFAULT_TEMPERATURE = 0.7  # images and text, same as the text backend
FALLBACK_AUDIO_WINDOW_S = 30.0  # Gemma-3n / Gemma-4 encoders take 30 s per request
AUDIO_RATE = 16000  # what callers hand us (mlxk.media.audio's default target rate)
MAX_CHUNK = 5
DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024

ImageInput = LoadedImage | Image.Image | Path | str | bytes

# What goes between the answers of consecutive calls: windows of one recording continue the
# same transcript; image chunks are separate answers.
_WINDOW_JOIN = " "
_CHUNK_JOIN = "\n\n"


# --------------------------------------------------------------------------------------------
# What a request used (VisionStream.request)


@dataclass(frozen=True)
class AudioWindow:
    clip: int  # index of the clip in the request
    start: float  # seconds within the clip
    end: float


@dataclass(frozen=True)
class BatchReport:
    """One completed mlx-vlm call."""

    index: int
    images: int
    window: AudioWindow | None
    prompt_tokens: int
    generated_tokens: int
    finish_reason: str | None


@dataclass
class VisionRequest:
    prompt: str | None  # the user-level prompt after defaults (None when messages were given)
    temperature: float
    max_tokens: int  # per call
    images: int
    audio_seconds: tuple[float, ...]
    window_seconds: float | None  # the audio window limit, when audio was given
    windows: tuple[AudioWindow, ...]  # planned windows, in order, covering every clip
    planned_batches: int
    batches: list[BatchReport] = field(default_factory=list)  # filled as calls complete

    @property
    def windows_used(self) -> int:
        return len(self.windows)


# --------------------------------------------------------------------------------------------
# EXIF context


def _exif_date(exif: dict[str, Any]) -> str | None:
    raw = exif.get("DateTimeOriginal") or exif.get("DateTime")
    if not isinstance(raw, str) or len(raw) < 10:
        return None
    return raw[:10].replace(":", "-")  # EXIF writes "YYYY:MM:DD HH:MM:SS"


def _exif_gps(exif: dict[str, Any]) -> str | None:
    lat, lon = exif.get("GPSLatitude"), exif.get("GPSLongitude")
    if not isinstance(lat, (int, float)) or not isinstance(lon, (int, float)):
        return None
    # 4 decimals is about 11 m: street level, enough for a model to name a place.
    return f"{abs(lat):.4f}°{'N' if lat >= 0 else 'S'}, {abs(lon):.4f}°{'E' if lon >= 0 else 'W'}"


def _exif_camera(exif: dict[str, Any]) -> str | None:
    make = str(exif.get("Make") or "").strip()
    model = str(exif.get("Model") or "").strip()
    if model and make and model.lower().startswith(make.lower()):
        return model  # "Canon" + "Canon EOS R5": don't say Canon twice
    return " ".join(p for p in (make, model) if p) or None


def metadata_context(images: Sequence[LoadedImage]) -> str | None:
    """One bracketed line per image that has EXIF date, GPS or camera; None when none has.

    Images are numbered within the batch only when there are several: global numbers would
    make a model talk about images it was never shown.
    """
    lines = []
    for number, img in enumerate(images, 1):
        parts = [f"{label}: {value}" for label, value in (
            ("Date", _exif_date(img.exif)), ("GPS", _exif_gps(img.exif)),
            ("Camera", _exif_camera(img.exif)),
        ) if value]  # fmt: skip
        if parts:
            prefix = [f"Image {number}"] if len(images) > 1 else []
            lines.append("[" + " | ".join(prefix + parts) + "]")
    return "\n".join(lines) or None


# --------------------------------------------------------------------------------------------
# Inputs


def _as_loaded(item: ImageInput, max_bytes: int) -> LoadedImage:
    if isinstance(item, LoadedImage):
        return item
    if isinstance(item, Image.Image):
        rgb = item if item.mode == "RGB" else item.convert("RGB")
        return LoadedImage(rgb, "pil", "image/x-pil", rgb.width, rgb.height, readable_exif(item))
    if isinstance(item, (str, Path, bytes, bytearray)):
        return load_image(item, max_bytes=max_bytes)
    raise MediaError(f"unsupported image input: {type(item).__name__}")


def _check_audio(samples: np.ndarray, index: int) -> np.ndarray:
    arr = np.asarray(samples)
    if arr.ndim != 1:
        raise MediaError(f"audio input {index + 1}: expected mono samples, got shape {arr.shape}")
    if arr.size == 0:
        raise MediaError(f"audio input {index + 1}: the clip is empty")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _text_of(content: Any) -> str:
    """Message content as text: media parts arrive through ``images``/``audio`` instead."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _default_prompt(batch: _Batch) -> str:
    if batch.audio is not None:
        return AUDIO_PROMPT
    return IMAGE_PROMPT if batch.images else ""


def _default_temperature(has_audio: bool) -> float:
    return AUDIO_TEMPERATURE if has_audio else DEFAULT_TEMPERATURE


# --------------------------------------------------------------------------------------------
# The runner


@dataclass(frozen=True)
class _Batch:
    images: tuple[LoadedImage, ...]
    audio: np.ndarray | None
    window: AudioWindow | None


@dataclass
class VisionRunner:
    """A loaded mlx-vlm model; ``stream`` generates, ``cancel`` stops a running generation."""

    model: Any
    processor: Any
    config: dict[str, Any]  # config.json as written
    audio_rate: int  # the rate the model's feature extractor expects
    window_seconds: float
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def supports_images(self) -> bool:
        return bool(self.config.get("vision_config"))

    @property
    def supports_audio(self) -> bool:
        return bool(self.config.get("audio_config"))

    @property
    def audio_window_seconds(self) -> float:
        """Longest audio one call takes; longer clips are split into windows of this size."""
        return self.window_seconds

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def cancel(self) -> None:
        """Stop the generation in progress after the step being computed (thread-safe)."""
        self._cancel.set()

    def _grammar(self, constraint: Any) -> Any:
        """A logits processor holding this call's tokens to ``constraint``'s grammar."""
        from mlxk.backends.structured import TOKENIZERS, GrammarProcessor

        eos = self.config.get("eos_token_id") or (self.config.get("text_config") or {}).get(
            "eos_token_id"
        )
        ids = {eos} if isinstance(eos, int) else set(eos or [])
        if getattr(self.tokenizer, "eos_token_id", None) is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return GrammarProcessor(constraint, TOKENIZERS.get(self.tokenizer, frozenset(ids)))

    def stream(
        self,
        prompt: str | None,
        *,
        images: Sequence[ImageInput] = (),
        audio: Sequence[np.ndarray] = (),
        system: str | None = None,
        max_tokens: int = 512,
        sampling: Sampling | None = None,
        chunk: int = 1,
        messages: list[dict[str, Any]] | None = None,
        constraint: Any = None,
    ) -> VisionStream:
        """Plan the calls and return them as a lazy stream; ``stream.request`` says what was
        used (prompt, temperature, windows; per-call counts filled in as calls complete).

        ``audio`` holds 16 kHz mono float32 clips. ``max_tokens`` applies to each call (each
        image chunk, each audio window). ``token_count`` and ``prompt_tokens`` are cumulative
        over the calls made so far. Everything that can be refused is checked here, before the
        first token; iterating only generates, one token per step.
        """
        if not 1 <= chunk <= MAX_CHUNK:
            raise ValidationError(f"chunk must be between 1 and {MAX_CHUNK}, got {chunk}")
        if max_tokens <= 0:
            raise ValidationError(f"max_tokens must be positive, got {max_tokens}")
        if audio and not self.supports_audio:
            raise CapabilityMismatchError("this model does not take audio input")
        if images and not self.supports_images:
            raise CapabilityMismatchError("this model does not take image input")
        loaded = [_as_loaded(img, self.max_image_bytes) for img in images]
        clips = [self._resampled(_check_audio(a, i)) for i, a in enumerate(audio)]
        if prompt is None and messages is None:
            if not loaded and not clips:
                raise ValidationError("give a prompt, messages, images or audio")
            prompt = AUDIO_PROMPT if clips else IMAGE_PROMPT
        if sampling is None:
            sampling = Sampling(_default_temperature(bool(clips)), 0.9, None)
        batches = self._plan(loaded, clips, chunk)
        request = self._request(prompt, sampling, max_tokens, loaded, clips, batches)
        prompts = [self._format(self._chat(prompt, messages, system, b), b) for b in batches]
        self._cancel.clear()
        join = _WINDOW_JOIN if clips else _CHUNK_JOIN
        kwargs = _sampling_kwargs(sampling, max_tokens)
        if constraint is not None:  # a factory: each mlx-vlm call gets a fresh grammar state
            kwargs["constraint"] = constraint
        return VisionStream(request, self._run(batches, prompts, kwargs, join, request))

    def _request(
        self, prompt: str | None, sampling: Sampling, max_tokens: int,
        loaded: list[LoadedImage], clips: list[np.ndarray], batches: list[_Batch],
    ) -> VisionRequest:  # fmt: skip
        windows = tuple(b.window for b in batches if b.window is not None)
        request = VisionRequest(
            prompt=prompt, temperature=sampling.temperature, max_tokens=max_tokens,
            images=len(loaded), audio_seconds=tuple(len(c) / self.audio_rate for c in clips),
            window_seconds=self.window_seconds if clips else None, windows=windows,
            planned_batches=len(batches),
        )  # fmt: skip
        if clips:
            log.info("audio %s s: %d window(s) of at most %.0f s",
                     "+".join(f"{s:.1f}" for s in request.audio_seconds),
                     len(windows), self.window_seconds)  # fmt: skip
        return request

    # -- planning ----------------------------------------------------------------------------

    def _resampled(self, samples: np.ndarray) -> np.ndarray:
        if self.audio_rate == AUDIO_RATE:
            return samples
        from mlxk.media.audio import resample

        return resample(samples, AUDIO_RATE, self.audio_rate)

    def _plan(self, images: list[LoadedImage], clips: list[np.ndarray], chunk: int) -> list[_Batch]:
        if clips:
            # Every window gets all images: the question is about the picture and the sound.
            return [
                _Batch(tuple(images), part, window)
                for i, clip in enumerate(clips)
                for part, window in self._windows(i, clip)
            ]
        if images:
            return [
                _Batch(tuple(images[k : k + chunk]), None, None)
                for k in range(0, len(images), chunk)
            ]
        return [_Batch((), None, None)]

    def _windows(self, index: int, samples: np.ndarray) -> list[tuple[np.ndarray, AudioWindow]]:
        """Consecutive windows that cover the clip exactly (no overlap, nothing dropped)."""
        from mlxk.media.audio import AudioClip, split_windows

        rate = self.audio_rate
        clip = AudioClip(samples, rate, len(samples) / rate, "pcm", 1, rate)
        out, start = [], 0
        for part in split_windows(clip, self.window_seconds):
            n = len(part.samples)
            out.append((part.samples, AudioWindow(index, start / rate, (start + n) / rate)))
            start += n
        return out

    def _chat(
        self, prompt: str | None, messages: list[dict[str, Any]] | None, system: str | None,
        batch: _Batch,
    ) -> list[dict[str, str]]:  # fmt: skip
        """The conversation for one call: messages (or the prompt), --system, EXIF context."""
        if messages is None:
            chat = [{"role": "user", "content": prompt or ""}]
        else:
            chat = [{"role": str(m.get("role", "user")), "content": _text_of(m.get("content"))}
                    for m in messages]  # fmt: skip
        if system is not None:  # --system replaces a leading system message
            chat = chat[1:] if chat and chat[0]["role"] == "system" else chat
            chat = [{"role": "system", "content": system}, *chat]
        users = [m for m in chat if m["role"] == "user"]
        if users:  # media and their context belong to the last user turn
            last = users[-1]
            text = last["content"] or _default_prompt(batch)
            context = metadata_context(batch.images)
            last["content"] = f"{context}\n\n{text}" if context else text
        return chat

    def _format(self, chat: list[dict[str, str]], batch: _Batch) -> str:
        """The model's chat template with one media marker per image and audio window."""
        from jinja2 import TemplateError
        from mlx_vlm.prompt_utils import apply_chat_template

        try:
            # a transcription never thinks: reasoning would spend the budget, not the audio
            extra = {} if batch.audio is None else {"enable_thinking": False}
            return str(apply_chat_template(
                self.processor, self.model.config, chat, num_images=len(batch.images),
                num_audios=0 if batch.audio is None else 1, **extra,
            ))  # fmt: skip
        except (TemplateError, ValueError, KeyError, TypeError) as exc:
            raise GenerationError(f"cannot apply the chat template: {exc}") from exc

    # -- generation --------------------------------------------------------------------------

    def _run(
        self, batches: list[_Batch], prompts: list[str], sampling: dict[str, Any], join: str,
        request: VisionRequest,
    ) -> Iterator[GenerationChunk]:  # fmt: skip
        tokens = prompt_total = 0
        emitted = truncated = False
        for index, (batch, prompt) in enumerate(zip(batches, prompts, strict=True)):
            sep = join if emitted else ""
            outcome = _Outcome()
            for piece in self._call(batch, prompt, sampling, outcome):
                if piece:
                    yield GenerationChunk(
                        sep + piece,
                        tokens + outcome.generated,
                        None,
                        prompt_total + outcome.prompt_tokens,
                    )
                    sep, emitted = "", True
            tokens += outcome.generated
            prompt_total += outcome.prompt_tokens
            request.batches.append(BatchReport(
                index, len(batch.images), batch.window, outcome.prompt_tokens, outcome.generated,
                outcome.finish_reason,
            ))  # fmt: skip
            if outcome.finish_reason == "cancelled":
                yield GenerationChunk("", tokens, "cancelled", prompt_total)
                return
            truncated = truncated or outcome.finish_reason == "length"
        # A transcript with one truncated window is truncated: say so.
        yield GenerationChunk("", tokens, "length" if truncated else "stop", prompt_total)

    def _call(
        self, batch: _Batch, prompt: str, sampling: dict[str, Any], outcome: _Outcome,
    ) -> Iterator[str]:  # fmt: skip
        """Text pieces of one mlx-vlm call; ``outcome`` holds its counts when it ends."""
        from mlx_vlm import stream_generate

        # mlx-vlm's annotations say paths, but it takes PIL images and float arrays as well.
        images: Any = [img.image for img in batch.images] or None
        audio: Any = None if batch.audio is None else [batch.audio]
        sampling = dict(sampling)
        constraint = sampling.pop("constraint", None)
        if constraint is not None:
            sampling["logits_processors"] = [self._grammar(constraint)]
        responses = stream_generate(
            self.model, self.processor, prompt, image=images, audio=audio, **sampling,
        )  # fmt: skip
        try:
            while not self._cancel.is_set():  # checked before each generated token
                response = next(responses, None)
                if response is None:
                    return
                outcome.prompt_tokens = int(response.prompt_tokens or 0)
                outcome.generated = int(response.generation_tokens or 0)
                outcome.finish_reason = response.finish_reason
                yield response.text or ""
            outcome.finish_reason = "cancelled"
        except MlxkError:
            raise
        except (ValueError, RuntimeError) as exc:
            raise GenerationError(f"generation failed: {exc}") from exc
        finally:
            responses.close()


@dataclass
class VisionStream:
    """The chunks of one request (one token per ``next``) and what it was given."""

    request: VisionRequest
    chunks: Iterator[GenerationChunk]

    def __iter__(self) -> Iterator[GenerationChunk]:
        return self

    def __next__(self) -> GenerationChunk:
        return next(self.chunks)

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()  # runs _call's finally: the mlx-vlm generator is closed too


def _sampling_kwargs(sampling: Sampling, max_tokens: int) -> dict[str, Any]:
    """mlx-vlm's generate keywords for one call."""
    out: dict[str, Any] = {
        "max_tokens": max_tokens, "temperature": sampling.temperature, "top_p": sampling.top_p,
    }  # fmt: skip
    if sampling.repetition_penalty not in (None, 1.0):
        out["repetition_penalty"] = sampling.repetition_penalty
    if sampling.seed is not None:
        out["seed"] = sampling.seed
    return out


@dataclass
class _Outcome:
    prompt_tokens: int = 0
    generated: int = 0
    finish_reason: str | None = None


# --------------------------------------------------------------------------------------------
# Loading


def _feature_extractor_seconds(fe: Any) -> float | None:
    """The longest input a feature extractor keeps: its ``max_length`` default, in seconds.

    Gemma's extractors truncate to ``max_length`` samples (480 000 at 16 kHz) when called
    with their defaults, which is how mlx-vlm calls them.
    """
    if fe is None:
        return None
    rate = getattr(fe, "sampling_rate", None) or AUDIO_RATE
    try:
        param = inspect.signature(fe.__call__).parameters.get("max_length")
    except (TypeError, ValueError):
        return None
    default = None if param is None else param.default
    return default / rate if isinstance(default, int) and default > 0 else None


def audio_window_of(processor: Any, config: dict[str, Any]) -> float:
    """The audio one call can take, in seconds: the tightest limit the processor or config
    states (tokens × ms per token, the feature extractor's cut-off), else 30 s."""
    limits: list[float] = []
    seq = getattr(processor, "audio_seq_length", None) or config.get("audio_soft_tokens_per_image")
    ms = getattr(processor, "audio_ms_per_token", None) or config.get("audio_ms_per_token")
    if isinstance(seq, int) and isinstance(ms, (int, float)) and seq > 0 and ms > 0:
        limits.append(seq * ms / 1000.0)
    fe_seconds = _feature_extractor_seconds(getattr(processor, "feature_extractor", None))
    if fe_seconds is not None:
        limits.append(fe_seconds)
    return min(limits) if limits else FALLBACK_AUDIO_WINDOW_S


def load_vision(
    path: Path, *, float32_activations: bool, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
) -> VisionRunner:
    """Load an mlx-vlm model directory (vision, omni audio, or both).

    ``float32_activations``: cast floating parameters to float32 so activations are float32;
    on Linux CPU float16/bfloat16 compute is several times slower.
    """
    import mlx.core as mx
    from mlx_vlm import load

    try:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
        model, processor = load(str(path))
    except (FileNotFoundError, ValueError, KeyError, OSError) as exc:
        raise GenerationError(f"cannot load vision model at {path}: {exc}") from exc
    if float32_activations:
        model.set_dtype(mx.float32)
    fe = getattr(processor, "feature_extractor", None)
    rate = int(getattr(fe, "sampling_rate", None) or AUDIO_RATE)
    window = audio_window_of(processor, config)
    return VisionRunner(model, processor, config, rate, window, max_image_bytes)

"""run: the one place that turns a request into runner calls, for the CLI and the server.

    resolve → probe/health/runtime → select backend (refuses mismatches before loading)
      → RunPlan on the engine thread: pool.acquire → encode / plan → Started + work
      → the engine's steps → events (Started, GenerationChunk, WindowResult, DONE)

The CLI runs a ``Runtime.local`` (a pool of one, gated on the device's free memory); the
server builds one ``Runtime`` with its budgeted pool. Both submit the same start functions,
so the same request means the same thing on both edges: same defaults, same decode path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlxk.backends.engine import (
    Engine,
    ModelNeed,
    QueueSink,
    Sink,
    StepWork,
    TextWork,
    Value,
    Work,
)
from mlxk.backends.pool import Loaded, ModelKey, ModelPool
from mlxk.backends.registry import LoadContext, loader_for, memory_modality
from mlxk.backends.sampling import VISION_MAX_TOKENS, Purpose, SamplingRequest, resolve_sampling
from mlxk.backends.sampling import token_budget as _budget
from mlxk.backends.select import Inputs, select_backend
from mlxk.config import Settings
from mlxk.errors import CapabilityMismatchError, MlxkError
from mlxk.ops.catalog import ModelRecord, build_record, list_models
from mlxk.store.resolve import Resolver
from mlxk.types import Backend, GenerationChunk, Started, Transcript

AudioInput = Path | bytes | np.ndarray
_SPEECH_BACKENDS = frozenset({Backend.MLX_AUDIO})


class RunRefused(MlxkError):
    type = "execution_error"
    http_status = 400


@dataclass(frozen=True)
class RunOptions:
    """One request, whichever edge it came from. Sampling fields left None take the defaults
    of ``backends.sampling`` (the model's generation_config.json, then mlx-knife's)."""

    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    images: Sequence[Any] = ()  # paths, bytes or decoded images
    audio: Sequence[AudioInput] = ()
    system: str | None = None
    language: str | None = None
    translate: bool = False
    initial_prompt: str | None = None  # for Whisper: only what the user gave
    temperature: float | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    use_chat_template: bool = True
    word_timestamps: bool = False
    embeddings: bool = False
    chunk: int = 1
    stop: Sequence[str] = field(default_factory=tuple)
    tools: Sequence[dict[str, Any]] = ()  # OpenAI's function tools
    tool_choice: str | dict[str, Any] | None = None  # none | auto | required | {"name": …}
    response_format: dict[str, Any] | None = None  # {"type": …, "schema": …}
    thinking: bool | None = None  # False: ask the template not to think (enable_thinking)
    vad: bool = True  # Whisper: keep only segments where Silero VAD hears speech

    def sampling_request(self) -> SamplingRequest:
        return SamplingRequest(
            self.temperature, self.top_p, self.repetition_penalty, self.presence_penalty,
            self.frequency_penalty, self.seed,
        )  # fmt: skip

    def inputs(self) -> Inputs:
        return Inputs(
            images=len(self.images), audio=len(self.audio), translate=self.translate,
            embeddings=self.embeddings,
        )  # fmt: skip


@dataclass(frozen=True)
class PreparedRun:
    name: str  # what the user typed, resolved name in messages
    record: ModelRecord
    backend: Backend

    @property
    def key(self) -> ModelKey:
        return ModelKey(self.backend, self.record.model.path)

    @property
    def transcribes(self) -> bool:
        """A speech model: its answer is a transcript (segments), not generated text."""
        return self.backend in _SPEECH_BACKENDS


# -- finding the model (no weights loaded) -------------------------------------------------------


def capable_lister(settings: Settings) -> Callable[[str], list[str]]:
    def capable(capability: str) -> list[str]:
        recs = list_models(settings)
        return [_label(r) for r in recs if r.runnable and capability in r.info.capabilities]

    return capable


def _label(rec: ModelRecord) -> str:
    m = rec.model
    return m.name if m.cached else (m.display_name or m.name)


def _runnable_record(settings: Settings, spec: str) -> tuple[str, ModelRecord]:
    model = Resolver(settings).resolve(spec).model
    record = build_record(model)
    label = _label(record)
    if not record.health.healthy:
        raise RunRefused(f"Model '{label}' is unhealthy: {record.health.reason}")
    if not record.runtime.compatible:
        raise RunRefused(f"Model '{label}' is not compatible: {record.runtime.reason}")
    return label, record


def prepare(settings: Settings, spec: str, opts: RunOptions) -> PreparedRun:
    """Everything that can refuse a run, before any weights are loaded."""
    return prepare_for(settings, spec, opts.inputs())


def prepare_for(settings: Settings, spec: str, inputs: Inputs) -> PreparedRun:
    label, record = _runnable_record(settings, spec)
    backend = select_backend(label, record.info, inputs, capable_lister(settings))
    return PreparedRun(label, record, backend)


def prepare_by_kind(settings: Settings, spec: str) -> PreparedRun:
    """For preloading (serve --model): the backend the model's own kind calls for."""
    label, record = _runnable_record(settings, spec)
    kind = record.info.model_type
    inputs = Inputs(audio=int(kind == "audio"), embeddings=kind == "embedding")
    return PreparedRun(
        label, record, select_backend(label, record.info, inputs, capable_lister(settings))
    )


def modality_of(prep: PreparedRun) -> str:
    return memory_modality(prep.backend, prep.record.info.capabilities)


def platform_for(settings: Settings) -> Any:
    from mlxk.backends.platform import setup_platform

    return setup_platform(settings)


def check_memory(settings: Settings, prep: PreparedRun, device: str) -> None:
    from mlxk.backends.memory import gate

    gate(memory_estimate(settings, prep, device), prep.name)


def memory_estimate(settings: Settings, prep: PreparedRun, device: str) -> Any:
    from mlxk.backends.memory import estimate

    return estimate(
        prep.record.model.path, prep.record.info, device=device, modality=modality_of(prep),
        override=settings.memory_limit_bytes,
    )  # fmt: skip


# -- the runtime: one engine and one pool -------------------------------------------------------


@dataclass
class Runtime:
    settings: Settings
    platform: Any  # backends.platform.PlatformInfo
    pool: ModelPool
    engine: Engine
    max_tokens: int | None = None  # a ceiling per request (the server's --max-tokens)

    @classmethod
    def create(
        cls, settings: Settings, pool: ModelPool, *, max_batch: int, max_tokens: int | None
    ) -> Runtime:
        plat = platform_for(settings)  # before anything imports mlx
        return cls(settings, plat, pool, Engine(pool, max_batch=max_batch), max_tokens)

    @classmethod
    def local(cls, settings: Settings) -> Runtime:
        """The CLI's: a pool of one model, refused when the device cannot hold it now."""
        from mlxk.backends.memory import available_bytes

        plat = platform_for(settings)
        budget = available_bytes(plat.device, settings.memory_limit_bytes)
        pool = ModelPool(budget, 0.0, max_models=1, device_gate=True)
        rt = cls(settings, plat, pool, Engine(pool, max_batch=1), None)
        rt.engine.start()
        return rt

    def close(self) -> None:
        self.engine.stop()

    def need(self, prep: PreparedRun) -> ModelNeed:
        ctx = LoadContext(self.platform, self.settings.max_image_bytes)
        return ModelNeed(
            prep.key, prep.name, lambda: memory_estimate(self.settings, prep, self.platform.device),
            loader_for(prep.backend, prep.key.path, ctx),
        )  # fmt: skip

    def acquire(self, prep: PreparedRun, *, pin: bool = False) -> Loaded:
        """On the engine thread: the loaded model with one more user (loads here when needed;
        jobs submitted with ``need`` find it loaded already)."""
        need = self.need(prep)
        return self.pool.acquire(need.key, need.name, need.estimate, need.load, pin=pin)

    def submit(self, prep: PreparedRun, start: Callable[[], Work], sink: Sink) -> None:
        self.engine.submit(start, sink, self.need(prep))

    def events(self, submit: Callable[[Sink], None]) -> Iterator[Any]:
        """For a plain thread (the CLI): the events of one submitted run, as they come."""
        sink = QueueSink()
        submit(sink)
        return sink.events()


def _holding(rt: Runtime, prep: PreparedRun, plan: Callable[[Loaded], Work]) -> Callable[[], Work]:
    """A start function: acquire, plan, and give the model back if planning refuses."""

    def start() -> Work:
        entry = rt.acquire(prep)
        try:
            return plan(entry)
        except BaseException:
            rt.pool.release(entry)
            raise

    return start


# -- chat / generation -------------------------------------------------------------------------


def _text_plan(rt: Runtime, prep: PreparedRun, opts: RunOptions) -> Callable[[Loaded], Work]:
    mode = _tool_mode(opts)
    constraint = _constraint(opts, mode)  # a bad schema is refused before loading

    def plan(entry: Loaded) -> Work:
        runner = entry.runner
        tools = runner.tool_plan(list(opts.tools), mode) if mode else None
        ids = runner.encode_prompt(
            opts.messages, prompt=opts.prompt if opts.messages is None else None,
            use_chat_template=opts.use_chat_template, system=opts.system, tools=tools,
            thinking=opts.thinking,
        )  # fmt: skip
        ceiling = rt.max_tokens or runner.context_length
        limit = _budget(len(ids), runner.context_length, opts.max_tokens, ceiling)
        sampling = resolve_sampling(opts.sampling_request(), "text", prep.record.model.path)
        started = Started(
            prep.backend, sampling, opts.prompt, len(ids), limit, tools=tools,
            reasoning=runner.reasoning_plan(ids) if opts.use_chat_template else None,
        )  # fmt: skip
        return TextWork(entry, ids, sampling, limit, tuple(opts.stop), started, constraint)

    return plan


def _tool_mode(opts: RunOptions) -> Any:
    """None (no tools), "auto", or "forced" (required / one named function)."""
    choice = opts.tool_choice
    if not opts.tools or choice == "none":
        return None
    return "auto" if choice in (None, "auto") else "forced"


def _constraint(opts: RunOptions, mode: Any) -> Any:
    """The grammar the logits are held to: a forced tool call, or the response format."""
    from mlxk.backends.structured import json_constraint, tool_call_schema

    if mode == "forced":
        named = opts.tool_choice.get("name") if isinstance(opts.tool_choice, dict) else None
        return json_constraint(tool_call_schema(list(opts.tools), named), "tool_call")
    fmt = opts.response_format or {}
    if fmt.get("type") == "json_object":
        return json_constraint(None, "json_object")
    if fmt.get("type") == "json_schema":
        return json_constraint(fmt.get("schema") or {}, "json_schema")
    return None


def refused_tools(prep: PreparedRun) -> MlxkError:
    from mlxk.backends.sampling import refused

    return refused("tools", f"model '{prep.name}' ({prep.backend.value}) cannot call tools")


def _no_structure(prep: PreparedRun, opts: RunOptions) -> None:
    """Engines without constrained decoding here refuse tools and formats by name."""
    from mlxk.backends.sampling import refused

    if opts.tools and opts.tool_choice != "none":
        raise refused("tools", f"model '{prep.name}' ({prep.backend.value}) cannot call tools")
    if (opts.response_format or {}).get("type", "text") != "text":
        raise refused(
            "response_format",
            f"response_format is not supported for model '{prep.name}' ({prep.backend.value})",
        )


def _vision_plan(
    rt: Runtime, prep: PreparedRun, opts: RunOptions, clips: list[np.ndarray]
) -> Callable[[Loaded], Work]:
    if opts.tools and opts.tool_choice != "none":
        raise refused_tools(prep)
    constraint = _constraint(opts, None)  # response_format: the same grammar as for text
    purpose: Purpose = "omni-audio" if clips else "text"

    def plan(entry: Loaded) -> Work:
        sampling = resolve_sampling(opts.sampling_request(), purpose, prep.record.model.path)
        limit = min(opts.max_tokens or VISION_MAX_TOKENS, rt.max_tokens or VISION_MAX_TOKENS)
        stream = entry.runner.stream(
            opts.prompt if opts.messages is None else None, images=list(opts.images),
            audio=clips, system=opts.system, max_tokens=limit, sampling=sampling,
            chunk=opts.chunk, messages=opts.messages, constraint=constraint,
        )  # fmt: skip
        req = stream.request
        started = Started(prep.backend, sampling, req.prompt, None, limit, detail=req)
        return StepWork(entry, _stopped(stream, tuple(opts.stop)), started)

    return plan


def _stopped(chunks: Iterator[GenerationChunk], stop: tuple[str, ...]) -> Iterator[Any]:
    """Stop strings over a chunk stream (a lazy filter: still one step per chunk)."""
    from mlxk.backends.text import StopStrings

    stops = StopStrings(stop)
    try:
        for chunk in chunks:
            text, hit = stops.feed(chunk.text)
            reason = "stop" if hit else chunk.finish_reason
            if reason is not None and not hit:
                text += stops.flush()
            if text or reason is not None:
                yield GenerationChunk(text, chunk.token_count, reason, chunk.prompt_tokens)
            if reason is not None:
                return
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _speech_chat_plan(
    rt: Runtime, prep: PreparedRun, opts: RunOptions, clips: list[np.ndarray]
) -> Callable[[Loaded], Work]:
    """input_audio sent to a Whisper model: the transcript is the answer, window by window."""
    _no_structure(prep, opts)
    if not clips:
        raise CapabilityMismatchError(f"model '{prep.name}' is a speech model: send audio")

    def plan(entry: Loaded) -> Work:
        sampling = resolve_sampling(opts.sampling_request(), "whisper", prep.record.model.path)
        windows = [_windows(entry.runner, c, opts, sampling.temperature) for c in clips]
        started = Started(
            prep.backend, sampling, None, None, None, sum(len(c) for c in clips) / 16000
        )
        return StepWork(entry, _as_chunks(windows), started)

    return plan


def _as_chunks(per_clip: list[Iterator[Any]]) -> Iterator[GenerationChunk]:
    sep = ""
    for i, windows in enumerate(per_clip):
        for window in windows:
            text = window.text.strip()
            if text:
                yield GenerationChunk(sep + text, 0, None, 0)
                sep = " "
        sep = "\n" if i + 1 < len(per_clip) else sep
    yield GenerationChunk("", 0, "stop", 0)


def start_chat(rt: Runtime, prep: PreparedRun, opts: RunOptions, sink: Sink) -> None:
    """Generate for a prompt or messages (text, images, input_audio) into ``sink``."""
    clips = [load_clip(rt.settings, a) for a in opts.audio]
    plans: dict[Backend, Callable[[], Callable[[Loaded], Work]]] = {
        Backend.MLX_LM: lambda: _text_plan(rt, prep, opts),
        Backend.MLX_VLM: lambda: _vision_plan(rt, prep, opts, clips),
        Backend.MLX_AUDIO: lambda: _speech_chat_plan(rt, prep, opts, clips),
    }
    if prep.backend not in plans:
        raise CapabilityMismatchError(f"model '{prep.name}' is not a generative model")
    rt.submit(prep, _holding(rt, prep, plans[prep.backend]()), sink)


def load_clip(settings: Settings, source: AudioInput) -> np.ndarray:
    """16 kHz mono float32 samples; already decoded samples pass through."""
    if isinstance(source, np.ndarray):
        return source
    from mlxk.media.audio import load_audio

    clip = load_audio(
        source, target_rate=16000, max_bytes=settings.max_audio_bytes,
        max_seconds=settings.max_audio_seconds,
    )  # fmt: skip
    return clip.samples


# -- transcription ------------------------------------------------------------------------------


def _windows(runner: Any, clip: np.ndarray, opts: RunOptions, temperature: float) -> Iterator[Any]:
    return runner.windows(  # validates now; decodes one window per next()
        clip, language=opts.language, task="translate" if opts.translate else "transcribe",
        initial_prompt=opts.initial_prompt, word_timestamps=opts.word_timestamps,
        temperature=temperature,
    )  # fmt: skip


def _whisper_plan(
    prep: PreparedRun, opts: RunOptions, clip: np.ndarray
) -> Callable[[Loaded], Work]:
    def plan(entry: Loaded) -> Work:
        sampling = resolve_sampling(opts.sampling_request(), "whisper", prep.record.model.path)
        windows = _windows(entry.runner, clip, opts, sampling.temperature)
        if opts.vad:
            windows = _gated(windows, clip)
        started = Started(
            prep.backend, sampling, opts.initial_prompt, None, None, len(clip) / 16000
        )
        return StepWork(entry, windows, started)

    return plan


def _gated(windows: Iterator[Any], clip: np.ndarray) -> Iterator[Any]:
    """Hallucination gating: segments outside speech (Silero VAD) or that Whisper itself
    rates as silence are dropped, so silence and noise give an empty transcript. A clip
    without any speech is not decoded at all."""
    from dataclasses import replace

    from mlxk.backends.vad import gate_segment, speech_spans

    spans = speech_spans(clip)
    if not spans:
        close = getattr(windows, "close", None)
        if close is not None:
            close()
        return
    ids = 0
    for w in windows:
        kept = [g for s in w.segments if (g := gate_segment(s, spans)) is not None]
        if len(kept) != len(w.segments):
            kept = [replace(s, id=ids + i) for i, s in enumerate(kept)]
            text = "".join(" " + s.text.strip() for s in kept)
            w = replace(w, segments=tuple(kept), text=text)
        elif kept and kept[0].id != ids:
            w = replace(w, segments=tuple(replace(s, id=ids + i) for i, s in enumerate(kept)))
        else:
            w = replace(w, segments=tuple(kept))
        ids += len(kept)
        yield w


def start_transcription(
    rt: Runtime, prep: PreparedRun, opts: RunOptions, clip: np.ndarray, sink: Sink
) -> None:
    """Transcribe one clip: Whisper sends a WindowResult per 30 s window; an omni model
    (mlx-vlm) sends its transcript as chunks, asked with its default prompt and temperature."""
    omni = RunOptions(
        prompt=opts.initial_prompt, audio=(clip,), temperature=opts.temperature,
        top_p=opts.top_p, max_tokens=opts.max_tokens,
    )  # fmt: skip
    plans: dict[Backend, Callable[[], Callable[[Loaded], Work]]] = {
        Backend.MLX_AUDIO: lambda: _whisper_plan(prep, opts, clip),
        Backend.MLX_VLM: lambda: _vision_plan(rt, prep, omni, [clip]),
    }
    if prep.backend not in plans:
        raise CapabilityMismatchError(f"model '{prep.name}' does not transcribe audio")
    rt.submit(prep, _holding(rt, prep, plans[prep.backend]()), sink)


def fold_transcript(started: Started, events: Sequence[Any], opts: RunOptions) -> Transcript:
    """The whole transcript from a transcription's events (the non-streamed answer)."""
    task = "translate" if opts.translate else "transcribe"
    duration = float(started.duration or 0.0)
    chunks = [e.text for e in events if isinstance(e, GenerationChunk)]
    if chunks:
        return Transcript("".join(chunks).strip(), None, duration, task=task)
    segments = tuple(s for w in events for s in w.segments)
    language = next((w.language for w in reversed(events) if w.language), opts.language)
    text = "".join(w.text for w in events).strip()  # windows keep their own spacing
    return Transcript(text, language, duration, segments, task)


@dataclass(frozen=True)
class FileTranscript:
    source: str
    transcript: Transcript | None
    error: str | None = None


def transcribe_events(
    rt: Runtime, prep: PreparedRun, opts: RunOptions, source: AudioInput
) -> Iterator[Any]:
    """For the CLI: the events of one file's transcription, as they are decoded."""
    clip = load_clip(rt.settings, source)
    return rt.events(lambda sink: start_transcription(rt, prep, opts, clip, sink))


def run_with_model(rt: Runtime, prep: PreparedRun, work: Callable[[Any], Any], sink: Sink) -> None:
    """``work(runner)`` on the engine thread with the model held (embeddings)."""

    def start() -> Work:
        entry = rt.acquire(prep)
        try:
            return Value(work(entry.runner))
        finally:
            rt.pool.release(entry)

    rt.submit(prep, start, sink)


def pin(rt: Runtime, prep: PreparedRun) -> None:
    """On the engine thread: load and pin (serve --model); no request holds it afterwards."""
    rt.pool.release(rt.acquire(prep, pin=True))


def describe(started: Started) -> str:
    """One log line of what a run was given (the same line the CLI's --verbose prints)."""
    s = started.sampling
    parts = [f"backend={started.backend.value}"]
    if started.prompt is not None:
        parts.append(f"prompt={started.prompt!r}")
    if s is not None:
        parts += [f"temperature={s.temperature:g}", f"top_p={s.top_p:g}",
                  f"repetition_penalty={s.repetition_penalty}"]  # fmt: skip
    if started.max_tokens is not None:
        parts.append(f"max_tokens={started.max_tokens}")
    return " ".join(parts)


def fold_run(events: Sequence[Any], opts: RunOptions) -> Transcript:
    """A transcription's whole event list (Started first) as one transcript."""
    started = next(e for e in events if isinstance(e, Started))
    return fold_transcript(started, [e for e in events if not isinstance(e, Started)], opts)


def transcript_text(rt: Runtime, prep: PreparedRun, opts: RunOptions, clip: np.ndarray) -> str:
    """One clip's whole transcript (a live turn): the same road as any transcription."""
    events = list(rt.events(lambda sink: start_transcription(rt, prep, opts, clip, sink)))
    return fold_run(events, opts).text


@dataclass(frozen=True)
class Embedded:
    vectors: np.ndarray  # (N, D), L2-normalised
    tokens: int  # [CLS]/[SEP] included


def start_embeddings(
    rt: Runtime, prep: PreparedRun, inputs: Sequence[str] | Sequence[Sequence[int]], sink: Sink,
    *, dimensions: int | None = None,
) -> None:  # fmt: skip
    """Texts (tokenized by the model) or token id rows (checked, truncated) → vectors."""
    from mlxk.backends.sampling import refused

    def work(runner: Any) -> Embedded:
        if dimensions is not None and dimensions != runner.dimensions:
            raise refused("dimensions", f"this model gives {runner.dimensions} dimensions;"
                          " other sizes are not supported")  # fmt: skip
        if inputs and not isinstance(inputs[0], str):
            vocab = runner.tokenizer.get_vocab_size()
            rows = [list(r)[: runner.max_length] for r in inputs]
            if any(t >= vocab for row in rows for t in row):
                raise refused("input", f"token ids must be below the vocabulary size {vocab}")
        else:
            rows = runner.tokenize(list(inputs))
        return Embedded(runner.embed_ids(rows), sum(len(r) for r in rows))

    run_with_model(rt, prep, work, sink)

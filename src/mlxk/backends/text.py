"""Text generation through mlx-lm's public API (load, stream_generate, samplers)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from mlxk.backends.sampling import token_budget
from mlxk.errors import GenerationError, ValidationError
from mlxk.types import GenerationChunk, Sampling

GREEDY = Sampling(temperature=0.0, top_p=1.0, repetition_penalty=None)

# Used only when a config names no context length at all.
FALLBACK_CONTEXT_LENGTH = 4096
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def context_length_of(config: dict[str, Any]) -> int | None:
    """The context length a config declares, top-level first, then in ``text_config``."""
    for scope in (config, config.get("text_config") or {}):
        for key in _CONTEXT_KEYS:
            value = scope.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return None


def _eos_ids_of(config: dict[str, Any]) -> set[int]:
    ids: set[int] = set()
    for scope in (config, config.get("text_config") or {}):
        value = scope.get("eos_token_id")
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(v for v in value if isinstance(v, int))
    return ids


def _text_of(content: Any) -> str:
    """Message content as text: OpenAI-style part lists keep their text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


class StopStrings:
    """Cuts the output before the first stop string, never emitting a partial one.

    Text that could still become a stop string is held back until the next piece decides.
    """

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = [s for s in stops if s]
        self.text = ""
        self.sent = 0

    def feed(self, piece: str) -> tuple[str, bool]:
        """Text safe to emit now, and whether a stop string was hit."""
        self.text += piece
        hits = [i for s in self.stops if (i := self.text.find(s, self.sent)) >= 0]
        if hits:
            out, self.sent = self.text[self.sent : min(hits)], min(hits)
            return out, True
        safe = len(self.text) - self._held()
        out, self.sent = self.text[self.sent : safe], safe
        return out, False

    def flush(self) -> str:
        out, self.sent = self.text[self.sent :], len(self.text)
        return out

    def _held(self) -> int:
        pending = len(self.text) - self.sent
        for k in range(min(pending, max((len(s) for s in self.stops), default=0)), 0, -1):
            tail = self.text[-k:]
            if any(s.startswith(tail) for s in self.stops):
                return k
        return 0


@dataclass
class TextRunner:
    """A loaded text model; ``stream`` generates, ``cancel`` stops a running generation."""

    model: Any
    tokenizer: Any  # mlx_lm TokenizerWrapper
    config: dict[str, Any]
    context_length: int
    eos_token_ids: frozenset[int]
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def cancel(self) -> None:
        """Stop the generation in progress after the step being computed (thread-safe)."""
        self._cancel.set()

    def _templated(self, chat: list[dict[str, Any]]) -> list[int]:
        """A template that rejects the messages is the caller's error, not a crash."""
        from jinja2 import TemplateError

        try:
            return list(self.tokenizer.apply_chat_template(chat, add_generation_prompt=True))
        except (TemplateError, TypeError, ValueError, KeyError) as exc:
            err = ValidationError(f"the model's chat template refused the messages: {exc}")
            err.param = "messages"  # type: ignore[attr-defined]
            raise err from None

    def encode_prompt(
        self,
        messages: list[dict[str, Any]] | None = None,
        *,
        prompt: str | None = None,
        use_chat_template: bool = True,
        system: str | None = None,
    ) -> list[int]:
        """Prompt token ids: through the chat template when there is one and it is wanted."""
        if messages is None and prompt is None:
            raise ValidationError("give messages or a prompt")
        if use_chat_template and self.tokenizer.has_chat_template:
            chat = [{**m, "content": _text_of(m.get("content"))} for m in messages or []]
            if messages is None:
                chat = [{"role": "user", "content": prompt}]
            if system is not None:  # --system replaces a leading system message
                chat = chat[1:] if chat and chat[0].get("role") == "system" else chat
                chat = [{"role": "system", "content": system}, *chat]
            return self._templated(chat)
        text = (
            prompt
            if prompt is not None
            else "\n\n".join(_text_of(m.get("content")) for m in messages or [])
        )
        if system:
            text = f"{system}\n\n{text}"
        return list(self.tokenizer.encode(text))

    def new_batch(self, max_batch: int, stream: Any = None) -> TextBatch:
        """A continuous batch over this model (the engine keeps one per loaded model)."""
        return TextBatch(self, max_batch, stream)

    def stream(
        self,
        messages: list[dict[str, Any]] | None = None,
        *,
        prompt: str | None = None,
        use_chat_template: bool = True,
        system: str | None = None,
        max_tokens: int | None = None,
        sampling: Sampling = GREEDY,
        stop: Sequence[str] = (),
    ) -> Iterator[GenerationChunk]:
        """One request on its own: a batch of one, the same decode path the engine runs.

        The last chunk has finish_reason "stop", "length" or "cancelled"; ``token_count`` is
        cumulative and every chunk carries ``prompt_tokens``."""
        ids = self.encode_prompt(
            messages, prompt=prompt, use_chat_template=use_chat_template, system=system
        )
        limit = token_budget(len(ids), self.context_length, max_tokens, self.context_length)
        self._cancel.clear()
        return self._alone(ids, limit, sampling, stop)

    def _alone(
        self, ids: list[int], limit: int, sampling: Sampling, stop: Sequence[str]
    ) -> Iterator[GenerationChunk]:
        import mlx.core as mx

        batch = self.new_batch(1, mx.default_stream(mx.default_device()))
        batch.insert(ids, sampling, limit)
        seq = batch.sequence(stop, len(ids))
        try:
            while not self._cancel.is_set():  # checked before each generated token
                for token in batch.step():
                    chunk = seq.feed(token.token, token.finish_reason)
                    if chunk is not None:
                        yield chunk
                    if seq.ended:
                        return
            yield seq.cancelled()
        finally:
            batch.close()


@dataclass(frozen=True)
class Token:
    uid: int
    token: int
    finish_reason: str | None


class TextSequence:
    """One request inside a batch: detokenizes, applies stop strings, counts."""

    def __init__(self, tokenizer: Any, stops: Sequence[str], prompt_tokens: int) -> None:
        self.detok = tokenizer.detokenizer  # mlx-lm hands out a fresh copy per access
        self.stops = StopStrings(stops)
        self.prompt_tokens = prompt_tokens
        self.count = 0
        self.ended = False

    def feed(self, token: int, finish_reason: str | None) -> GenerationChunk | None:
        """What one generated token adds (None when nothing is ready to show yet)."""
        self.count += 1
        if finish_reason != "stop":  # an ending EOS is counted but never shown
            self.detok.add_token(token)
        if finish_reason is not None:
            self.detok.finalize()
        text, hit = self.stops.feed(self.detok.last_segment)
        reason = "stop" if hit else finish_reason
        if reason is not None and not hit:
            text += self.stops.flush()
        self.ended = reason is not None
        if text or self.ended:
            return GenerationChunk(text, self.count, reason, self.prompt_tokens)
        return None

    def cancelled(self) -> GenerationChunk:
        self.ended = True
        return GenerationChunk(self.stops.flush(), self.count, "cancelled", self.prompt_tokens)


class TextBatch:
    """mlx-lm's BatchGenerator over one model: requests join and leave between steps."""

    def __init__(self, runner: TextRunner, max_batch: int, stream: Any) -> None:
        from mlx_lm.generate import BatchGenerator

        self.runner = runner
        kw = {} if stream is None else {"stream": stream}
        self.gen = BatchGenerator(
            runner.model,
            completion_batch_size=max_batch,
            prefill_batch_size=min(8, max_batch),
            **kw,
        )

    def insert(self, ids: list[int], sampling: Sampling, max_tokens: int) -> int:
        from mlx_lm.generate import StopSequences
        from mlx_lm.sample_utils import make_logits_processors, make_sampler

        if sampling.seed is not None:
            import mlx.core as mx

            mx.random.seed(sampling.seed)
        processors = make_logits_processors(
            repetition_penalty=sampling.repetition_penalty,
            presence_penalty=sampling.presence_penalty,
            frequency_penalty=sampling.frequency_penalty,
        )
        uids = self.gen.insert(
            [ids],
            max_tokens=[max_tokens],
            samplers=[make_sampler(temp=sampling.temperature, top_p=sampling.top_p)],
            logits_processors=[processors],
            stop_sequences=[StopSequences([(t,) for t in self.runner.eos_token_ids])],
        )
        return int(uids[0])

    def sequence(self, stop: Sequence[str], prompt_tokens: int) -> TextSequence:
        return TextSequence(self.runner.tokenizer, stop, prompt_tokens)

    def step(self) -> list[Token]:
        """One decode step for every sequence (prefill happens inside as needed)."""
        try:
            _prompts, responses = self.gen.next()
        except (ValueError, RuntimeError) as exc:
            raise GenerationError(f"generation failed: {exc}") from exc
        return [Token(r.uid, int(r.token), r.finish_reason) for r in responses]

    def remove(self, uids: list[int]) -> None:
        self.gen.remove(uids)

    def close(self) -> None:
        self.gen.close()


def load_text(path: Path, *, float32_activations: bool) -> TextRunner:
    """Load an mlx-lm text model directory.

    ``float32_activations``: cast floating parameters (dense weights, quantization scales and
    biases) to float32 so activations are float32 — on Linux CPU float16/bfloat16 compute is
    several times slower (quantized matmul about 40×).
    """
    import mlx.core as mx
    from mlx_lm import load

    try:
        loaded = load(str(path), return_config=True)
        model, tokenizer, config = cast("tuple[Any, Any, dict[str, Any]]", loaded)
    except (FileNotFoundError, ValueError, KeyError, OSError) as exc:
        raise GenerationError(f"cannot load text model at {path}: {exc}") from exc
    if float32_activations:
        model.set_dtype(mx.float32)
    eos = set(tokenizer.eos_token_ids) | _eos_ids_of(config)
    tokenizer.eos_token_ids = eos
    context = context_length_of(config) or FALLBACK_CONTEXT_LENGTH
    return TextRunner(model, tokenizer, config, context, frozenset(eos))

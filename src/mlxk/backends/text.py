"""Text generation through mlx-lm's public API (load, stream_generate, samplers)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from mlxk.errors import GenerationError, ValidationError
from mlxk.types import GenerationChunk

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
            ids = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True)
            return list(ids)
        text = (
            prompt
            if prompt is not None
            else "\n\n".join(_text_of(m.get("content")) for m in messages or [])
        )
        if system:
            text = f"{system}\n\n{text}"
        return list(self.tokenizer.encode(text))

    def _token_limit(self, prompt_tokens: int, max_tokens: int | None) -> int:
        room = self.context_length - prompt_tokens
        if room <= 0:
            raise GenerationError(
                f"prompt of {prompt_tokens} tokens fills the context of {self.context_length}"
            )
        if max_tokens is not None and max_tokens <= 0:
            raise ValidationError(f"max_tokens must be positive, got {max_tokens}")
        return room if max_tokens is None else min(max_tokens, room)

    def stream(
        self,
        messages: list[dict[str, Any]] | None = None,
        *,
        prompt: str | None = None,
        use_chat_template: bool = True,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.7,
        top_p: float = 0.9,
        repetition_penalty: float = 1.1,
        stop: Sequence[str] = (),
        seed: int | None = None,
    ) -> Iterator[GenerationChunk]:
        """Generate; the last chunk has finish_reason "stop", "length" or "cancelled".

        ``token_count`` is cumulative (generated tokens so far, an ending EOS included) and
        every chunk carries ``prompt_tokens``. Greedy when temperature == 0.
        """
        ids = self.encode_prompt(
            messages, prompt=prompt, use_chat_template=use_chat_template, system=system
        )
        limit = self._token_limit(len(ids), max_tokens)
        self._cancel.clear()
        responses = self._responses(ids, limit, temperature, top_p, repetition_penalty, seed)
        return self._chunks(responses, StopStrings(stop), len(ids))

    def _responses(
        self,
        ids: list[int],
        limit: int,
        temperature: float,
        top_p: float,
        repetition_penalty: float,
        seed: int | None,
    ) -> Iterator[Any]:
        import mlx.core as mx
        from mlx_lm import stream_generate
        from mlx_lm.sample_utils import make_logits_processors, make_sampler

        if seed is not None:
            mx.random.seed(seed)
        sampler = make_sampler(temp=temperature, top_p=top_p)
        penalty = repetition_penalty if repetition_penalty not in (None, 1.0) else None
        processors = make_logits_processors(repetition_penalty=penalty) if penalty else None
        return stream_generate(
            self.model,
            self.tokenizer,
            mx.array(ids),
            max_tokens=limit,
            sampler=sampler,
            logits_processors=processors,
        )

    def _chunks(
        self, responses: Iterator[Any], stops: StopStrings, prompt_tokens: int
    ) -> Iterator[GenerationChunk]:
        count = 0
        try:
            while not self._cancel.is_set():  # checked before each generated token
                response = next(responses, None)
                if response is None:
                    return
                count = int(response.generation_tokens)
                text, hit = stops.feed(response.text)
                if hit:
                    yield GenerationChunk(text, count, "stop", prompt_tokens)
                    return
                if response.finish_reason is not None:
                    text += stops.flush()
                    yield GenerationChunk(text, count, response.finish_reason, prompt_tokens)
                    return
                if text:
                    yield GenerationChunk(text, count, None, prompt_tokens)
            yield GenerationChunk(stops.flush(), count, "cancelled", prompt_tokens)
        except (ValueError, RuntimeError) as exc:
            raise GenerationError(f"generation failed: {exc}") from exc
        finally:
            close = getattr(responses, "close", None)
            if close is not None:
                close()


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

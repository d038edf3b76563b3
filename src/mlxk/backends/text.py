"""Text generation through mlx-lm's public API (load, stream_generate, samplers)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from mlxk.backends.reasoning import ReasoningPlan
from mlxk.backends.sampling import token_budget
from mlxk.backends.tools import (
    Mode,
    generic_tool_prompt,
    history_as_text,
    history_for_template,
    template_knows_tools,
)
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


def _system_of(chat: list[dict[str, Any]]) -> str | None:
    if chat and chat[0].get("role") == "system":
        return str(chat[0].get("content") or "")
    return None


@dataclass(frozen=True)
class ToolPlan:
    """Tools of one request: how they reach the prompt, how calls are read back."""

    tools: list[dict[str, Any]]
    mode: Mode  # "auto", or "forced" (required / a named function: decoded under a grammar)
    in_template: bool  # the chat template renders tools itself
    prompt: str | None  # the generic tool prompt for templates that do not
    start: str | None  # the family's call markers and parser (mlx-lm), for auto mode
    end: str | None
    parser: Any


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

    def _templated(self, chat: list[dict[str, Any]], kw: dict[str, Any] | None = None) -> list[int]:
        """A template that rejects the messages is the caller's error, not a crash.
        ``kw`` (tools, enable_thinking) become template variables; templates that do not
        use them ignore them."""
        from jinja2 import TemplateError

        kw = kw or {}
        try:
            return list(self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, **kw))
        except (TemplateError, TypeError, ValueError, KeyError) as exc:
            message = f"the model's chat template refused the messages: {exc}"
            raise ValidationError(message, param="messages") from None

    def encode_prompt(
        self,
        messages: list[dict[str, Any]] | None = None,
        *,
        prompt: str | None = None,
        use_chat_template: bool = True,
        system: str | None = None,
        tools: ToolPlan | None = None,
        thinking: bool | None = None,
    ) -> list[int]:
        """Prompt token ids: through the chat template when there is one and it is wanted;
        ``tools`` through the template where it knows tools, else a generic tool prompt."""
        if messages is None and prompt is None:
            raise ValidationError("give messages or a prompt")
        if use_chat_template and self.tokenizer.has_chat_template:
            chat = [{**m, "content": _text_of(m.get("content"))} for m in messages or []]
            if messages is None:
                chat = [{"role": "user", "content": prompt}]
            knows_tools = template_knows_tools(self.tokenizer)
            if not knows_tools and any(m.get("tool_calls") or m["role"] == "tool" for m in chat):
                chat = history_as_text(chat)  # a template without tool roles
            if tools is not None and not tools.in_template:
                system = "\n\n".join(x for x in (system, _system_of(chat), tools.prompt) if x)
            if system is not None:  # --system replaces a leading system message
                chat = chat[1:] if chat and chat[0].get("role") == "system" else chat
                chat = [{"role": "system", "content": system}, *chat]
            extra: dict[str, Any] = {} if thinking is None else {"enable_thinking": thinking}
            if tools is not None and tools.in_template:
                extra["tools"] = tools.tools
                chat = history_for_template(chat)
            return self._templated(chat, extra)
        text = (
            prompt
            if prompt is not None
            else "\n\n".join(_text_of(m.get("content")) for m in messages or [])
        )
        if system:
            text = f"{system}\n\n{text}"
        return list(self.tokenizer.encode(text))

    def reasoning_plan(self, ids: list[int]) -> ReasoningPlan | None:
        """Where this model's thinking markers are, and whether the prompt opened one."""
        tok = self.tokenizer
        if not getattr(tok, "has_thinking", False):
            return None
        tail = tok.decode(ids[-32:])
        opened = tail.rfind(tok.think_start) > tail.rfind(tok.think_end)
        return ReasoningPlan(tok.think_start, tok.think_end, opened)

    def tool_plan(self, tools: list[dict[str, Any]], mode: Mode) -> ToolPlan:
        """How tools reach this model's prompt and how its calls are read back."""
        in_template = template_knows_tools(self.tokenizer)
        start = self.tokenizer.tool_call_start if self.tokenizer.has_tool_calling else None
        parser = self.tokenizer.tool_parser if start else None
        if parser is None:
            start = None
        end = getattr(self.tokenizer, "tool_call_end", None) if start else None
        prompt = None if in_template else generic_tool_prompt(tools, mode)
        return ToolPlan(tools, mode, in_template, prompt, start, end, parser)

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
        constraint: Any = None,
    ) -> Iterator[GenerationChunk]:
        """One request on its own: a batch of one, the same decode path the engine runs.

        The last chunk has finish_reason "stop", "length" or "cancelled"; ``token_count`` is
        cumulative and every chunk carries ``prompt_tokens``."""
        ids = self.encode_prompt(
            messages, prompt=prompt, use_chat_template=use_chat_template, system=system
        )
        limit = token_budget(len(ids), self.context_length, max_tokens, self.context_length)
        self._cancel.clear()
        return self._alone(ids, limit, sampling, stop, constraint)

    def _alone(
        self, ids: list[int], limit: int, sampling: Sampling, stop: Sequence[str],
        constraint: Any,
    ) -> Iterator[GenerationChunk]:  # fmt: skip
        import mlx.core as mx

        batch = self.new_batch(1, mx.default_stream(mx.default_device()))
        batch.insert(ids, sampling, limit, constraint)
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

    def insert(
        self, ids: list[int], sampling: Sampling, max_tokens: int, constraint: Any = None
    ) -> int:
        """Add one request; ``constraint`` (backends.structured.Constraint) masks its logits
        to a grammar (JSON, a schema, a tool call)."""
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
        if constraint is not None:
            from mlxk.backends.structured import TOKENIZERS, GrammarProcessor

            llg = TOKENIZERS.get(self.runner.tokenizer, self.runner.eos_token_ids)
            processors.append(GrammarProcessor(constraint, llg))
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

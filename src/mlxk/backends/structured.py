"""Constrained decoding with llguidance: JSON objects, JSON schemas and forced tool calls
always parse, because tokens that would break the grammar are masked out of the logits.

llguidance's own MLX helpers (and mlx-vlm's) apply the mask with a Metal kernel; this one
is plain MLX ops, so it runs on every backend (Linux CPU and CUDA included). The matcher
advances on the engine thread, one token per decode step, inside mlx-lm's logits
processors (one processor per sequence of a batch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlxk.backends.sampling import refused
from mlxk.errors import ValidationError


@dataclass(frozen=True)
class Constraint:
    """A compiled-on-demand grammar (llguidance's JSON form) and what it is for."""

    grammar: str
    purpose: str  # "json_object", "json_schema" or "tool_call" (for messages)


def json_constraint(schema: dict[str, Any] | None, purpose: str) -> Constraint:
    """A grammar for one JSON value matching ``schema`` (any object when None)."""
    from llguidance import LLMatcher

    try:
        grammar = LLMatcher.grammar_from_json_schema(
            json.dumps(schema if schema is not None else {"type": "object"}),
            defaults={"whitespace_flexible": False},
        )
    except ValueError as exc:
        raise refused("response_format", f"the JSON schema cannot be used: {exc}") from None
    problem = LLMatcher.validate_grammar(grammar)
    if problem and not problem.startswith("WARNING"):
        raise refused("response_format", f"the JSON schema cannot be compiled: {problem}")
    return Constraint(grammar, purpose)


def tool_call_schema(tools: list[dict[str, Any]], only: str | None) -> dict[str, Any]:
    """One call to one of ``tools`` (or to ``only``): {"name": …, "arguments": {…}}."""
    choices = []
    for tool in tools:
        fn = tool["function"]
        if only is not None and fn["name"] != only:
            continue
        params = dict(fn.get("parameters") or {"type": "object", "properties": {}})
        # Closed unless the tool says otherwise: a small model, allowed any extra key,
        # tends to keep inventing keys until max_tokens (a call that never parses).
        params.setdefault("additionalProperties", False)
        choices.append({
            "type": "object",
            "properties": {"name": {"const": fn["name"]}, "arguments": params},
            "required": ["name", "arguments"], "additionalProperties": False,
        })  # fmt: skip
    if not choices:
        raise refused("tool_choice", f"tool_choice names '{only}', which is not in tools")
    return choices[0] if len(choices) == 1 else {"anyOf": choices}


class LLGuidanceTokenizers:
    """llguidance tokenizers, one per loaded text tokenizer (building one takes ~1 s)."""

    def __init__(self) -> None:
        self._cache: dict[int, Any] = {}

    def get(self, tokenizer: Any, eos_ids: frozenset[int]) -> Any:
        key = id(tokenizer)
        if key not in self._cache:
            self._cache[key] = _llg_tokenizer(tokenizer, sorted(eos_ids))
        return self._cache[key]


def _llg_tokenizer(tokenizer: Any, eos: list[int]) -> Any:
    """From the Rust tokenizer inside (mlx-lm's wrapper, transformers' fast or backend
    tokenizers alike): llguidance's own helper only accepts one transformers class."""
    from copy import copy

    from llguidance import LLTokenizer

    hf = getattr(tokenizer, "_tokenizer", tokenizer)
    found = (hf, getattr(hf, "backend_tokenizer", None), getattr(hf, "_tokenizer", None))
    backend = next((b for b in found if hasattr(b, "to_str")), None)
    if backend is None:
        raise ValidationError("this model's tokenizer cannot drive constrained decoding")
    backend = copy(backend)
    backend.no_padding()
    backend.no_truncation()
    if not eos and getattr(tokenizer, "eos_token_id", None) is not None:
        eos = [int(tokenizer.eos_token_id)]
    return LLTokenizer(backend.to_str(), eos_token=eos or None)


TOKENIZERS = LLGuidanceTokenizers()


class GrammarProcessor:
    """An mlx-lm logits processor: ``(tokens, logits) -> logits`` with every token the
    grammar forbids at this point set to -inf. The first call sees the prompt only."""

    def __init__(self, constraint: Constraint, llg_tokenizer: Any) -> None:
        from llguidance import LLMatcher

        self.matcher = LLMatcher(llg_tokenizer, constraint.grammar)
        self.vocab = int(llg_tokenizer.vocab_size)
        self.words = np.full(((self.vocab + 31) // 32,), -1, dtype=np.int32)
        self.started = False

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import llguidance.numpy
        import mlx.core as mx

        if self.started:  # the token sampled after the previous call
            self.matcher.consume_token(int(tokens[-1].item()))
        self.started = True
        if self.matcher.is_error():
            raise ValidationError(f"constrained decoding failed: {self.matcher.get_error()}")
        llguidance.numpy.fill_next_token_bitmask(self.matcher, self.words[None, :], 0)
        allowed = np.unpackbits(self.words.view(np.uint8), bitorder="little")[: self.vocab]
        width = logits.shape[-1]
        if width > self.vocab:  # padded embedding rows are never valid tokens
            allowed = np.concatenate([allowed, np.zeros(width - self.vocab, np.uint8)])
        mask = mx.array(allowed[:width].astype(np.bool_))
        return mx.where(mask, logits, mx.array(-float("inf"), dtype=logits.dtype))

"""One set of sampling defaults and one token-budget rule, for the CLI and the server alike.

mlx-knife's defaults: temperature 0.7 for text (and images), 0.2 for omni audio, 0.0 for
Whisper; top_p 0.9; repetition penalty 1.1. A model's own ``generation_config.json`` wins over
them where it sets a value (its authors tuned it); what the request sets wins over both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mlxk.errors import ValidationError
from mlxk.types import Sampling

Purpose = Literal["text", "omni-audio", "whisper"]
TEMPERATURE: dict[Purpose, float] = {"text": 0.7, "omni-audio": 0.2, "whisper": 0.0}
TOP_P = 0.9
REPETITION_PENALTY = 1.1
VISION_MAX_TOKENS = 512  # per mlx-vlm call (image chunk or audio window) when none is asked
_MODEL_KEYS = ("temperature", "top_p", "repetition_penalty")


@dataclass(frozen=True)
class SamplingRequest:
    """What a request asked for; None means "the default"."""

    temperature: float | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None


def model_defaults(model_dir: Path) -> dict[str, float]:
    """The sampling values a model's generation_config.json sets (only sampled ones count:
    a config with ``do_sample: false`` asks for greedy decoding)."""
    try:
        raw: Any = json.loads((model_dir / "generation_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    found = {k: float(raw[k]) for k in _MODEL_KEYS if isinstance(raw.get(k), (int, float))}
    if raw.get("do_sample") is False:
        found["temperature"] = 0.0
    return found


def resolve_sampling(req: SamplingRequest, purpose: Purpose, model_dir: Path) -> Sampling:
    """Request → model's generation_config.json → mlx-knife's defaults, field by field.
    Whisper keeps its own ladder from the requested temperature and ignores the rest."""
    if purpose == "whisper":
        return Sampling(_in_range("temperature", req.temperature, 0.0, 1.0) or 0.0, 1.0, None)
    model = model_defaults(model_dir)

    def pick(name: str, asked: float | None, default: float) -> float:
        return asked if asked is not None else model.get(name, default)

    temperature = pick("temperature", req.temperature, TEMPERATURE[purpose])
    penalty = pick("repetition_penalty", req.repetition_penalty, REPETITION_PENALTY)
    return Sampling(
        temperature=_in_range("temperature", temperature, 0.0, 2.0) or 0.0,
        top_p=_in_range("top_p", pick("top_p", req.top_p, TOP_P), 0.0, 1.0) or 0.0,
        repetition_penalty=None if penalty == 1.0 else penalty,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        seed=req.seed,
    )


def _in_range(name: str, value: float | None, low: float, high: float) -> float | None:
    if value is not None and not low <= value <= high:
        raise refused(name, f"{name} must be within [{low:g}, {high:g}], got {value:g}")
    return value


def token_budget(prompt_tokens: int, context: int, requested: int | None, ceiling: int) -> int:
    """max_tokens for one request: what was asked, else all the room left (at most
    ``ceiling``); a prompt that fills the context or a request beyond it is refused."""
    room = context - prompt_tokens
    if room <= 0:
        raise refused(
            "messages",
            f"the prompt is {prompt_tokens} tokens; the model's context length is {context} tokens",
        )
    if requested is not None and requested <= 0:
        raise refused("max_tokens", f"max_tokens must be positive, got {requested}")
    if requested is not None and requested > room:
        raise refused(
            "max_tokens",
            f"prompt ({prompt_tokens} tokens) + max_tokens ({requested}) exceeds the model's"
            f" context length of {context} tokens",
        )
    return min(requested or room, room, ceiling)


def refused(param: str, message: str) -> ValidationError:
    return ValidationError(message, param=param)

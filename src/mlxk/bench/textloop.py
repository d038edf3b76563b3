"""Timed text generations: one through mlxk's TextRunner, one straight through
``mlx_lm.stream_generate`` (the anchor). Imports nothing of mlxk's backends, so the stock
anchor process (``python -m mlxk.bench.textloop``) runs mlx-lm exactly as a user gets it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Timed:
    """One generation: times are seconds from the call that starts it."""

    first_token_s: float
    done_s: float
    prompt_tokens: int
    gen_tokens: int
    text: str
    mlx_peak_bytes: int | None = None
    lib_prompt_tps: float | None = None  # mlx-lm's own figures, for the anchor
    lib_decode_tps: float | None = None
    cpu_s: float | None = None  # process CPU time, all threads: steadier on a shared machine

    @property
    def prefill_tps(self) -> float:
        # TTFT covers the prompt pass and sampling the first token: prompt / TTFT
        return self.prompt_tokens / self.first_token_s if self.first_token_s > 0 else 0.0

    @property
    def decode_tps(self) -> float:
        span = self.done_s - self.first_token_s
        return (self.gen_tokens - 1) / span if self.gen_tokens > 1 and span > 0 else 0.0


def _mx() -> Any:
    import mlx.core as mx

    return mx


def _reset_peak() -> None:
    _mx().reset_peak_memory()


def _peak() -> int:
    return int(_mx().get_peak_memory())


def time_mlxk(runner: Any, prompt: str, max_tokens: int) -> Timed:
    """Greedy, no repetition penalty, raw prompt: the fixed work of benchmarks.md."""
    _reset_peak()
    c0, t0 = time.process_time(), time.perf_counter()
    chunks: Iterator[Any] = runner.stream(  # greedy and no penalty: the stream's defaults
        prompt=prompt,
        use_chat_template=False,
        max_tokens=max_tokens,
    )
    first = None
    parts: list[str] = []
    count = prompt_tokens = 0
    for chunk in chunks:
        if first is None:
            first = time.perf_counter() - t0
        parts.append(chunk.text)
        count, prompt_tokens = chunk.token_count, chunk.prompt_tokens
    done = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return Timed(first or done, done, prompt_tokens, count, "".join(parts), _peak(), cpu_s=cpu)


def time_mlx_lm(model: Any, tokenizer: Any, ids: list[int], max_tokens: int) -> Timed:
    """The anchor: mlx-lm's own streaming loop, greedy, on the same prompt ids."""
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    mx = _mx()
    _reset_peak()
    c0, t0 = time.process_time(), time.perf_counter()
    first = None
    parts: list[str] = []
    last: Any = None
    sampler = make_sampler(temp=0.0)
    for resp in stream_generate(model, tokenizer, mx.array(ids), max_tokens=max_tokens,
                                sampler=sampler):  # fmt: skip
        if first is None:
            first = time.perf_counter() - t0
        parts.append(resp.text)
        last = resp
    done = time.perf_counter() - t0
    n = int(last.generation_tokens) if last is not None else 0
    return Timed(
        first or done, done, len(ids), n, "".join(parts), _peak(),
        float(last.prompt_tps) if last else None, float(last.generation_tps) if last else None,
        time.process_time() - c0,
    )  # fmt: skip


def ignore_eos(tokenizer: Any) -> set[int]:
    """Fixed output length: no token ends a generation; returns the ids to restore."""
    saved = set(tokenizer.eos_token_ids)
    tokenizer.eos_token_ids = set()
    return saved


# --- the stock anchor process -------------------------------------------------------------


def _stock_main(argv: list[str] | None = None) -> int:
    """``python -m mlxk.bench.textloop MODEL_DIR``: reads {"ids": [...], "max_tokens": N}
    lines, answers one JSON line per generation; the first line out reports the load."""
    ap = argparse.ArgumentParser(prog="mlxk.bench.textloop")
    ap.add_argument("model")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    from mlx.utils import tree_flatten
    from mlx_lm import load

    model, tokenizer = load(args.model)[:2]
    mx = _mx()
    mx.eval(model.parameters())
    ignore_eos(tokenizer)
    leaves: Any = tree_flatten(model.parameters())
    dtypes = {str(v.dtype).rsplit(".", 1)[-1] for _k, v in leaves}
    _reply({
        "ready": True, "load_s": time.perf_counter() - t0, "device": str(mx.default_device()),
        "compute_dtype": "+".join(sorted(dtypes - {"uint32"})),
    })  # fmt: skip
    for line in sys.stdin:
        req = json.loads(line)
        timed = time_mlx_lm(model, tokenizer, req["ids"], int(req["max_tokens"]))
        _reply(asdict(timed))
    return 0


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(_stock_main())

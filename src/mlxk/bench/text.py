"""text-decode: prefill and decode tok/s and TTFT through mlxk's text backend, next to
``mlx_lm.stream_generate`` on the very same loaded model (the layer's cost), and optionally
stock mlx-lm in a fresh process (mlx-lm as a user gets it: no BLAS preload, model dtype).

Fixed work (benchmarks.md): fixed prompt and output lengths with EOS ignored, greedy, no
repetition penalty, raw prompt (no chat template); warm-up discarded; interleaved, the order
rotated each repeat.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from mlxk.bench.records import RunContext, anchor_ref, make_record, median, ratio, summarize
from mlxk.bench.textloop import Timed, ignore_eos, time_mlx_lm, time_mlxk
from mlxk.bench.worker import Worker
from mlxk.config import Settings
from mlxk.errors import UsageError

SCENARIO = "text-decode"
ANCHOR = "mlx_lm.stream_generate (same model object)"
STOCK_ANCHOR = "mlx-lm stock (fresh process, no mlxk setup)"
# A neutral English passage, repeated until the prompt has the wanted number of tokens.
PASSAGE = (
    "The river runs past the old mill and under the stone bridge, where the town keeps its "
    "market on Saturdays. Farmers bring apples, cheese and bread, and the baker sells rolls "
    "until noon. In the afternoon the square is quiet again and the children play by the "
    "water while their parents talk about the weather, the harvest and the price of wool. "
)


@dataclass(frozen=True)
class TextBenchOptions:
    model: str | None = None
    random_llama: str | None = None  # "tiny" | "1b" | "8b"
    dtype: str = "bf16"
    prompt_tokens: int = 128
    max_tokens: int = 64
    repeats: int = 5
    warmup: int = 1
    bandwidth_gbs: float | None = None
    stock_anchor: bool = False


@dataclass
class Subject:
    runner: Any  # mlxk.backends.text.TextRunner
    model_info: dict[str, Any]
    load_s: float
    prompt: str
    path: Path | None


def _fixed_prompt(tokenizer: Any, n: int) -> str:
    text = PASSAGE
    while len(tokenizer.encode(text, add_special_tokens=False)) < n:
        text += PASSAGE
    ids = tokenizer.encode(text, add_special_tokens=False)[:n]
    return str(tokenizer.decode(ids))


def _load_real(settings: Settings, spec: str, opts: TextBenchOptions) -> Subject:
    from mlxk.backends.memory import weight_bytes
    from mlxk.ops.run import RunOptions, check_memory, platform_for, prepare
    from mlxk.types import Backend

    prep = prepare(settings, spec, RunOptions(prompt="x"))
    if prep.backend is not Backend.MLX_LM:
        raise UsageError(f"bench text needs a text model; '{prep.name}' runs on {prep.backend}")
    plat = platform_for(settings)
    check_memory(settings, prep, plat.device)
    import mlx.core as mx

    from mlxk.backends.text import load_text

    path = prep.record.model.path
    t0 = time.perf_counter()
    runner = load_text(path, float32_activations=plat.device == "cpu")
    mx.eval(runner.model.parameters())  # load_text casts lazily: count the cast as loading
    load_s = time.perf_counter() - t0
    info = prep.record.info
    model = {
        "name": prep.name, "path": str(path), "quantization": info.quantization,
        "dtype": runner.config.get("torch_dtype"), "weight_bytes": weight_bytes(path),
        "architecture": info.architecture,
    }  # fmt: skip
    return Subject(runner, model, load_s, _fixed_prompt(runner.tokenizer, opts.prompt_tokens), path)


def _load_random(settings: Settings, opts: TextBenchOptions) -> Subject:
    from mlxk.backends.platform import setup_platform

    plat = setup_platform(settings)
    import mlx.core as mx

    from mlxk.backends.text import TextRunner
    from mlxk.bench.randmodel import build_llama, random_prompt, word_tokenizer

    size = opts.random_llama or "tiny"
    t0 = time.perf_counter()
    model, config = build_llama(size, opts.dtype)
    if plat.device == "cpu":  # the text backend's CPU policy (load_text): float32 activations
        model.set_dtype(mx.float32)
        mx.eval(model.parameters())
    load_s = time.perf_counter() - t0
    tokenizer = word_tokenizer(config["vocab_size"])
    runner = TextRunner(model, tokenizer, config, config["max_position_embeddings"], frozenset())
    info = {
        "name": f"random-llama-{size}-{opts.dtype}", "path": None,
        "quantization": config.get("quantization"), "dtype": opts.dtype,
        "architecture": "LlamaForCausalLM",
    }  # fmt: skip
    prompt = random_prompt(opts.prompt_tokens, config["vocab_size"])
    return Subject(runner, info, load_s, prompt, None)


def _roofline(decode_tps: float | None, nbytes: int, gbs: float | None) -> dict[str, Any] | None:
    """Decode as % of the memory-bandwidth bound: each token reads every weight once."""
    if not gbs or not decode_tps or not nbytes:
        return None
    bound = gbs * 1e9 / nbytes
    return {
        "bandwidth_gbs": gbs, "bytes_per_token": nbytes, "bound_tok_s": round(bound, 2),
        "pct_of_bound": round(100.0 * decode_tps / bound, 2),
    }  # fmt: skip


def _stats(runs: list[Timed]) -> dict[str, dict[str, float | int]]:
    return {
        "first_token_s": summarize([r.first_token_s for r in runs]),
        "done_s": summarize([r.done_s for r in runs]),
        "prefill_tok_s": summarize([r.prefill_tps for r in runs]),
        "decode_tok_s": summarize([r.decode_tps for r in runs]),
        "cpu_s": summarize([r.cpu_s or 0.0 for r in runs]),
    }


def _figures(runs: list[Timed]) -> tuple[dict[str, Any], dict[str, Any]]:
    phases = {
        "first_token_s": median([r.first_token_s for r in runs]),
        "done_s": median([r.done_s for r in runs]),
    }
    throughput = {
        "prefill_tok_s": median([r.prefill_tps for r in runs]),
        "decode_tok_s": median([r.decode_tps for r in runs]),
    }
    return phases, throughput


@dataclass
class _Series:
    mlxk: list[Timed]
    anchor: list[Timed]
    stock: list[Timed]
    stock_load_s: float | None = None
    stock_dtype: str | None = None


def _stock_worker(subject: Subject) -> Worker | None:
    if subject.path is None:
        return None  # an in-memory random model has no files for another process to load
    return Worker("mlxk.bench.textloop", [str(subject.path)])


def _measure(subject: Subject, opts: TextBenchOptions) -> _Series:
    from mlxk.bench.textloop import Timed as T

    runner = subject.runner
    ids = runner.encode_prompt(prompt=subject.prompt, use_chat_template=False)
    saved = ignore_eos(runner.tokenizer)
    stock = _stock_worker(subject) if opts.stock_anchor else None
    ready = stock.ready if stock else {}
    series = _Series([], [], [], ready.get("load_s"), ready.get("compute_dtype"))
    mt = opts.max_tokens
    try:
        engines: list[tuple[list[Timed], Callable[[], Timed]]] = [
            (series.mlxk, lambda: time_mlxk(runner, subject.prompt, mt)),
            (series.anchor, lambda: time_mlx_lm(runner.model, runner.tokenizer, ids, mt)),
        ]
        if stock is not None:
            ask = stock.ask
            engines.append((series.stock, lambda: T(**ask({"ids": ids, "max_tokens": mt}))))
        for rep in range(opts.warmup + opts.repeats):
            # rotate the order (A B C, B C A, ...): no engine always runs right after another
            k = rep % len(engines)
            for runs, timed in engines[k:] + engines[:k]:
                result = timed()
                if rep >= opts.warmup:
                    runs.append(result)
    finally:
        runner.tokenizer.eos_token_ids = saved
        if stock is not None:
            stock.close()
    return series


def _peak_rss() -> int:
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # macOS: bytes; Linux: KiB


def _workload(opts: TextBenchOptions, runs: list[Timed]) -> dict[str, Any]:
    n_prompt = runs[0].prompt_tokens if runs else opts.prompt_tokens
    return {
        "label": f"prompt {n_prompt} / gen {opts.max_tokens}", "prompt_tokens": n_prompt,
        "max_tokens": opts.max_tokens, "repeats": opts.repeats, "warmup": opts.warmup,
        "temperature": 0.0, "repetition_penalty": 1.0, "ignore_eos": True,
        "chat_template": False, "interleaved": True,
    }  # fmt: skip


def _anchor_record(
    ctx: RunContext, subject: Subject, opts: TextBenchOptions, runs: list[Timed], engine: str,
    nbytes: int, load_s: float | None, dtype: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    phases, throughput = _figures(runs)
    roof = _roofline(throughput["decode_tok_s"], nbytes, opts.bandwidth_gbs)
    lib = {
        "mlx_lm_prompt_tps": median([r.lib_prompt_tps or 0.0 for r in runs]),
        "mlx_lm_generation_tps": median([r.lib_decode_tps or 0.0 for r in runs]),
    }
    return make_record(
        ctx, SCENARIO, engine, role="anchor",
        model=subject.model_info | ({"compute_dtype": dtype} if dtype else {}),
        workload=_workload(opts, runs), phases={"load_s": load_s, **phases},
        throughput=throughput, stats=_stats(runs),
        memory={"mlx_peak_bytes": max((r.mlx_peak_bytes or 0) for r in runs) or None},
        extra={"reported_by_mlx_lm": lib, **({"roofline": roof} if roof else {})},
    )  # fmt: skip


def run_text(settings: Settings, ctx: RunContext, opts: TextBenchOptions) -> list[dict[str, Any]]:
    """Records: mlxk (subject) and its anchors, for one model."""
    from mlxk.bench.randmodel import parameter_bytes

    if bool(opts.model) == bool(opts.random_llama):
        raise UsageError("bench text: give --model M or --random-llama SIZE (one of them)")
    t_start = time.time()
    subject = _load_real(settings, opts.model, opts) if opts.model else _load_random(settings, opts)
    t_loaded = time.time()
    ctx.refresh()
    nbytes = parameter_bytes(subject.runner.model)
    subject.model_info |= {"param_bytes": nbytes, "compute_dtype": _dtype_of(subject.runner)}
    series = _measure(subject, opts)
    records = [_anchor_record(ctx, subject, opts, series.anchor, ANCHOR, nbytes, None)]
    if series.stock:
        stock_bytes = subject.model_info.get("weight_bytes") or nbytes
        records.append(_anchor_record(ctx, subject, opts, series.stock, STOCK_ANCHOR,
                                      stock_bytes, series.stock_load_s,
                                      series.stock_dtype))  # fmt: skip
    records.insert(0, _subject_record(ctx, subject, opts, series, nbytes, records))
    records[0]["timeline"] = {"start": t_start, "load_done": t_loaded, "end": time.time()}
    return records


def _dtype_of(runner: Any) -> str:
    from mlx.utils import tree_flatten

    leaves = cast("list[tuple[str, Any]]", tree_flatten(runner.model.parameters()))
    floats = {str(v.dtype).rsplit(".", 1)[-1] for _k, v in leaves}
    return "+".join(sorted(floats - {"uint32"})) or "unknown"


def _subject_record(
    ctx: RunContext, subject: Subject, opts: TextBenchOptions, series: _Series, nbytes: int,
    anchors: list[dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    runs = series.mlxk
    phases, throughput = _figures(runs)
    decode = throughput["decode_tok_s"]
    refs = [anchor_ref(a["engine"], "decode_tok_s", decode, a["throughput"]["decode_tok_s"])
            for a in anchors]  # fmt: skip
    same = series.anchor[0].text == runs[0].text if runs and series.anchor else None
    roof = _roofline(decode, nbytes, opts.bandwidth_gbs)
    anchor0 = anchors[0]
    extra: dict[str, Any] = {
        "ttft_ratio": ratio(phases["first_token_s"], anchor0["phases"]["first_token_s"]),
        "prefill_ratio": ratio(throughput["prefill_tok_s"], anchor0["throughput"]["prefill_tok_s"]),
    }
    if roof:
        extra["roofline"] = roof
    return make_record(
        ctx, SCENARIO, "mlxk", model=subject.model_info, workload=_workload(opts, runs),
        phases={"load_s": round(subject.load_s, 4), **phases}, throughput=throughput,
        stats=_stats(runs),
        quality={"greedy_equal_to_anchor": same, "text_sample": runs[0].text[:160] if runs else ""},
        memory={"rss_peak_bytes": _peak_rss(), "param_bytes": nbytes,
                "mlx_peak_bytes": max((r.mlx_peak_bytes or 0) for r in runs) or None},
        anchor=refs[0], anchors=refs, extra=extra,
    )  # fmt: skip

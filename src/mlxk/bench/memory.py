"""memory: RSS and MLX memory around one model's life — before load, loaded, peak while
working, after unload — in a fresh process per engine, next to stock mlx-lm's own figures.

    python -m mlxk.bench.memory ENGINE MODEL_PATH [--clip WAV] [--tokens N]

prints one JSON line (the parent turns it into a record). ENGINE: ``mlxk-text``,
``mlxk-speech`` or ``mlx-lm`` (stock: no mlxk setup, model dtype; text only).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SCENARIO = "memory"
ENGINES = ("mlxk-text", "mlxk-speech", "mlx-lm")


def rss_now() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return int(psutil.Process().memory_info().rss)


def rss_peak() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _work_text(model: Any, tokenizer: Any, tokens: int) -> None:
    from mlx_lm import stream_generate
    from mlx_lm.sample_utils import make_sampler

    for _ in stream_generate(model, tokenizer, "Tell me about rivers.", max_tokens=tokens,
                             sampler=make_sampler(temp=0.0)):  # fmt: skip
        pass


def _load(engine: str, path: Path) -> tuple[Any, Any]:
    if engine == "mlx-lm":
        from mlx_lm import load

        model, tok = load(str(path))[:2]
        return model, tok
    from mlxk.backends.platform import setup_platform

    plat = setup_platform()
    if engine == "mlxk-speech":
        from mlxk.backends.speech import load_whisper

        return load_whisper(path, plat), None
    from mlxk.backends.text import load_text

    runner = load_text(path, float32_activations=plat.device == "cpu")
    return runner.model, runner.tokenizer


def measure(engine: str, path: Path, clip: Path | None, tokens: int) -> dict[str, Any]:
    base = rss_now()
    t0 = time.perf_counter()
    model, tok = _load(engine, path)
    import mlx.core as mx

    # text: (model, tokenizer); speech: (WhisperRunner, None)
    mx.eval(model.parameters() if tok is not None else model.model.parameters())
    load_s = time.perf_counter() - t0
    loaded, active = rss_now(), int(mx.get_active_memory())
    mx.reset_peak_memory()
    if tok is None:
        from mlxk.media.audio import load_audio

        if clip is None:
            raise SystemExit("mlxk-speech needs --clip")
        model.transcribe(load_audio(clip, target_rate=16000).samples)
    else:
        _work_text(model, tok, tokens)
    mlx_peak, peak = int(mx.get_peak_memory()), rss_peak()
    from mlxk.backends.platform import current_platform

    plat = current_platform()  # None for stock mlx-lm: no mlxk setup ran
    del model, tok
    gc.collect()
    mx.clear_cache()  # hand MLX's buffer cache back, as an unload should
    return {
        "rss_before_bytes": base, "rss_loaded_bytes": loaded, "rss_peak_bytes": peak,
        "rss_after_unload_bytes": rss_now(), "mlx_active_loaded_bytes": active,
        "mlx_peak_bytes": mlx_peak, "mlx_active_after_unload_bytes": int(mx.get_active_memory()),
        "load_s": round(load_s, 3), "blas": plat.blas if plat else None,
    }  # fmt: skip


def run_child(engine: str, path: Path, clip: Path | None, tokens: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "mlxk.bench.memory", engine, str(path), "--tokens", str(tokens)]
    if clip is not None:
        cmd += ["--clip", str(clip)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        from mlxk.bench.worker import WorkerError

        tail = " | ".join(res.stderr.strip().splitlines()[-4:])
        raise WorkerError(f"memory probe {engine} failed ({res.returncode}): {tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_memory(
    settings: Any, ctx: Any, spec: str, clip: Path | None, tokens: int = 32
) -> list[dict[str, Any]]:
    """Records: mlxk (subject) and, for text models, stock mlx-lm (anchor)."""
    from mlxk.backends.memory import weight_bytes
    from mlxk.bench.records import anchor_ref, make_record
    from mlxk.ops.catalog import build_record
    from mlxk.store.resolve import Resolver
    from mlxk.types import Backend

    rec = build_record(Resolver(settings).resolve(spec).model)
    speech = rec.info.audio_backend is Backend.MLX_AUDIO
    path, weights = rec.model.path, weight_bytes(rec.model.path)
    model = {"name": spec, "path": str(path), "quantization": rec.info.quantization,
             "weight_bytes": weights}  # fmt: skip
    work = {
        "label": clip.name if speech and clip else f"{tokens} tokens",
        "clip": clip.name if speech and clip else None,
        "tokens": None if speech else tokens,
    }
    ours = run_child("mlxk-speech" if speech else "mlxk-text", path, clip, tokens)
    theirs = None if speech else run_child("mlx-lm", path, None, tokens)
    ctx.refresh()
    ctx.machine["blas"] = ours.pop("blas")  # the child's setup, not this process's
    if theirs:
        theirs.pop("blas")
    out = [make_record(
        ctx, SCENARIO, "mlxk", model=model, workload=work, phases={"load_s": ours.pop("load_s")},
        memory=ours, extra={"rss_peak_over_weights": round(ours["rss_peak_bytes"] / weights, 3)},
        anchor=anchor_ref("mlx-lm stock", "mlx_peak_bytes", ours["mlx_peak_bytes"],
                          theirs["mlx_peak_bytes"]) if theirs else None,
    )]  # fmt: skip
    if theirs:
        out.append(make_record(
            ctx, SCENARIO, "mlx-lm stock", role="anchor", model=model, workload=work,
            phases={"load_s": theirs.pop("load_s")}, memory=theirs,
            extra={"rss_peak_over_weights": round(theirs["rss_peak_bytes"] / weights, 3)},
        ))  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mlxk.bench.memory")
    ap.add_argument("engine", choices=ENGINES)
    ap.add_argument("model", type=Path)
    ap.add_argument("--clip", type=Path)
    ap.add_argument("--tokens", type=int, default=32)
    args = ap.parse_args(argv)
    print(json.dumps(measure(args.engine, args.model, args.clip, args.tokens)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

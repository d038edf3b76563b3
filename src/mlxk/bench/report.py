"""Markdown summaries of bench records: one table per scenario, machine and versions on top."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlxk.bench.records import read_jsonl, write_jsonl

Rec = dict[str, Any]
Column = tuple[str, Callable[[Rec], Any]]
GB = 1024**3


def _get(rec: Rec, *path: str) -> Any:
    cur: Any = rec
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


def _num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _gb(v: Any) -> str:
    return "—" if v is None else f"{v / GB:.2f}"


def _range(rec: Rec, metric: str, digits: int = 3) -> str:
    s = _get(rec, "stats", metric)
    if not s or not s.get("n"):
        return "—"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def _ratio(rec: Rec) -> str:
    a = rec.get("anchor")
    return "—" if not a or a.get("ratio") is None else f"{a['ratio']:.2f}×"


def g(*path: str) -> Callable[[Rec], Any]:
    return lambda r: _get(r, *path)


def n(digits: int, *path: str) -> Callable[[Rec], Any]:
    return lambda r: _num(_get(r, *path), digits)


def gb(*path: str) -> Callable[[Rec], Any]:
    return lambda r: _gb(_get(r, *path))


def rng(metric: str, digits: int = 3) -> Callable[[Rec], Any]:
    return lambda r: _range(r, metric, digits)


def _all_ratios(rec: Rec) -> str:
    parts = [
        f"{a['ratio']:.2f}× {a['name']}"
        + (f" (CPU {a['cpu_ratio']:.2f}×)" if a.get("cpu_ratio") else "")
        for a in rec.get("anchors", [])
        if a.get("ratio")
    ]
    return " · ".join(parts) or "—"


MODEL: Column = ("model", g("model", "name"))
ENGINE: Column = ("engine", g("engine"))
CLIP: Column = ("clip", g("workload", "clip"))
COLUMNS: dict[str, list[Column]] = {
    "text-decode": [
        MODEL, ENGINE, ("compute dtype", g("model", "compute_dtype")),
        ("load s", n(2, "phases", "load_s")), ("TTFT s (min–max)", rng("first_token_s")),
        ("prefill tok/s", rng("prefill_tok_s", 1)),
        ("decode tok/s (min–max)", rng("decode_tok_s", 2)), ("decode: mlxk / anchor", _all_ratios),
        ("CPU s per run", rng("cpu_s", 2)),
        ("greedy text = anchor", n(0, "quality", "greedy_equal_to_anchor")),
        ("mlx peak GB", gb("memory", "mlx_peak_bytes")),
        ("% of bandwidth bound", n(1, "extra", "roofline", "pct_of_bound")),
    ],
    "stt-cpu": [
        MODEL, CLIP, ("audio s", n(2, "workload", "audio_s")), ENGINE,
        ("load s", n(2, "phases", "load_s")), ("time s (min–max)", rng("done_s")),
        ("CPU s", rng("cpu_s", 2)),
        ("RTF", n(3, "throughput", "rtf")), ("WER", n(3, "quality", "wer")),
        ("mlxk / anchor", _all_ratios), ("RSS peak GB", gb("memory", "rss_peak_bytes")),
    ],
    "stt-wer": [
        MODEL, CLIP, ENGINE, ("WER", n(3, "quality", "wer")),
        ("text", lambda r: (_get(r, "quality", "text") or "")[:90]),
    ],
    "server-overhead": [
        MODEL, ENGINE, ("TTFT s", n(3, "phases", "first_token_s")),
        ("in-process TTFT s", n(3, "extra", "in_process_ttft_s")),
        ("added TTFT ms", n(1, "extra", "added_ttft_ms")),
        ("stream tok/s", n(2, "throughput", "stream_tok_s")),
        ("in-process tok/s", n(2, "extra", "in_process_tok_s")), ("server / in-process", _ratio),
        ("same text", n(0, "quality", "text_equal_to_in_process")),
    ],
    "concurrency": [
        MODEL, ("clients", g("workload", "clients")), ENGINE,
        ("aggregate tok/s", n(2, "throughput", "aggregate_tok_s")),
        ("TTFT p50 s", n(3, "phases", "first_token_s")),
        ("TTFT p95 s", n(3, "stats", "ttft_s", "p95")),
        ("stream tok/s", n(2, "throughput", "stream_tok_s")),
        ("tokens", g("workload", "tokens_streamed")), ("aggregate vs mlx_lm.server", _ratio),
    ],
    "memory": [
        MODEL, ENGINE, ("weights GB", gb("model", "weight_bytes")),
        ("RSS before", gb("memory", "rss_before_bytes")),
        ("RSS loaded", gb("memory", "rss_loaded_bytes")),
        ("RSS peak", gb("memory", "rss_peak_bytes")),
        ("RSS after unload", gb("memory", "rss_after_unload_bytes")),
        ("mlx peak", gb("memory", "mlx_peak_bytes")),
        ("mlx active after unload", gb("memory", "mlx_active_after_unload_bytes")),
        ("peak RSS / weights", n(2, "extra", "rss_peak_over_weights")),
    ],
    "cold-start": [
        ("command", g("engine")), ("median s (min–max)", rng("done_s")),
        ("added ms over `python -c pass`", n(1, "extra", "added_ms_over_python")),
    ],
    "cache-scan": [
        ("method", g("engine")), ("cached models", g("workload", "models")),
        ("median s", n(4, "phases", "done_s")), ("time vs scan_cache_dir", _ratio),
    ],
}  # fmt: skip


def _cell(v: Any) -> str:
    return str("—" if v is None else v).replace("|", "\\|").replace("\n", " ")


def table(records: list[Rec], scenario: str) -> list[str]:
    cols = COLUMNS.get(scenario) or [("engine", lambda r: r["engine"])]
    lines = ["| " + " | ".join(h for h, _ in cols) + " |", "|" + "---|" * len(cols)]
    for rec in records:
        lines.append("| " + " | ".join(_cell(f(rec)) for _, f in cols) + " |")
    return lines


def header(records: list[Rec]) -> list[str]:
    first = records[0]
    m = first.get("machine") or {}
    gpu = ", ".join(g.get("name", "?") for g in m.get("gpu") or []) or "none"
    loads = [r["load_avg"][0] for r in records if r.get("load_avg")]
    load = f"{min(loads):.1f}–{max(loads):.1f}" if loads else "?"
    vers = ", ".join(f"{k} {v}" for k, v in (first.get("versions") or {}).items() if v)
    ram = f"{m['ram_bytes'] / GB:.0f} GB RAM" if m.get("ram_bytes") else "RAM ?"
    return [
        f"{first.get('date')} · run `{first.get('run_id')}` · {m.get('cpu')} · "
        f"{m.get('cores')} cores · {ram} · {m.get('os')} · GPU: {gpu} · MLX device "
        f"{m.get('device')} · BLAS {m.get('blas') or 'none'}",
        "",
        f"Versions: {vers}. 1-minute load average as the records were written: {load} "
        "(a shared machine: other jobs ran alongside).",
    ]


def markdown(records: list[Rec], title: str, notes: list[str] | None = None) -> str:
    if not records:
        return f"# {title}\n\nNo records.\n"
    lines = [f"# {title}", "", *header(records), ""]
    for scenario in dict.fromkeys(r["scenario"] for r in records):
        rows = [r for r in records if r["scenario"] == scenario]
        lines += [f"## {scenario}", "", *table(rows, scenario), ""]
    lines += [*(notes or [])]
    return "\n".join(lines).rstrip() + "\n"


def device_tag(records: list[Rec]) -> str:
    dev = (records[0].get("machine") or {}).get("device") if records else None
    return {"cuda": "gpu", "metal": "metal"}.get(str(dev), "cpu")


def write_results(records: list[Rec], results_dir: Path) -> list[Path]:
    """``<scenario>-<device>.jsonl`` + ``.md`` for each scenario in ``records`` (replaced)."""
    written = []
    tag = device_tag(records)
    for scenario in dict.fromkeys(r["scenario"] for r in records):
        rows = [r for r in records if r["scenario"] == scenario]
        name = scenario if scenario.endswith(f"-{tag}") else f"{scenario}-{tag}"  # stt-cpu
        base = results_dir / name
        write_jsonl(base.with_suffix(".jsonl"), rows)
        base.with_suffix(".md").write_text(markdown(rows, f"{scenario} ({tag})"), encoding="utf-8")
        written += [base.with_suffix(".jsonl"), base.with_suffix(".md")]
    return written


def summarize_file(path: Path) -> str:
    rows = read_jsonl(path)
    return markdown(rows, path.stem)

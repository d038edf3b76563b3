"""memplot: a memmon timeline as a picture — PNG (matplotlib, Agg) or a self-contained HTML
page with the same figure as inline SVG (no scripts, no CDN).

Panels: memory (process tree RSS, system used, swap, GPU memory), CPU (100 % = one core), GPU
utilisation when a GPU was sampled. Bench records that carry a ``timeline`` (epoch seconds of
start / load_done / end) become shaded spans with a line where loading ended.
"""

from __future__ import annotations

import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlxk.errors import BackendUnavailableError, UsageError

GB = 1024**3


@dataclass
class MemmonData:
    header: dict[str, Any]
    samples: list[dict[str, Any]]
    summary: dict[str, Any] | None


@dataclass(frozen=True)
class Span:
    label: str
    start: float  # seconds since the memmon start
    end: float
    marks: tuple[tuple[str, float], ...] = field(default_factory=tuple)


def read_memmon(path: Path) -> MemmonData:
    header: dict[str, Any] = {}
    samples: list[dict[str, Any]] = []
    summary = None
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{n}: not JSON ({exc.msg})") from exc
        kind = row.get("type")
        if kind == "header":
            header = row
        elif kind == "sample":
            samples.append(row)
        elif kind == "summary":
            summary = row
    if not samples:
        raise UsageError(f"{path}: no memmon samples in it")
    return MemmonData(header, samples, summary)


def bench_spans(records: list[dict[str, Any]], start_ts: float) -> list[Span]:
    """Spans of the bench records that ran inside the monitored window."""
    spans = []
    for rec in records:
        tl = rec.get("timeline") or {}
        if "start" not in tl or "end" not in tl:
            continue
        label = f"{rec.get('engine', '?')} · {rec.get('workload', {}).get('label', '')}".strip()
        marks = tuple(
            (k, float(v) - start_ts) for k, v in tl.items() if k not in ("start", "end") and v
        )
        spans.append(Span(label.rstrip(" ·"), tl["start"] - start_ts, tl["end"] - start_ts, marks))
    return spans


def _series(samples: list[dict[str, Any]], key: str, scale: float = 1.0) -> list[float | None]:
    return [None if s.get(key) is None else s[key] / scale for s in samples]


def _gpu_series(samples: list[dict[str, Any]], key: str, scale: float) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for i, s in enumerate(samples):
        for g in s.get("gpus") or []:
            col = out.setdefault(g["index"], [None] * len(samples))
            v = g.get(key)
            col[i] = None if v is None else v / scale
    return out


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise BackendUnavailableError("memplot needs matplotlib: pip install matplotlib") from exc
    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def _title(data: MemmonData) -> str:
    cmd = " ".join(" ".join(data.header.get("cmd") or []).split())  # one line, even for -c code
    if len(cmd) > 110:
        cmd = cmd[:107] + "…"
    s = data.summary or {}
    bits = [f"exit {s.get('exit_code')}", f"{s.get('duration_s', 0):.1f} s"]
    if s.get("peak_rss_bytes"):
        bits.append(f"peak RSS {s['peak_rss_bytes'] / GB:.2f} GB")
    if s.get("peak_gpu_mem_bytes"):
        bits.append(f"peak GPU mem {s['peak_gpu_mem_bytes'] / GB:.2f} GB")
    return f"{cmd}\n{' · '.join(bits)}"


def _legend(ax: Any) -> None:
    # beside the plot, never over the curves or the span labels
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def _memory_panel(ax: Any, t: list[float], data: MemmonData) -> None:
    sm = data.samples
    ax.plot(t, _series(sm, "rss_bytes", GB), label="process tree RSS", color="C0", lw=2)
    ax.plot(t, _series(sm, "sys_used_bytes", GB), label="system used", color="C7", ls="--")
    swap = _series(sm, "swap_used_bytes", GB)
    if any(v for v in swap if v):
        ax.plot(t, swap, label="swap used", color="C3", ls=":")
    for idx, col in _gpu_series(sm, "mem_used_bytes", GB).items():
        ax.plot(t, col, label=f"GPU{idx} memory used", color="C2", lw=1.5)
    for idx, col in _gpu_series(sm, "proc_mem_bytes", GB).items():
        if any(v for v in col if v):
            ax.plot(t, col, label=f"GPU{idx} memory (tree)", color="C2", ls="--")
    ax.set_ylabel("memory (GB)")
    ax.set_ylim(bottom=0)
    _legend(ax)


def _cpu_panel(ax: Any, t: list[float], data: MemmonData) -> None:
    cores = (data.header.get("machine") or {}).get("cores") or 1
    ax.plot(t, _series(data.samples, "cpu_pct"), label="process tree", color="C1", lw=1.5)
    sys_cpu = [None if v is None else v * cores for v in _series(data.samples, "sys_cpu_pct")]
    ax.plot(t, sys_cpu, label=f"whole machine ({cores} cores)", color="C7", ls="--", lw=1)
    ax.set_ylabel("CPU % (100 = 1 core)")
    ax.set_ylim(0, max(100.0 * cores, 1.0) * 1.05)
    _legend(ax)


def _gpu_util_panel(ax: Any, t: list[float], data: MemmonData) -> None:
    for idx, col in _gpu_series(data.samples, "util_pct", 1.0).items():
        ax.plot(t, col, label=f"GPU{idx} utilisation", color="C4")
    ax.set_ylabel("GPU util %")
    ax.set_ylim(0, 105)
    _legend(ax)


def _draw_spans(axes: list[Any], spans: list[Span]) -> None:
    for n, span in enumerate(spans):
        for ax in axes:
            ax.axvspan(span.start, span.end, color=f"C{n % 10}", alpha=0.08)
            for _name, at in span.marks:
                ax.axvline(at, color=f"C{n % 10}", lw=0.8, ls="-.")
        top = axes[0]
        mark = " (-·- loaded)" if span.marks else ""
        top.text(span.start, 1.01 + 0.07 * (n % 2), f"{span.label}{mark}", fontsize=7,
                 transform=top.get_xaxis_transform(), va="bottom", color=f"C{n % 10}")  # fmt: skip


def figure(data: MemmonData, spans: list[Span]) -> Any:
    plt = _pyplot()
    has_gpu = any(s.get("gpus") for s in data.samples)
    rows = 3 if has_gpu else 2
    fig, axes = plt.subplots(rows, 1, figsize=(12, 2.8 * rows + 1.0), sharex=True)
    t = [float(s["t"]) for s in data.samples]
    _memory_panel(axes[0], t, data)
    _cpu_panel(axes[1], t, data)
    if has_gpu:
        _gpu_util_panel(axes[2], t, data)
    _draw_spans(list(axes), spans)
    for ax in axes:
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("time since start (s)")
    fig.suptitle(_title(data), fontsize=9, family="monospace")
    fig.tight_layout()
    return fig


def _summary_rows(data: MemmonData) -> list[tuple[str, str]]:
    rows = []
    for k, v in (data.summary or {}).items():
        if k in ("type", "cmd") or v is None:
            continue
        shown = f"{v / GB:.3f} GB" if k.endswith("_bytes") and isinstance(v, int) else str(v)
        rows.append((k, shown))
    return rows


def html_page(data: MemmonData, svg: str) -> str:
    cmd = html.escape(" ".join(data.header.get("cmd") or []))
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
        for k, v in _summary_rows(data)
    )
    start = html.escape(str(data.header.get("start", "")))
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>memplot</title>"
        "<style>body{font-family:sans-serif;margin:1.5em}td{padding:2px 10px}"
        "code{background:#f4f4f4}</style></head><body>"
        f"<h1>memmon timeline</h1><p><code>{cmd}</code><br>started {start}</p>"
        f"{svg}<h2>summary</h2><table>{rows}</table></body></html>\n"
    )


def render(memmon: Path, out: Path, bench: list[Path] | None = None) -> Path:
    """Write ``out`` (.png or .html) from a memmon file and optional bench records."""
    from mlxk.bench.records import read_jsonl

    suffix = out.suffix.lower()
    if suffix not in (".png", ".html", ".htm"):
        raise UsageError(f"memplot writes .png or .html, not '{out.suffix or out.name}'")
    data = read_memmon(memmon)
    records = [r for b in bench or [] for r in read_jsonl(b)]
    spans = bench_spans(records, float(data.header.get("start_ts", 0.0)))
    fig = figure(data, spans)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        fig.savefig(out, dpi=110)
    else:
        buf = io.StringIO()
        fig.savefig(buf, format="svg")
        svg = buf.getvalue()
        svg = svg[svg.find("<svg") :]  # inline: drop the XML prolog and doctype
        out.write_text(html_page(data, svg), encoding="utf-8")
    _pyplot().close(fig)
    return out

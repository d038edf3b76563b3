"""Bench records: one JSON object per line, schema ``mlxk.bench-record.v1``
(benchmarks/schema/bench-record.v1.json describes every field).

A record is one engine on one workload: medians of its repeats in ``phases``/``throughput``,
the spread in ``stats``, and — on the record of the tool under test — the anchor's name and
the ratio ours / anchor of the headline metric.
"""

from __future__ import annotations

import json
import statistics
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlxk.bench import SCHEMA_ID
from mlxk.bench.machine import load_average, machine_facts, versions


def summarize(values: Sequence[float]) -> dict[str, float | int]:
    """Median and min–max of the repeats (benchmarks.md: report median and range)."""
    vals = [float(v) for v in values]
    if not vals:
        return {"median": 0.0, "min": 0.0, "max": 0.0, "n": 0}
    return {
        "median": round(statistics.median(vals), 6),
        "min": round(min(vals), 6),
        "max": round(max(vals), 6),
        "n": len(vals),
    }


def median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 6) if values else None


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RunContext:
    """What every record of one ``mlxk bench`` invocation shares (taken once per run)."""

    run_id: str = field(default_factory=new_run_id)
    machine: dict[str, Any] = field(default_factory=dict)
    # the commit measured, read when the run starts (the tree may change while it runs)
    git: dict[str, Any] | None = field(default_factory=lambda: git_facts())
    extra_versions: tuple[str, ...] = ()

    def refresh(self) -> None:
        # after setup_platform, so the record names the BLAS and device actually used
        self.machine = machine_facts()


def git_facts() -> dict[str, Any] | None:
    """HEAD of the checkout the bench runs from, and whether files differ from it."""
    import subprocess

    root = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None  # an installed wheel, not a checkout
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def make_record(
    ctx: RunContext,
    scenario: str,
    engine: str,
    *,
    role: str = "subject",
    model: dict[str, Any] | None = None,
    workload: dict[str, Any] | None = None,
    phases: dict[str, float | None] | None = None,
    throughput: dict[str, float | None] | None = None,
    stats: dict[str, dict[str, Any]] | None = None,
    quality: dict[str, Any] | None = None,
    memory: dict[str, int | float | None] | None = None,
    anchor: dict[str, Any] | None = None,
    anchors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One record; empty sections are left out rather than written as nulls."""
    if not ctx.machine:
        ctx.refresh()
    rec: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "run_id": ctx.run_id,
        "date": now_iso(),
        "scenario": scenario,
        "engine": engine,
        "role": role,
        "machine": ctx.machine,
        "versions": versions(ctx.extra_versions),
        "load_avg": load_average(),
        "git_commit": (ctx.git or {}).get("commit"),
        "git_dirty": (ctx.git or {}).get("dirty"),
    }
    sections = {
        "model": model, "workload": workload, "phases": phases, "throughput": throughput,
        "stats": stats, "quality": quality, "memory": memory, "anchor": anchor, "anchors": anchors,
        "extra": extra,
    }  # fmt: skip
    rec.update({k: v for k, v in sections.items() if v})
    return rec


def ratio(ours: float | None, anchor: float | None) -> float | None:
    if ours is None or anchor is None or anchor == 0:
        return None
    return round(ours / anchor, 4)


def anchor_ref(name: str, metric: str, ours: float | None, theirs: float | None) -> dict[str, Any]:
    """``ratio`` is ours / anchor of ``metric`` (>1 is better for rates, worse for times)."""
    return {"name": name, "metric": metric, "value": theirs, "ratio": ratio(ours, theirs)}


def write_jsonl(path: Path, records: Iterable[dict[str, Any]], *, append: bool = False) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("a" if append else "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def schema_path() -> Path | None:
    """The JSON schema file in a source checkout (not shipped inside the wheel)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "benchmarks" / "schema" / "bench-record.v1.json"
        if candidate.is_file():
            return candidate
    return None

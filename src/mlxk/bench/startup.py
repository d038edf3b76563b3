"""cold-start: wall time of ``mlxk --help`` and ``mlxk list`` in fresh processes, next to
``python -c pass`` and ``python -c "import mlx_lm"`` (interleaved, ≥20 repeats).

cache-scan lives in benchmarks/cli_startup.py (it builds a 500-model synthetic cache with the
test helpers); ``cache_scan_records`` turns its JSONL into records of this schema.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mlxk.bench.records import (
    RunContext,
    anchor_ref,
    make_record,
    median,
    now_iso,
    read_jsonl,
    summarize,
)

SCENARIO = "cold-start"
CACHE_SCENARIO = "cache-scan"


def commands() -> dict[str, list[str]]:
    py = sys.executable
    mlxk = [py, "-m", "mlxk"]
    return {
        "mlxk --help": [*mlxk, "--help"],
        "mlxk list": [*mlxk, "list"],
        "python -c pass": [py, "-c", "pass"],
        "python -c 'import mlx_lm'": [py, "-c", "import mlx_lm"],
    }


def _wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def run_cold_start(ctx: RunContext, repeats: int = 20, warmup: int = 1) -> list[dict[str, Any]]:
    """One record per command; the mlxk ones name ``python -c pass`` as their anchor."""
    cmds = commands()
    walls: dict[str, list[float]] = {k: [] for k in cmds}
    for rep in range(warmup + repeats):  # first round warms the page cache and .pyc files
        for name, cmd in cmds.items():
            t = _wall(cmd)
            if rep >= warmup:
                walls[name].append(t)
    ctx.refresh()
    base = median(walls["python -c pass"])
    out = []
    for name, times in walls.items():
        ours = name.startswith("mlxk")
        out.append(make_record(
            ctx, SCENARIO, name, role="subject" if ours else "anchor",
            workload={"label": name, "repeats": repeats, "warmup": warmup,
                      "command": " ".join(cmds[name][1:])},
            phases={"done_s": median(times)}, stats={"done_s": summarize(times)},
            anchor=anchor_ref("python -c pass", "done_s", median(times), base) if ours else None,
            extra={"added_ms_over_python": round((median(times) or 0) * 1000 - (base or 0) * 1000,
                                                 1)} if ours else None,
        ))  # fmt: skip
    return out


def cache_scan_records(ctx: RunContext, src: Path) -> list[dict[str, Any]]:
    """benchmarks/cli_startup.py's cache-scan rows (schema mlxk.bench/1) in this schema."""
    rows = [r for r in read_jsonl(src) if r.get("scenario") == CACHE_SCENARIO]
    anchor = next((r["wall_s"] for r in rows if r.get("method") == "scan_cache_dir"), None)
    ctx.refresh()
    out = []
    for r in rows:
        method = r.get("method", "?")
        rec = make_record(
            ctx, CACHE_SCENARIO, method, role="anchor" if method == "scan_cache_dir" else "subject",
            workload={"label": f"{r.get('models')} cached models", "models": r.get("models")},
            phases={"done_s": r.get("wall_s")},
            anchor=anchor_ref("huggingface_hub.scan_cache_dir", "done_s", r.get("wall_s"), anchor)
            if method != "scan_cache_dir" else None,
            extra={"source": str(src), "converted": now_iso()},
        )  # fmt: skip
        # the measurement's own date and load, not the conversion's
        rec["date"] = r.get("date", rec["date"])
        rec["load_avg"] = [round(r["load_avg_1m"], 2)] if "load_avg_1m" in r else []
        out.append(rec)
    return out

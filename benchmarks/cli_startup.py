"""Wall time of `mlxk --help` and `mlxk list` over a 500-model cache, and the cache scan:
huggingface_hub.scan_cache_dir against mlxk's direct scan (why `list` does not use the former).

Writes benchmarks/results/cli_startup.jsonl (one record per measurement) and .md.
Run: .venv/bin/python benchmarks/cli_startup.py [--models 500] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"


def _median_wall(cmd: list[str], env: dict[str, str], repeat: int) -> float:
    times = []
    for _ in range(repeat + 1):  # first run warms the page cache and .pyc files
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def _scan_times(hf_home: Path, repeat: int) -> dict[str, float]:
    from huggingface_hub import scan_cache_dir

    from mlxk.config import Settings
    from mlxk.ops.catalog import list_models
    from mlxk.store.hf_cache import iter_repos

    settings = Settings.from_env({"HF_HOME": str(hf_home)})

    def timed(fn: object) -> float:
        runs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()  # type: ignore[operator]
            runs.append(time.perf_counter() - t0)
        return statistics.median(runs)

    return {
        "scan_cache_dir": timed(lambda: scan_cache_dir(hf_home / "hub")),
        "direct_scan_current_snapshots": timed(
            lambda: [r.current_commit() for r in iter_repos(hf_home / "hub")]
        ),
        "list_models_full_probe": timed(lambda: list_models(settings)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    from tests.helpers.hfcache import build_many

    with tempfile.TemporaryDirectory() as tmp:
        hf_home = Path(tmp)
        build_many(hf_home / "hub", args.models)
        env = {"HF_HOME": str(hf_home), "PATH": os.environ.get("PATH", "")}
        mlxk = [sys.executable, "-m", "mlxk"]
        walls = {
            "mlxk --help": _median_wall([*mlxk, "--help"], env, args.repeat),
            "mlxk list": _median_wall([*mlxk, "list"], env, args.repeat),
            "mlxk list --json": _median_wall([*mlxk, "list", "--json"], env, args.repeat),
            "python -c pass": _median_wall([sys.executable, "-c", "pass"], env, args.repeat),
        }
        scans = _scan_times(hf_home, args.repeat)
    _write(args.models, walls, scans)


def _write(n: int, walls: dict[str, float], scans: dict[str, float]) -> None:
    meta = {
        "schema": "mlxk.bench/1",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}",
        "load_avg_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "versions": {p: metadata.version(p) for p in ("mlxk", "huggingface-hub")},
        "models": n,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    records = [meta | {"scenario": "cold-start", "command": k, "wall_s": round(v, 4)} for k, v in walls.items()]
    anchor = scans["scan_cache_dir"]
    records += [
        meta | {"scenario": "cache-scan", "method": k, "wall_s": round(v, 4),
                "anchor": "scan_cache_dir", "ratio_vs_anchor": round(anchor / v, 2) if v else None}
        for k, v in scans.items()
    ]  # fmt: skip
    with (RESULTS / "cli_startup.jsonl").open("w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    lines = [
        "# CLI startup and cache scan", "",
        f"{meta['date']} · {meta['machine']} · Python {meta['python']} · {n} cached models · "
        f"1-min load average during the run {meta['load_avg_1m']:.1f}", "",
        "| command | median wall (s) |", "|---|---|",
        *[f"| `{k}` | {v:.3f} |" for k, v in walls.items()], "",
        "| cache scan (in-process) | median (s) | speed vs scan_cache_dir |", "|---|---|---|",
        *[f"| {k} | {v:.4f} | {anchor / v:.1f}× |" for k, v in scans.items()], "",
        "`direct_scan_current_snapshots` is what `list` needs from the cache layout; "
        "`list_models_full_probe` adds the probe, health and runtime checks of every model.",
    ]  # fmt: skip
    (RESULTS / "cli_startup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

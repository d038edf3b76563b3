"""Facts about the machine and the software a benchmark ran on (never imports mlx)."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import shutil
import subprocess
import sys
from typing import Any

from mlxk.backends.memory import total_ram_bytes

# Versions every record carries (benchmarks.md: mlx, mlx-lm, mlx-vlm, mlx-audio + anchors).
CORE_PACKAGES = ("mlx", "mlx-lm", "mlx-audio", "mlx-vlm", "mlxk", "numpy")


def package_version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    names = dict.fromkeys((*CORE_PACKAGES, *extra))
    return {name: package_version(name) for name in names}


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (others share this machine: record, don't hide)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def cpu_model() -> str:
    if sys.platform == "darwin":
        return _run(["sysctl", "-n", "machdep.cpu.brand_string"]) or platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("model name", "Model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _run(cmd: list[str], timeout: float = 10.0) -> str | None:
    if not shutil.which(cmd[0]):
        return None
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None


def nvidia_gpus() -> list[dict[str, Any]]:
    """Name, memory and driver of each NVIDIA GPU, from nvidia-smi (empty list when none)."""
    query = "name,memory.total,driver_version"
    out = _run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"])
    gpus: list[dict[str, Any]] = []
    for line in (out or "").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            mem = int(parts[1]) * 1024 * 1024 if parts[1].isdigit() else None
            gpus.append({"name": parts[0], "memory_bytes": mem, "driver": parts[2]})
    return gpus


def machine_facts() -> dict[str, Any]:
    """CPU, cores, RAM, OS, GPU(s) and the MLX device/BLAS mlxk chose (when set up)."""
    from mlxk.backends.platform import current_platform, detect_device

    info = current_platform()
    gpus = nvidia_gpus()
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "ram_bytes": total_ram_bytes(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "gpu": gpus or None,
        "device": info.device if info else detect_device(),
        "blas": info.blas if info else None,
    }

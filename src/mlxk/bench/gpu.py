"""GPU memory and utilisation for memmon: NVML (nvidia-ml-py) when it loads, else a streaming
``nvidia-smi -lms`` reader, else nothing (CPU-only machines, Apple Silicon's unified memory is
system memory and shows there)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from typing import Any, Protocol

_SMI_QUERY = "index,memory.used,memory.total,utilization.gpu"
MIB = 1024 * 1024


class GpuProbe(Protocol):
    source: str

    def sample(self, pids: set[int]) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class NvmlProbe:
    """Device memory, utilisation and the memory held by the sampled process tree."""

    source = "nvml"

    def __init__(self) -> None:
        import pynvml

        pynvml.nvmlInit()  # raises NVMLError when the driver library is absent
        self._nv = pynvml
        self._handles = [
            pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())
        ]

    def _tree_memory(self, handle: Any, pids: set[int]) -> int | None:
        try:
            procs = self._nv.nvmlDeviceGetComputeRunningProcesses(handle)
        except self._nv.NVMLError:
            return None
        used = [p.usedGpuMemory for p in procs if p.pid in pids and p.usedGpuMemory]
        # inside a container NVML reports host pids: no match means "unknown", not zero
        return sum(used) if used else None

    def sample(self, pids: set[int]) -> list[dict[str, Any]]:
        out = []
        for i, h in enumerate(self._handles):
            mem = self._nv.nvmlDeviceGetMemoryInfo(h)
            try:
                util: int | None = int(self._nv.nvmlDeviceGetUtilizationRates(h).gpu)
            except self._nv.NVMLError:
                util = None
            out.append({
                "index": i, "mem_used_bytes": int(mem.used), "mem_total_bytes": int(mem.total),
                "util_pct": util, "proc_mem_bytes": self._tree_memory(h, pids),
            })  # fmt: skip
        return out

    def close(self) -> None:
        self._nv.nvmlShutdown()


class SmiProbe:
    """``nvidia-smi -lms`` keeps printing; a thread keeps the latest line of each GPU, so a
    sample costs nothing (one nvidia-smi call per sample takes ~100 ms itself)."""

    source = "nvidia-smi"

    def __init__(self, smi: str, interval_s: float) -> None:
        ms = max(50, int(interval_s * 1000))
        cmd = [smi, f"--query-gpu={_SMI_QUERY}", "--format=csv,noheader,nounits", f"-lms={ms}"]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self._latest: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            row = parse_smi_line(line)
            if row is not None:
                with self._lock:
                    self._latest[row["index"]] = row

    def sample(self, pids: set[int]) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(v) for _k, v in sorted(self._latest.items())]

    def close(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()


def parse_smi_line(line: str) -> dict[str, Any] | None:
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != 4:
        return None
    try:
        index, used, total = int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None
    util = int(parts[3]) if parts[3].isdigit() else None
    return {
        "index": index, "mem_used_bytes": used * MIB, "mem_total_bytes": total * MIB,
        "util_pct": util, "proc_mem_bytes": None,
    }  # fmt: skip


def open_probe(interval_s: float) -> GpuProbe | None:
    """The best GPU source available here, or None."""
    try:
        import pynvml
    except ImportError:
        pynvml = None
    if pynvml is not None:
        try:
            return NvmlProbe()
        except pynvml.NVMLError:  # no driver library or no device: try nvidia-smi
            pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            return SmiProbe(smi, interval_s)
        except OSError:
            return None
    return None

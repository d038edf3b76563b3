"""memmon: run a command and sample memory, swap, CPU and GPU of it and of the machine.

Output (JSONL, schema ``mlxk.memmon.v1``): a ``header`` line, one ``sample`` line per tick, a
``summary`` line at the end (peaks, duration, exit code). Lines are flushed as written, so a
crash of the monitored program still leaves a readable file.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from mlxk.bench import MEMMON_SCHEMA_ID
from mlxk.bench.gpu import GpuProbe, open_probe
from mlxk.bench.machine import machine_facts
from mlxk.bench.records import now_iso
from mlxk.errors import BackendUnavailableError, UsageError

MIN_INTERVAL_S = 0.01
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$")


def parse_interval(text: str) -> float:
    """'200ms', '0.5s' or a bare number of milliseconds → seconds."""
    m = _INTERVAL.match(text)
    if not m:
        raise UsageError(f"bad interval '{text}': use e.g. 200ms or 0.5s")
    value = float(m.group(1)) / (1.0 if m.group(2) == "s" else 1000.0)
    if value < MIN_INTERVAL_S:
        raise UsageError(f"interval {text} is below {MIN_INTERVAL_S * 1000:.0f} ms")
    return value


def _psutil() -> Any:
    try:
        import psutil
    except ImportError as exc:
        raise BackendUnavailableError("memmon needs psutil: pip install psutil") from exc
    return psutil


@dataclass
class TreeSampler:
    """RSS and CPU of a process and all its descendants.

    CPU % comes from deltas of cumulative CPU time: user+system of live processes plus their
    reaped children's (``children_*``), so time of a child that exited is not lost.
    """

    root_pid: int
    psutil: Any = field(default_factory=_psutil)
    _last_cpu: float | None = None
    _last_t: float | None = None

    def _tree(self) -> list[Any]:
        try:
            root = self.psutil.Process(self.root_pid)
            return [root, *root.children(recursive=True)]
        except self.psutil.Error:
            return []

    def sample(self) -> dict[str, Any]:
        rss, cpu_s, pids = 0, 0.0, set()
        for p in self._tree():
            try:
                with p.oneshot():
                    rss += p.memory_info().rss
                    t = p.cpu_times()
                    cpu_s += t.user + t.system + t.children_user + t.children_system
                    pids.add(p.pid)
            except self.psutil.Error:  # exited between listing and reading
                continue
        now = time.monotonic()
        pct = None
        if self._last_cpu is not None and self._last_t is not None and now > self._last_t:
            pct = max(0.0, (cpu_s - self._last_cpu) / (now - self._last_t) * 100.0)
        if pids:
            self._last_cpu, self._last_t = cpu_s, now
        return {"rss_bytes": rss, "procs": len(pids), "cpu_pct": _r(pct), "_pids": pids}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def system_sample(psutil: Any) -> dict[str, Any]:
    vm = psutil.virtual_memory()
    return {
        "sys_used_bytes": int(vm.total - vm.available),  # what the OS cannot give away now
        "sys_total_bytes": int(vm.total),
        "swap_used_bytes": int(psutil.swap_memory().used),
        "sys_cpu_pct": _r(psutil.cpu_percent(interval=None)),
    }


@dataclass
class Peaks:
    rss: int = 0
    sys_used: int = 0
    swap_used: int = 0
    cpu: float = 0.0
    gpu_mem: int = 0
    gpu_proc_mem: int = 0
    gpu_util: float = 0.0
    cpu_sum: float = 0.0
    cpu_n: int = 0
    samples: int = 0

    def add(self, s: dict[str, Any]) -> None:
        self.samples += 1
        self.rss = max(self.rss, s["rss_bytes"])
        self.sys_used = max(self.sys_used, s["sys_used_bytes"])
        self.swap_used = max(self.swap_used, s["swap_used_bytes"])
        if s["cpu_pct"] is not None:
            self.cpu = max(self.cpu, s["cpu_pct"])
            self.cpu_sum += s["cpu_pct"]
            self.cpu_n += 1
        for g in s.get("gpus") or []:
            self.gpu_mem = max(self.gpu_mem, g.get("mem_used_bytes") or 0)
            self.gpu_proc_mem = max(self.gpu_proc_mem, g.get("proc_mem_bytes") or 0)
            self.gpu_util = max(self.gpu_util, g.get("util_pct") or 0)


@dataclass(frozen=True)
class MemmonResult:
    exit_code: int
    summary: dict[str, Any]


class _Forwarder:
    """Passes SIGINT/SIGTERM on to the child while it runs.

    With a terminal, the child stays in the foreground process group (interactive programs
    keep working) and the terminal's Ctrl-C already reaches it, so SIGINT is not sent twice.
    """

    def __init__(self, child: subprocess.Popen[bytes], own_group: bool) -> None:
        self.child = child
        self.own_group = own_group
        self.old: dict[int, Any] = {}

    def __enter__(self) -> _Forwarder:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and not self.own_group:
            return  # the terminal delivered it to the child's group already
        if self.child.poll() is None:
            self.child.send_signal(signum)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.old.items():
            signal.signal(sig, handler)


def exit_code_of(returncode: int) -> int:
    """Shell convention: a child killed by signal N exits memmon with 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _write(fh: IO[str], obj: dict[str, Any]) -> None:
    fh.write(json.dumps(obj) + "\n")
    fh.flush()


def _sample(tree: TreeSampler, gpu: GpuProbe | None, t0: float) -> dict[str, Any]:
    s: dict[str, Any] = {"type": "sample", "t": round(time.monotonic() - t0, 4)}
    s["ts"] = round(time.time(), 4)
    s |= tree.sample()
    s |= system_sample(tree.psutil)
    pids = s.pop("_pids")
    if gpu is not None:
        s["gpus"] = gpu.sample(pids)
    return s


def _summary(cmd: list[str], rc: int, peaks: Peaks, duration: float, base: int) -> dict[str, Any]:
    return {
        "type": "summary", "cmd": cmd, "exit_code": exit_code_of(rc),
        "signal": -rc if rc < 0 else None, "duration_s": round(duration, 3),
        "samples": peaks.samples, "peak_rss_bytes": peaks.rss,
        "peak_sys_used_bytes": peaks.sys_used, "baseline_sys_used_bytes": base,
        "peak_swap_used_bytes": peaks.swap_used, "peak_cpu_pct": _r(peaks.cpu),
        "mean_cpu_pct": _r(peaks.cpu_sum / peaks.cpu_n) if peaks.cpu_n else None,
        "peak_gpu_mem_bytes": peaks.gpu_mem or None,
        "peak_gpu_proc_mem_bytes": peaks.gpu_proc_mem or None,
        "peak_gpu_util_pct": peaks.gpu_util or None,
    }  # fmt: skip


def _spawn(cmd: list[str]) -> tuple[subprocess.Popen[bytes], bool]:
    own_group = not sys.stdin.isatty()
    try:
        # without a terminal, a session of its own: memmon alone gets the signals and forwards
        child = subprocess.Popen(cmd, start_new_session=own_group)
    except FileNotFoundError as exc:
        raise UsageError(f"memmon: command not found: {cmd[0]}") from exc
    except PermissionError as exc:
        raise UsageError(f"memmon: cannot execute {cmd[0]}: {exc.strerror}") from exc
    return child, own_group


def run_monitored(cmd: list[str], out: Path, interval_s: float) -> MemmonResult:
    """Start ``cmd``, sample until it exits, write the JSONL; return its exit code + summary."""
    if not cmd:
        raise UsageError("memmon: give a command after '--'")
    psutil = _psutil()
    psutil.cpu_percent(interval=None)  # primes the system-wide CPU counter
    out.parent.mkdir(parents=True, exist_ok=True)
    gpu = open_probe(interval_s)
    peaks = Peaks()
    with out.open("w", encoding="utf-8") as fh:
        header = {
            "type": "header", "schema": MEMMON_SCHEMA_ID, "cmd": cmd, "start": now_iso(),
            "start_ts": round(time.time(), 4), "interval_s": interval_s,
            "gpu_source": gpu.source if gpu else None, "machine": machine_facts(),
        }  # fmt: skip
        base = int(system_sample(psutil)["sys_used_bytes"])
        t0 = time.monotonic()
        child, own_group = _spawn(cmd)
        _write(fh, header | {"pid": child.pid})
        tree = TreeSampler(child.pid, psutil)
        try:
            with _Forwarder(child, own_group):
                rc = _loop(child, tree, gpu, t0, interval_s, fh, peaks)
        finally:
            if gpu is not None:
                gpu.close()
        summary = _summary(cmd, rc, peaks, time.monotonic() - t0, base)
        _write(fh, summary)
    return MemmonResult(summary["exit_code"], summary)


def _loop(
    child: subprocess.Popen[bytes], tree: TreeSampler, gpu: GpuProbe | None, t0: float,
    interval_s: float, fh: IO[str], peaks: Peaks,
) -> int:  # fmt: skip
    next_t = time.monotonic()
    while True:
        s = _sample(tree, gpu, t0)
        if s["procs"]:  # the child may exit between poll() and the sample
            peaks.add(s)
            _write(fh, s)
        next_t += interval_s
        try:
            rc = child.wait(timeout=max(0.0, next_t - time.monotonic()))
            return rc
        except subprocess.TimeoutExpired:
            continue


def strip_separator(cmd: list[str]) -> list[str]:
    return cmd[1:] if cmd and cmd[0] == "--" else cmd

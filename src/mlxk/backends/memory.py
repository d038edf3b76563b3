"""The memory gate: refuse a model before loading when it cannot fit.

needed = weights as they will sit in memory + headroom for the modality; available = what
the device in use can give (RAM on a Linux CPU, GPU memory on CUDA, unified memory on Apple
Silicon). The seed's headroom (8 GB vision, 4 GB audio) is kept where the device is that large,
and scaled down to a quarter of the device on smaller ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mlxk.errors import MemoryGateError
from mlxk.types import ModelInfo

GB = 1024**3
SEED_HEADROOM = {"vision": 8 * GB, "audio": 4 * GB}
WEIGHT_SUFFIXES = (".safetensors", ".npz", ".gguf")


@dataclass(frozen=True)
class MemoryEstimate:
    weights_bytes: int
    headroom_bytes: int
    available_bytes: int
    device: str

    @property
    def needed_bytes(self) -> int:
        return self.weights_bytes + self.headroom_bytes

    @property
    def fits(self) -> bool:
        return self.needed_bytes <= self.available_bytes


def weight_bytes(model_dir: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(model_dir):
        for name in files:
            if name.endswith(WEIGHT_SUFFIXES):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _gpu_free_bytes() -> int | None:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        res = subprocess.run(
            [smi, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        return int(res.stdout.split()[0]) * 1024 * 1024
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def total_ram_bytes() -> int | None:
    """Physical memory of this machine, or None where the OS does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _total_ram() -> int:
    return total_ram_bytes() or 8 * GB  # an unknown size is planned as a small machine


def available_bytes(device: str, override: int | None) -> int:
    if override:
        return override
    if device == "cuda":
        free = _gpu_free_bytes()
        if free is not None:
            return free
    if sys.platform == "darwin":
        return int(_total_ram() * 0.75)  # Metal's default wired limit is about 3/4 of RAM
    return _meminfo_available() or _total_ram()


def _device_size(device: str) -> int:
    return (_gpu_free_bytes() if device == "cuda" else None) or _total_ram()


def headroom(info: ModelInfo, weights: int, device_size: int, modality: str) -> int:
    base = max(GB // 2, weights // 5)
    seed = SEED_HEADROOM.get(modality, 0)
    return max(base, min(seed, device_size // 4))


def estimate(
    model_dir: Path, info: ModelInfo, *, device: str, modality: str, override: int | None
) -> MemoryEstimate:
    weights = weight_bytes(model_dir)
    if device == "cpu" and not info.quantization:
        weights *= 2  # half-precision weights are computed in float32 on CPU
    size = override or _device_size(device)
    return MemoryEstimate(
        weights, headroom(info, weights, size, modality), available_bytes(device, override), device
    )


def gate(est: MemoryEstimate, name: str) -> None:
    if est.fits:
        return
    raise MemoryGateError(
        f"Model '{name}' needs about {est.needed_bytes / GB:.1f} GB "
        f"({est.weights_bytes / GB:.1f} GB weights + {est.headroom_bytes / GB:.1f} GB headroom) "
        f"but only {est.available_bytes / GB:.1f} GB is available on the {est.device}. "
        "Use a smaller or more quantized model (mlxk convert --quantize 4).",
        needed_bytes=est.needed_bytes,
        available_bytes=est.available_bytes,
    )

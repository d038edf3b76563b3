"""Platform setup that must happen before the first ``import mlx``.

On Linux without an accelerator MLX runs on its CPU backend, whose wheel (``mlx-cpu``) links
the reference BLAS: float32 matmuls are ~30x slower than with an optimized library. Loading
an optimized BLAS with ``RTLD_GLOBAL`` *before* ``libmlx.so`` is loaded makes the dynamic
linker bind MLX's ``cblas_sgemm`` to it (Python extensions are loaded with RTLD_NOW, so a
later preload is too late). The device is guessed without importing mlx, from the platform
and the installed MLX backend packages.

Nothing here imports mlx; ``activation_dtype`` only touches ``mlx.core`` when it is handed an
mlx dtype, i.e. when mlx is already loaded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata as md
import os
import platform as _platform
import sys
import sysconfig
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from mlxk.config import Settings, apply_library_defaults

Device = Literal["cpu", "gpu", "cuda", "metal"]

BLAS_SYMBOL = "cblas_sgemm"
BLAS_INSTALL_HINT = (
    "MLX runs on the CPU with its slow reference BLAS; install an optimized one for ~30x "
    "faster matmuls: apt-get install libopenblas0-pthread (or point MLXK_BLAS at a library "
    "exporting cblas_sgemm)"
)
_LOW_PRECISION = ("float16", "bfloat16")


@dataclass(frozen=True)
class PlatformInfo:
    device: Device
    blas: str | None  # path of the preloaded BLAS library, None when none was loaded
    blas_hint: str | None  # what to tell the user when the CPU path runs without a fast BLAS
    compute_dtype: str  # "float32" (CPU: fp16/bf16 kernels are scalar and slow) or "model"
    mlx_imported_early: bool = False  # mlx was loaded before setup: the preload had no effect

    @property
    def is_cpu(self) -> bool:
        return self.device == "cpu"

    def activation_dtype(self, model_dtype: Any) -> Any:
        """float32 on CPU, the model's own dtype on an accelerator (same kind as given)."""
        name = _dtype_name(model_dtype)
        if self.compute_dtype != "float32" or name not in _LOW_PRECISION:
            return model_dtype
        if isinstance(model_dtype, str):
            return "float32"
        import mlx.core as mx  # already loaded: we were handed one of its dtypes

        return mx.float32


_INFO: PlatformInfo | None = None
_HANDLES: list[ctypes.CDLL] = []  # keep the preloaded library referenced for the process life


def _dtype_name(dtype: Any) -> str:
    # mlx prints dtypes as "mlx.core.float16"; numpy/str give "float16"
    return str(dtype).rsplit(".", 1)[-1]


def _dist_names() -> set[str]:
    names: set[str] = set()
    for dist in md.distributions():
        name = dist.name  # None for a broken install's leftover dist-info
        if name:
            names.add(name.lower().replace("_", "-"))
    return names


def _has_mlx_cuda(names: set[str]) -> bool:
    if any(n.startswith("mlx-cuda") for n in names):
        return True
    for site in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        lib = Path(site) / "mlx" / "lib"
        if lib.is_dir() and any("cuda" in p.name.lower() for p in lib.iterdir()):
            return True
    return False


def _has_nvidia_device() -> bool:
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir() and any(gpus.iterdir()):
        return True
    return Path("/dev/nvidia0").exists()


def detect_device() -> Device:
    """Which MLX device will be the default, decided without importing mlx."""
    if sys.platform == "darwin":
        return "metal"
    if _has_mlx_cuda(_dist_names()) and _has_nvidia_device():
        return "cuda"
    return "cpu"


def _multiarch() -> str:
    arch = sysconfig.get_config_var("MULTIARCH")
    return str(arch) if arch else f"{_platform.machine()}-linux-gnu"


def blas_candidates() -> list[str]:
    """Optimized BLAS libraries in the usual places, best first (pthread OpenBLAS leads)."""
    libdirs = [f"/usr/lib/{_multiarch()}", "/usr/lib64", "/usr/lib", "/usr/local/lib"]
    names = [
        "openblas-pthread/libopenblas.so.0",
        "libopenblas.so.0",
        "openblas-openmp/libopenblas.so.0",
        "libopenblasp.so.0",
        "openblas-serial/libopenblas.so.0",
        "blis-pthread/libblis.so.4",
        "libblis.so.4",
        "libmkl_rt.so.2",
    ]
    found = [str(Path(d) / n) for d in libdirs for n in names if (Path(d) / n).is_file()]
    fallback = ctypes.util.find_library("openblas")
    if fallback:
        found.append(fallback)
    return list(dict.fromkeys(found))


def _exports_sgemm(path: str) -> bool:
    try:
        return hasattr(ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL), BLAS_SYMBOL)
    except OSError:
        return False


def _preload(path: str) -> bool:
    """Load ``path`` globally so libmlx binds cblas_* to it; check the symbol first."""
    if not _exports_sgemm(path):
        return False
    # a second dlopen of the same library with RTLD_GLOBAL promotes it into the global scope
    _HANDLES.append(ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL))
    return True


def _choose_blas(settings: Settings) -> tuple[str | None, str | None]:
    wanted = (settings.blas_path or "").strip()
    if wanted.lower() == "none":
        return None, None  # explicitly disabled: no hint, the user knows
    if wanted:
        if _preload(wanted):
            return wanted, None
        return None, f"MLXK_BLAS={wanted} could not be loaded or lacks {BLAS_SYMBOL}. " + (
            BLAS_INSTALL_HINT
        )
    for path in blas_candidates():
        if _preload(path):
            return path, None
    return None, BLAS_INSTALL_HINT


def setup_platform(settings: Settings | None = None) -> PlatformInfo:
    """Idempotent: decide the device and, on CPU, preload an optimized BLAS before mlx loads."""
    global _INFO
    if _INFO is not None:
        return _INFO
    settings = settings or Settings.from_env()
    apply_library_defaults()
    device = detect_device()
    early = "mlx.core" in sys.modules
    blas: str | None = None
    hint: str | None = None
    if device == "cpu" and sys.platform.startswith("linux"):
        blas, hint = _choose_blas(settings)
        if early and blas:
            hint = "mlx was imported before mlxk's platform setup; the BLAS preload has no effect"
    _INFO = PlatformInfo(
        device=device,
        blas=blas,
        blas_hint=hint,
        compute_dtype="float32" if device == "cpu" else "model",
        mlx_imported_early=early,
    )
    return _INFO


def current_platform() -> PlatformInfo | None:
    return _INFO


def activation_dtype(model_dtype: Any, info: PlatformInfo | None = None) -> Any:
    """The dtype to run activations in: float32 on CPU, the model's dtype on CUDA/Metal."""
    info = info or _INFO or setup_platform()
    return info.activation_dtype(model_dtype)


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _mlx_runtime_device() -> str | None:
    if "mlx.core" not in sys.modules:
        return None  # importing mlx just to report would defeat the preload
    import mlx.core as mx

    return str(mx.default_device())


def platform_report() -> dict[str, Any]:
    """Facts for ``mlxk --version --json``; never loads mlx or a BLAS by itself."""
    info = _INFO
    names = _dist_names()
    report: dict[str, Any] = {
        "system": _platform.system(),
        "machine": _platform.machine(),
        "python": _platform.python_version(),
        "cpu_count": os.cpu_count(),
        "device": info.device if info else detect_device(),
        "mlx": _version("mlx"),
        "mlx_backends": sorted(
            n for n in names if n.startswith(("mlx-cpu", "mlx-cuda", "mlx-metal"))
        ),
        "mlx_runtime_device": _mlx_runtime_device(),
        "setup_done": info is not None,
    }
    if info:
        report.update({k: v for k, v in asdict(info).items() if k != "device"})
    else:
        candidates = blas_candidates()
        report["blas_available"] = candidates[0] if candidates else None
    return report

"""The model pool: one memory budget for every loaded model (text, vision, audio, embeddings),
used by the server (a budgeted pool) and by the CLI (a pool of one, gated on the device).

A model is admitted only when its estimated need (weights as they will sit in memory plus the
memory gate's headroom for its modality) fits into the budget left by models that cannot be
evicted; least-recently-used idle models are evicted to make room, and unpinned models idle
longer than the TTL are unloaded. Too big → MemoryGateError (507) before any weight is read.

All mutating calls happen on the engine thread; ``snapshot`` may be called from anywhere.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlxk.backends.memory import GB, MemoryEstimate, gate
from mlxk.errors import MemoryGateError
from mlxk.types import Backend

log = logging.getLogger("mlxk.pool")


@dataclass(frozen=True)
class ModelKey:
    backend: Backend
    path: Path


@dataclass
class Loaded:
    key: ModelKey
    name: str
    runner: Any
    needed_bytes: int
    pinned: bool = False
    users: int = 0  # requests holding it: never evicted while > 0
    last_used: float = field(default_factory=time.monotonic)


class ModelPool:
    def __init__(
        self,
        budget_bytes: int,
        idle_ttl: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_models: int | None = None,
        device_gate: bool = False,
    ) -> None:
        self.budget = budget_bytes
        self.idle_ttl = idle_ttl
        # The CLI keeps one model (an interactive chat reuses it) and refuses what the device
        # cannot hold now; the server keeps many within its budget.
        self.max_models = max_models
        self.device_gate = device_gate
        self._clock = clock
        self._models: dict[ModelKey, Loaded] = {}
        self._pending: dict[ModelKey, int] = {}  # reserved for loads in progress
        self._lock = threading.Lock()

    # -- reading ---------------------------------------------------------------------------

    @property
    def reserved_bytes(self) -> int:
        with self._lock:
            return sum(m.needed_bytes for m in self._models.values())

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "id": m.name,
                    "backend": m.key.backend.value,
                    "pinned": m.pinned,
                    "in_use": m.users,
                    "reserved_bytes": m.needed_bytes,
                    "idle_s": round(self._clock() - m.last_used, 1),
                }
                for m in self._models.values()
            ]

    def loaded_names(self) -> dict[str, bool]:
        """Loaded model names → pinned."""
        with self._lock:
            return {m.name: m.pinned for m in self._models.values()}

    # -- engine thread -----------------------------------------------------------------------

    def acquire(
        self,
        key: ModelKey,
        name: str,
        estimate: Callable[[], MemoryEstimate],
        load: Callable[[], Any],
        *,
        pin: bool = False,
    ) -> Loaded:
        """The loaded model for ``key`` with one more user; loads it (after making room)."""
        entry = self._models.get(key)
        if entry is None:
            est = estimate()  # only for a model not loaded yet: it may ask the GPU driver
            self._make_room(name, est)
            runner = load()  # may raise: nothing was reserved yet
            entry = Loaded(key, name, runner, est.needed_bytes, pin)
            with self._lock:
                self._models[key] = entry
            log.info(
                "loaded %s (%s, %.2f GB reserved)", name, key.backend.value, est.needed_bytes / GB
            )
        entry.pinned = entry.pinned or pin
        entry.users += 1
        entry.last_used = self._clock()
        return entry

    def has(self, key: ModelKey) -> bool:
        return key in self._models

    def reserve(self, key: ModelKey, name: str, estimate: Callable[[], MemoryEstimate]) -> int:
        """Make room for a model that will be loaded elsewhere (off the engine thread); its
        bytes count as taken until ``install`` or ``unreserve``. Raises like ``acquire``."""
        est = estimate()
        self._make_room(name, est, extra=sum(self._pending.values()))
        self._pending[key] = est.needed_bytes
        return est.needed_bytes

    def install(self, key: ModelKey, name: str, runner: Any) -> None:
        needed = self._pending.pop(key)
        entry = Loaded(key, name, runner, needed)
        with self._lock:
            self._models[key] = entry
        log.info("loaded %s (%s, %.2f GB reserved)", name, key.backend.value, needed / GB)

    def unreserve(self, key: ModelKey) -> None:
        self._pending.pop(key, None)

    def release(self, entry: Loaded) -> None:
        entry.users = max(0, entry.users - 1)
        entry.last_used = self._clock()

    def expire_idle(self) -> list[str]:
        """Unload unpinned models unused for longer than the TTL; their names."""
        if self.idle_ttl <= 0:
            return []
        now = self._clock()
        stale = [
            m
            for m in self._models.values()
            if not m.pinned and m.users == 0 and now - m.last_used > self.idle_ttl
        ]
        for m in stale:
            self._unload(m)
        return [m.name for m in stale]

    def unload_all(self) -> None:
        for m in list(self._models.values()):
            self._unload(m)

    def _make_room(self, name: str, est: MemoryEstimate, extra: int = 0) -> None:
        if self.max_models is not None:
            idle = sorted(
                (m for m in self._models.values() if not m.pinned and m.users == 0),
                key=lambda m: m.last_used,
            )
            for m in idle[: max(0, len(self._models) - self.max_models + 1)]:
                self._unload(m)
        if self.device_gate:
            gate(est, name)
        kept = [m for m in self._models.values() if m.pinned or m.users > 0]
        available = self.budget - sum(m.needed_bytes for m in kept) - extra
        if est.needed_bytes > available:
            raise _refusal(name, est, available, self.budget, kept)
        evictable = sorted(
            (m for m in self._models.values() if m not in kept), key=lambda m: m.last_used
        )
        used = sum(m.needed_bytes for m in self._models.values()) + extra
        for m in evictable:
            if used + est.needed_bytes <= self.budget:
                break
            log.info("evicting %s to make room for %s", m.name, name)
            self._unload(m)
            used -= m.needed_bytes

    def _unload(self, entry: Loaded) -> None:
        with self._lock:
            self._models.pop(entry.key, None)
        entry.runner = None
        gc.collect()
        if "mlx.core" in sys.modules:  # give the freed buffers back, not just to MLX's cache
            import mlx.core as mx

            mx.clear_cache()
        log.info("unloaded %s", entry.name)


def _refusal(
    name: str, est: MemoryEstimate, available: int, budget: int, kept: list[Loaded]
) -> MemoryGateError:
    held = f"; loaded and busy or pinned: {', '.join(m.name for m in kept)}" if kept else ""
    return MemoryGateError(
        f"Model '{name}' needs about {est.needed_bytes / GB:.2f} GB "
        f"({est.weights_bytes / GB:.2f} GB weights + {est.headroom_bytes / GB:.2f} GB headroom) "
        f"but only {max(available, 0) / GB:.2f} GB of the server's {budget / GB:.2f} GB "
        f"memory budget is available{held}.",
        needed_bytes=est.needed_bytes,
        available_bytes=max(available, 0),
    )

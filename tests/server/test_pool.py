"""The model pool's rules, with plain objects as models and a hand-turned clock (no MLX):
one budget, refuse before load, LRU eviction of idle models, idle TTL, pins, users."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlxk.backends.memory import GB, MemoryEstimate
from mlxk.backends.pool import ModelKey, ModelPool
from mlxk.errors import MemoryGateError
from mlxk.types import Backend


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _est(gb: int) -> MemoryEstimate:
    return MemoryEstimate(gb * GB * 4 // 5, gb * GB // 5, 0, "cpu")


def _key(name: str) -> ModelKey:
    return ModelKey(Backend.MLX_LM, Path("/models") / name)


def _loader(log: list[str], name: str) -> object:
    def load() -> object:
        log.append(name)
        return object()

    return load


def test_lru_idle_model_is_evicted_to_make_room() -> None:
    clock, loads = Clock(), []
    pool = ModelPool(10 * GB, idle_ttl=0, clock=clock)
    a = pool.acquire(_key("a"), "a", lambda: _est(4), _loader(loads, "a"))
    pool.release(a)
    clock.now = 1
    b = pool.acquire(_key("b"), "b", lambda: _est(4), _loader(loads, "b"))
    pool.release(b)
    clock.now = 2
    pool.acquire(_key("a"), "a", lambda: _est(4), _loader(loads, "a2"))  # touch: b is now older
    c = pool.acquire(_key("c"), "c", lambda: _est(4), _loader(loads, "c"))
    assert loads == ["a", "b", "c"]  # a was reused, not reloaded
    assert set(pool.loaded_names()) == {"a", "c"}
    assert c.users == 1


def test_too_big_is_refused_before_loading_with_figures() -> None:
    loads: list[str] = []
    pool = ModelPool(10 * GB, idle_ttl=0)
    pinned = pool.acquire(_key("p"), "p", lambda: _est(6), _loader(loads, "p"), pin=True)
    pool.release(pinned)
    with pytest.raises(MemoryGateError) as info:
        pool.acquire(_key("big"), "big", lambda: _est(5), _loader(loads, "big"))
    assert loads == ["p"]  # nothing was loaded for the refused model
    extra = info.value.extra
    assert extra["needed_bytes"] == _est(5).needed_bytes
    assert extra["available_bytes"] == 10 * GB - _est(6).needed_bytes
    assert "p" in info.value.message


def test_models_in_use_are_never_evicted() -> None:
    pool = ModelPool(10 * GB, idle_ttl=0)
    pool.acquire(_key("busy"), "busy", lambda: _est(6), _loader([], "busy"))  # not released
    with pytest.raises(MemoryGateError):
        pool.acquire(_key("other"), "other", lambda: _est(6), _loader([], "other"))
    assert set(pool.loaded_names()) == {"busy"}


def test_idle_ttl_unloads_unpinned_models_only() -> None:
    clock = Clock()
    pool = ModelPool(10 * GB, idle_ttl=60, clock=clock)
    for name, pin in (("p", True), ("u", False), ("held", False)):
        entry = pool.acquire(_key(name), name, lambda: _est(1), _loader([], name), pin=pin)
        if name != "held":
            pool.release(entry)
    clock.now = 30
    assert pool.expire_idle() == []
    clock.now = 61
    assert pool.expire_idle() == ["u"]
    assert set(pool.loaded_names()) == {"p", "held"}
    assert pool.reserved_bytes == 2 * _est(1).needed_bytes


def test_failed_load_reserves_nothing() -> None:
    pool = ModelPool(10 * GB, idle_ttl=0)

    def broken() -> object:
        raise MemoryError("no")

    with pytest.raises(MemoryError):
        pool.acquire(_key("x"), "x", lambda: _est(1), broken)
    assert pool.loaded_names() == {} and pool.reserved_bytes == 0

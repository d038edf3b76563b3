"""The engine's scheduling with real tiny mlx-lm models: steps of different requests
interleave, a model load runs beside running streams, cancellation leaves at the next step,
and a refused load fails only its own request. Order of events only, no timing thresholds."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.textmodels import FLOAT32_ACTIVATIONS, PLATFORM, make_tiny_qwen2

from mlxk.backends.engine import DONE, Engine, ModelNeed, QueueSink, StepWork, TextWork
from mlxk.backends.memory import MemoryEstimate
from mlxk.backends.pool import ModelKey, ModelPool
from mlxk.backends.text import load_text
from mlxk.errors import MemoryGateError
from mlxk.types import Backend, GenerationChunk, Sampling

GREEDY = Sampling(0.0, 1.0, None)
MB = 1024 * 1024


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("engine")
    return [make_tiny_qwen2(root / f"m{i}", context=512, seed=i) for i in range(2)]


@pytest.fixture
def engine() -> Any:
    eng = Engine(ModelPool(1 << 40, 0.0), max_batch=8)
    eng.start()
    yield eng
    eng.stop()


def _need(path: Path, gate: threading.Event | None = None, size: int = MB) -> ModelNeed:
    def load() -> Any:
        if gate is not None:
            assert gate.wait(60), "the test never released the load"
        return load_text(path, float32_activations=FLOAT32_ACTIVATIONS)

    est = MemoryEstimate(size, 0, 1 << 40, PLATFORM.device)
    return ModelNeed(ModelKey(Backend.MLX_LM, path), path.name, lambda: est, load)


def _text(engine: Engine, need: ModelNeed, sink: Any, tokens: int) -> None:
    def start() -> TextWork:
        entry = engine.pool.acquire(need.key, need.name, need.estimate, need.load)
        ids = entry.runner.encode_prompt(prompt="hello there", use_chat_template=False)
        return TextWork(entry, ids, GREEDY, tokens, started="started")

    engine.submit(start, sink, need)


def test_a_load_runs_beside_a_running_stream(engine: Engine, tiny_dirs: list[Path]) -> None:
    running = QueueSink()
    _text(engine, _need(tiny_dirs[0]), running, 400)
    events = running.events()
    assert next(events) == "started" and isinstance(next(events), GenerationChunk)
    gate = threading.Event()
    waiting = QueueSink()
    _text(engine, _need(tiny_dirs[1], gate), waiting, 3)  # its load blocks until released
    # the first stream keeps producing tokens while the second model is still loading
    more = [next(events) for _ in range(5)]
    assert all(isinstance(c, GenerationChunk) for c in more) and waiting.queue.empty()
    gate.set()
    assert list(waiting.events())[:1] == ["started"]
    running.cancel()


def test_steps_of_two_requests_interleave(engine: Engine, tiny_dirs: list[Path]) -> None:
    order: list[str] = []
    lock = threading.Lock()

    class Tagged(QueueSink):
        def __init__(self, tag: str) -> None:
            super().__init__()
            self.tag = tag

        def put(self, event: Any) -> None:
            with lock:
                order.append(self.tag)
            super().put(event)

    def slow_steps() -> Any:  # a long job of 50 ms steps (as a transcription's windows are)
        for i in range(40):
            time.sleep(0.05)
            yield i

    long_job, chat = Tagged("long"), Tagged("chat")
    engine.submit(lambda: StepWork(None, slow_steps()), long_job)
    _text(engine, _need(tiny_dirs[0]), chat, 200)
    list(chat.events())
    list(long_job.events())

    def span(tag: str) -> list[str]:
        first, last = order.index(tag), len(order) - 1 - order[::-1].index(tag)
        return order[first : last + 1]

    # neither waited for the other to finish: their steps took turns
    assert "long" in span("chat") and "chat" in span("long")


def test_cancel_leaves_at_the_next_step(engine: Engine, tiny_dirs: list[Path]) -> None:
    sink = QueueSink()
    _text(engine, _need(tiny_dirs[0]), sink, 400)
    assert sink.queue.get(timeout=120) == "started"
    sink.queue.get(timeout=120)
    sink.cancel()
    seen = 0
    while True:  # whatever was already queued, then nothing more: no DONE for a cancelled one
        try:
            event = sink.queue.get(timeout=5)
        except Exception:
            break
        assert event is not DONE
        seen += 1
    assert seen < 400 and engine.active_sequences == 0 and engine.stats.cancelled == 1


def test_a_refused_load_fails_only_its_request(tiny_dirs: list[Path]) -> None:
    eng = Engine(ModelPool(10 * MB, 0.0), max_batch=4)
    eng.start()
    try:
        big, ok = QueueSink(), QueueSink()
        _text(eng, _need(tiny_dirs[0], size=100 * MB), big, 3)
        _text(eng, _need(tiny_dirs[1], size=MB), ok, 3)
        with pytest.raises(MemoryGateError):
            list(big.events())
        assert list(ok.events())[:1] == ["started"]
    finally:
        eng.stop()

"""The engine: one thread that does all MLX work in *steps*, for the CLI and the server.

MLX streams are per thread (mlx-lm's ``generation_stream`` is thread-local), so loading,
generation, transcription and embeddings all run on this thread. Work arrives as a *start*
function (run here: acquire the model, encode, plan) that returns what to run:

* ``TextWork`` joins its model's continuous batch (mlx-lm's BatchGenerator): one step is one
  decode step for every request to that model;
* ``StepWork`` is an iterator whose every ``next`` is one step (one Whisper window, one
  mlx-vlm token) and whose items are the events sent to the caller;
* ``Value`` is a result, sent at once (embeddings, loading a pinned model).

A job that names a model not loaded yet (``ModelNeed``) waits while the loader thread reads
the weights (its memory reserved first, so a model that cannot fit is refused at once);
running streams keep stepping meanwhile.

Fairness: each runnable (a batch or a step iterator) keeps the seconds it has used; the one
that has used least runs next, so a long transcription's 1 s windows and a chat's 20 ms
decode steps share the thread evenly instead of the chat waiting for the whole file. New
runnables start at the current minimum, and a batch holding a request that has not had its
first token yet goes first. Cancelled requests leave before the next step.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mlxk.backends.memory import MemoryEstimate
from mlxk.backends.pool import Loaded, ModelKey, ModelPool
from mlxk.errors import GenerationError, MlxkError
from mlxk.types import Sampling

log = logging.getLogger("mlxk.engine")

_IDLE_WAKE_S = 1.0  # how often an idle engine wakes to unload models past their TTL


class Done:
    """The last event of a stream."""

    def __repr__(self) -> str:
        return "DONE"


DONE = Done()


class Sink(Protocol):
    """The engine's line back to one request; ``put`` is called from the engine thread."""

    cancelled: threading.Event

    def put(self, event: Any) -> None: ...


class QueueSink:
    """A sink a plain thread blocks on (the CLI): events in order, errors raised."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Any] = queue.Queue()
        self.cancelled = threading.Event()

    def put(self, event: Any) -> None:
        self.queue.put(event)

    def cancel(self) -> None:
        self.cancelled.set()

    def events(self) -> Iterator[Any]:
        """Events until DONE; an interrupt (Ctrl-C) cancels the work and propagates."""
        try:
            while True:
                event = self.queue.get()
                if event is DONE:
                    return
                if isinstance(event, BaseException):
                    raise event
                yield event
        except BaseException:
            self.cancel()
            raise


@dataclass
class TextWork:
    entry: Loaded
    ids: list[int]
    sampling: Sampling
    max_tokens: int
    stop: tuple[str, ...] = ()
    started: Any = None  # the first event, sent when the work is installed
    constraint: Any = None  # backends.structured.Constraint: a grammar for the logits


@dataclass
class StepWork:
    entry: Loaded | None
    steps: Iterator[Any]
    started: Any = None


@dataclass
class Value:
    value: Any


Work = TextWork | StepWork | Value
Start = Callable[[], Work]


@dataclass(frozen=True)
class ModelNeed:
    """The model a job needs: when it is not loaded yet, the engine reserves its memory, loads
    it on the loader thread and runs the job once it is there; running streams keep going."""

    key: ModelKey
    name: str
    estimate: Callable[[], MemoryEstimate]
    load: Callable[[], Any]


@dataclass
class _Job:
    start: Start
    sink: Sink
    need: ModelNeed | None = None


@dataclass
class _LoadDone:
    need: ModelNeed
    result: Any  # the runner, or the MlxkError that stopped the load


class _Loader:
    """One long-lived thread for model loads (long-lived: see ``_wait_gone``)."""

    def __init__(self) -> None:
        self._todo: queue.Queue[tuple[ModelNeed, Callable[[_LoadDone], None]] | None] = (
            queue.Queue()
        )
        self._thread = threading.Thread(target=self._run, name="mlxk-loader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def load(self, need: ModelNeed, done: Callable[[_LoadDone], None]) -> None:
        self._todo.put((need, done))

    def stop(self, timeout: float) -> None:
        self._todo.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)
            _wait_gone(self._thread.native_id)

    def _run(self) -> None:
        while (item := self._todo.get()) is not None:
            need, done = item
            try:
                result: Any = need.load()
            except MlxkError as exc:
                result = exc
            except Exception as exc:  # a library error while loading: that request fails
                log.exception("loading %s failed", need.name)
                result = GenerationError(f"cannot load {need.name}: {type(exc).__name__}: {exc}")
            done(_LoadDone(need, result))


@dataclass
class EngineStats:
    cancelled: int = 0
    completed: int = 0
    failed: int = 0
    generated_tokens: int = 0
    steps: int = 0


@dataclass
class _Runnable:
    used: float = 0.0  # seconds of engine time this runnable has had

    def step(self, engine: Engine) -> None:
        raise NotImplementedError

    def idle(self) -> bool:
        return False


@dataclass
class _Seq:
    sink: Sink
    seq: Any  # backends.text.TextSequence


@dataclass
class _Batch(_Runnable):
    entry: Loaded | None = None
    batch: Any = None  # backends.text.TextBatch
    seqs: dict[int, _Seq] = field(default_factory=dict)

    def idle(self) -> bool:
        return not self.seqs

    def awaits_first_token(self) -> bool:
        return any(item.seq.count == 0 for item in self.seqs.values())

    def step(self, engine: Engine) -> None:
        for token in self.batch.step():
            item = self.seqs.get(token.uid)
            if item is None:
                continue
            chunk = item.seq.feed(token.token, token.finish_reason)
            engine.stats.generated_tokens += 1
            if chunk is not None:
                item.sink.put(chunk)
            if item.seq.ended:
                self.batch.remove([token.uid])
                del self.seqs[token.uid]
                engine.finish(item.sink, self.entry)


@dataclass
class _Stepper(_Runnable):
    work: StepWork | None = None
    sink: Sink | None = None
    ended: bool = False

    def idle(self) -> bool:
        return self.ended

    def step(self, engine: Engine) -> None:
        assert self.work is not None and self.sink is not None
        try:
            event = next(self.work.steps)
        except StopIteration:
            self.ended = True
            engine.finish(self.sink, self.work.entry)
            return
        self.sink.put(event)

    def close(self) -> None:
        self.ended = True
        close = getattr(self.work.steps if self.work else None, "close", None)
        if close is not None:
            close()  # runs the backend's finally (an mlx-vlm generator is closed too)


class Engine:
    def __init__(self, pool: ModelPool, *, max_batch: int) -> None:
        self.pool = pool
        self.max_batch = max_batch
        self.stats = EngineStats()
        self._jobs: queue.Queue[_Job | _LoadDone | None] = queue.Queue()
        self._waiting: dict[ModelKey, list[_Job]] = {}  # jobs whose model is loading
        self._loader = _Loader()
        self._batches: dict[Any, _Batch] = {}
        self._steppers: list[_Stepper] = []
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stream: Any = None

    # -- any thread ----------------------------------------------------------------------------

    def start(self) -> None:
        self._loader.start()
        self._thread = threading.Thread(target=self._run, name="mlxk-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel everything in flight, unload models and end the thread."""
        self._stopping.set()
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            _wait_gone(self._thread.native_id)
        self._loader.stop(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def active_sequences(self) -> int:
        return sum(len(b.seqs) for b in self._batches.values()) + len(self._steppers)

    def submit(self, start: Start, sink: Sink, need: ModelNeed | None = None) -> None:
        """Run ``start`` on the engine thread (after loading ``need``), then what it returns,
        into ``sink``."""
        if self._stopping.is_set():
            sink.put(GenerationError("the engine is shutting down"))
            return
        self._jobs.put(_Job(start, sink, need))

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the engine thread and wait for its result (from another thread)."""
        sink = QueueSink()
        self.submit(lambda: Value(fn()), sink)
        return next(sink.events())

    # -- engine thread -------------------------------------------------------------------------

    def finish(self, sink: Sink, entry: Loaded | None) -> None:
        self.stats.completed += 1
        sink.put(DONE)
        if entry is not None:
            self.pool.release(entry)

    def _run(self) -> None:
        import mlx.core as mx

        # mlx_lm.server does the same: generation runs in this thread's default stream.
        self._stream = mx.default_stream(mx.default_device())
        while not self._stopping.is_set():
            if not self._take_jobs():
                break
            self._sweep_cancelled()
            runnable = self._next_runnable()
            if runnable is None:
                self.pool.expire_idle()
                continue
            began = time.perf_counter()
            self._step(runnable)
            runnable.used += time.perf_counter() - began
            self.stats.steps += 1
        self._shutdown()

    def _take_jobs(self) -> bool:
        busy = bool(self._batches or self._steppers)
        try:
            job = self._jobs.get(block=not busy, timeout=None if busy else _IDLE_WAKE_S)
        except queue.Empty:
            return True
        while True:
            if job is None:
                return False
            if isinstance(job, _LoadDone):
                self._loaded(job)
            else:
                self._begin(job)
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return True

    def _next_runnable(self) -> _Runnable | None:
        ready: list[_Runnable] = [*self._batches.values(), *self._steppers]
        # First tokens first: a batch with a request still waiting for its first token (its
        # prefill) runs before anything else, so a chat that arrives during a transcription
        # waits at most for the window being decoded, not for the next one too.
        waiting = [b for b in self._batches.values() if b.awaits_first_token()]
        return min(waiting or ready, key=lambda r: r.used, default=None)

    def _floor(self) -> float:
        """Where a new runnable starts: level with the others, so it neither waits for
        their past nor starves them."""
        ready = [*self._batches.values(), *self._steppers]
        return min((r.used for r in ready), default=0.0)

    def _begin(self, job: _Job) -> None:
        if job.sink.cancelled.is_set():
            self.stats.cancelled += 1
            job.sink.put(GenerationError("request cancelled"))
            return
        if job.need is not None and not self.pool.has(job.need.key):
            self._wait_for_load(job, job.need)
            return
        try:
            work = job.start()
            self._install(work, job.sink)
        except MlxkError as exc:
            self._fail(job.sink, exc)
        except Exception as exc:  # a bug or a library error: one request fails, the engine lives
            log.exception("engine job failed")
            self._fail(job.sink, GenerationError(f"generation failed: {type(exc).__name__}"))

    def _wait_for_load(self, job: _Job, need: ModelNeed) -> None:
        if need.key in self._waiting:  # already loading: wait with the others
            self._waiting[need.key].append(job)
            return
        try:
            self.pool.reserve(need.key, need.name, need.estimate)  # 507 before any weight
        except MlxkError as exc:
            self._fail(job.sink, exc)
            return
        self._waiting[need.key] = [job]
        self._loader.load(need, self._jobs.put)

    def _loaded(self, done: _LoadDone) -> None:
        jobs = self._waiting.pop(done.need.key, [])
        if isinstance(done.result, MlxkError):
            self.pool.unreserve(done.need.key)
            for job in jobs:
                self._fail(job.sink, done.result)
            return
        self.pool.install(done.need.key, done.need.name, done.result)
        for job in jobs:
            self._begin(job)

    def _install(self, work: Work, sink: Sink) -> None:
        if isinstance(work, Value):
            sink.put(work.value)
            sink.put(DONE)
            return
        if work.started is not None:
            sink.put(work.started)
        if isinstance(work, TextWork):
            self._add_text(work, sink)
        else:
            self._steppers.append(_Stepper(used=self._floor(), work=work, sink=sink))

    def _fail(self, sink: Sink, exc: MlxkError, entry: Loaded | None = None) -> None:
        self.stats.failed += 1
        sink.put(exc)
        if entry is not None:
            self.pool.release(entry)

    def _add_text(self, work: TextWork, sink: Sink) -> None:
        key = work.entry.key
        batch = self._batches.get(key)
        if batch is None:
            gen = work.entry.runner.new_batch(self.max_batch, self._stream)
            batch = _Batch(used=self._floor(), entry=work.entry, batch=gen)
            self._batches[key] = batch
        try:
            uid = batch.batch.insert(work.ids, work.sampling, work.max_tokens, work.constraint)
        except BaseException:
            self.pool.release(work.entry)
            raise
        # one pool user per sequence (taken by the start function), released at its end
        batch.seqs[uid] = _Seq(sink, batch.batch.sequence(work.stop, len(work.ids)))

    def _step(self, runnable: _Runnable) -> None:
        try:
            runnable.step(self)
        except MlxkError as exc:
            self._abort(runnable, exc)
        except Exception as exc:
            log.exception("engine step failed")
            self._abort(runnable, GenerationError(f"generation failed: {type(exc).__name__}"))
        self._drop_idle()

    def _abort(self, runnable: _Runnable, exc: MlxkError) -> None:
        if isinstance(runnable, _Batch):
            for item in runnable.seqs.values():
                self._fail(item.sink, exc, runnable.entry)
            runnable.seqs.clear()
        elif isinstance(runnable, _Stepper) and runnable.sink is not None:
            runnable.close()
            self._fail(runnable.sink, exc, runnable.work.entry if runnable.work else None)

    def _drop_idle(self) -> None:
        for key in [k for k, b in self._batches.items() if b.idle()]:
            self._batches.pop(key).batch.close()
        self._steppers = [s for s in self._steppers if not s.idle()]

    def _sweep_cancelled(self) -> None:
        for batch in self._batches.values():
            gone = [uid for uid, s in batch.seqs.items() if s.sink.cancelled.is_set()]
            if gone:
                batch.batch.remove(gone)
                for uid in gone:
                    del batch.seqs[uid]
                    self.stats.cancelled += 1
                    if batch.entry is not None:
                        self.pool.release(batch.entry)
        for item in [s for s in self._steppers if s.sink and s.sink.cancelled.is_set()]:
            item.close()
            self.stats.cancelled += 1
            if item.work and item.work.entry is not None:
                self.pool.release(item.work.entry)
        self._drop_idle()

    def _shutdown(self) -> None:
        err = GenerationError("the engine is shutting down")
        for batch in self._batches.values():
            self._abort(batch, err)
        for item in self._steppers:
            self._abort(item, err)
        self._drop_idle()
        waiting = [j for jobs in self._waiting.values() for j in jobs]
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if isinstance(job, _Job):
                waiting.append(job)
        for job in waiting:
            job.sink.put(err)
        self.pool.unload_all()


def _wait_gone(native_id: int | None, timeout: float = 5.0) -> None:
    """Wait until the OS thread is really gone, not just its Python part. MLX keeps a
    thread-local compile cache whose destructor runs after ``join`` returns and needs the
    GIL; if the interpreter is finalizing by then, the process aborts ("terminate called
    without an active exception"). So the caller keeps running (releasing the GIL) until
    the thread has left."""
    task = Path(f"/proc/self/task/{native_id}")
    if native_id is None or not Path("/proc/self/task").is_dir():
        time.sleep(0.1)  # no procfs (macOS): a short pause is enough for the destructors
        return
    deadline = time.monotonic() + timeout
    while task.exists() and time.monotonic() < deadline:
        time.sleep(0.005)

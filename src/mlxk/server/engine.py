"""The engine: one thread that does all MLX work, so the event loop only moves bytes.

MLX streams are per thread (mlx-lm's ``generation_stream`` is thread-local), so loading,
generation, transcription and embeddings all run here. Each turn of the loop

1. takes new jobs (a *call* runs to completion at once: loads, Whisper, embeddings);
2. drops requests whose client went away (``Sink.cancelled``) — within one step;
3. advances every text model's mlx-lm ``BatchGenerator`` by one step (continuous batching:
   concurrent requests to one text model share each forward pass);
4. advances every other stream (mlx-vlm, non-batchable text) by one chunk, round-robin.

Results travel back through a ``Sink``: thread-safe puts into the request's asyncio queue.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mlxk.backends.text import StopStrings  # the CLI's stop-string rule, shared on purpose
from mlxk.errors import GenerationError, MlxkError
from mlxk.server.pool import Loaded, ModelPool
from mlxk.types import GenerationChunk

log = logging.getLogger("mlxk.server")

_IDLE_WAKE_S = 1.0  # how often an idle engine wakes to unload models past their TTL


class Done:
    """The last event of a stream."""


DONE = Done()


class Sink:
    """The engine's line back to one request (events into an asyncio queue, from any thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.cancelled = threading.Event()

    def put(self, event: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the loop is closed: the server is shutting down
            self.cancelled.set()

    def cancel(self) -> None:
        self.cancelled.set()


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float
    top_p: float
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop: tuple[str, ...] = ()


@dataclass
class _Call:
    fn: Callable[[], Any]
    sink: Sink


@dataclass
class _TextJob:
    entry: Loaded
    ids: list[int]
    sampling: Sampling
    sink: Sink


@dataclass
class _IterJob:
    entry: Loaded
    start: Callable[[], Iterator[GenerationChunk]]
    stop: tuple[str, ...]
    sink: Sink


@dataclass
class _Seq:
    """One text request inside a batch."""

    job: _TextJob
    detok: Any
    stops: StopStrings
    prompt_tokens: int
    count: int = 0


@dataclass
class _Iter:
    job: _IterJob
    it: Iterator[GenerationChunk]
    stops: StopStrings
    count: int = 0  # tokens generated so far (chunks carry a cumulative count)


@dataclass
class _Batch:
    entry: Loaded
    gen: Any  # mlx_lm.generate.BatchGenerator
    seqs: dict[int, _Seq] = field(default_factory=dict)


@dataclass
class EngineStats:
    cancelled: int = 0
    completed: int = 0
    failed: int = 0
    generated_tokens: int = 0


class Engine:
    def __init__(self, pool: ModelPool, *, max_batch: int) -> None:
        self.pool = pool
        self.max_batch = max_batch
        self.stats = EngineStats()
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._batches: dict[Any, _Batch] = {}
        self._iters: list[_Iter] = []
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stream: Any = None

    # -- event-loop side -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mlxk-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel everything in flight, unload models and end the thread."""
        self._stopping.set()
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def active_sequences(self) -> int:
        return sum(len(b.seqs) for b in self._batches.values()) + len(self._iters)

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the engine thread and return its result (or raise its error)."""
        sink = Sink(asyncio.get_running_loop())
        self._submit(_Call(fn, sink))
        result = await sink.queue.get()
        if isinstance(result, BaseException):
            raise result
        return result

    def generate(self, entry: Loaded, ids: list[int], sampling: Sampling, sink: Sink) -> None:
        """Stream a text model's answer into ``sink``; the engine releases ``entry`` after."""
        self._submit(_TextJob(entry, ids, sampling, sink))

    def stream(
        self,
        entry: Loaded,
        start: Callable[[], Iterator[GenerationChunk]],
        stop: tuple[str, ...],
        sink: Sink,
    ) -> None:
        """Stream chunks of ``start()`` (called on the engine thread) into ``sink``."""
        self._submit(_IterJob(entry, start, stop, sink))

    def _submit(self, job: Any) -> None:
        if self._stopping.is_set():
            job.sink.put(GenerationError("the server is shutting down"))
            return
        self._jobs.put(job)

    # -- engine thread -------------------------------------------------------------------------

    def _run(self) -> None:
        import mlx.core as mx

        # mlx_lm.server does the same: generation runs in this thread's default stream.
        self._stream = mx.default_stream(mx.default_device())
        while not self._stopping.is_set():
            if not self._take_jobs():
                break
            self._sweep_cancelled()
            for key in list(self._batches):
                self._step_batch(key)
            self._step_iters()
            if not self._batches and not self._iters:
                self.pool.expire_idle()
        self._shutdown()

    def _take_jobs(self) -> bool:
        busy = bool(self._batches or self._iters)
        try:
            job = self._jobs.get(block=not busy, timeout=None if busy else _IDLE_WAKE_S)
        except queue.Empty:
            return True
        while True:
            if job is None:
                return False
            self._start(job)
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return True

    def _start(self, job: Any) -> None:
        if job.sink.cancelled.is_set():
            self._drop(job, cancelled=True)
            return
        try:
            if isinstance(job, _Call):
                job.sink.put(job.fn())
            elif isinstance(job, _TextJob):
                self._add_text(job)
            else:
                it = job.start()
                self._iters.append(_Iter(job, iter(it), StopStrings(job.stop)))
        except MlxkError as exc:
            self._fail(job, exc)
        except Exception as exc:  # a bug or a library error: one request fails, the engine lives
            log.exception("engine job failed")
            self._fail(job, GenerationError(f"generation failed: {type(exc).__name__}"))

    def _fail(self, job: Any, exc: MlxkError) -> None:
        self.stats.failed += 1
        job.sink.put(exc)
        if not isinstance(job, _Call):
            self.pool.release(job.entry)

    def _drop(self, job: Any, *, cancelled: bool) -> None:
        if cancelled:
            self.stats.cancelled += 1
        if not isinstance(job, _Call):
            self.pool.release(job.entry)
        else:
            job.sink.put(GenerationError("request cancelled"))

    # -- text batches ----------------------------------------------------------------------------

    def _add_text(self, job: _TextJob) -> None:
        from mlx_lm.generate import BatchGenerator, StopSequences
        from mlx_lm.sample_utils import make_logits_processors, make_sampler

        runner = job.entry.runner
        key = job.entry.key
        batch = self._batches.get(key)
        if batch is None:
            gen = BatchGenerator(
                runner.model,
                completion_batch_size=self.max_batch,
                prefill_batch_size=min(8, self.max_batch),
                stream=self._stream,
            )
            batch = self._batches[key] = _Batch(job.entry, gen)
        s = job.sampling
        processors = make_logits_processors(
            repetition_penalty=s.repetition_penalty,
            presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty,
        )
        (uid,) = batch.gen.insert(
            [job.ids],
            max_tokens=[s.max_tokens],
            samplers=[make_sampler(temp=s.temperature, top_p=s.top_p)],
            logits_processors=[processors],
            stop_sequences=[StopSequences([(t,) for t in runner.eos_token_ids])],
        )
        batch.seqs[uid] = _Seq(
            job, runner.tokenizer.detokenizer, StopStrings(s.stop), len(job.ids)
        )

    def _step_batch(self, key: Any) -> None:
        batch = self._batches[key]
        if batch.seqs:
            try:
                _prompts, responses = batch.gen.next()
            except Exception as exc:
                log.exception("batch step failed")
                self._fail_batch(key, GenerationError(f"generation failed: {type(exc).__name__}"))
                return
            for r in responses:
                seq = batch.seqs.get(r.uid)
                if seq is not None and self._emit(seq, r):
                    batch.gen.remove([r.uid])
                    del batch.seqs[r.uid]
                    self.pool.release(batch.entry)
        if not batch.seqs:
            batch.gen.close()
            del self._batches[key]

    def _emit(self, seq: _Seq, r: Any) -> bool:
        """Send what one generated token adds; True when the sequence has ended."""
        seq.count += 1
        self.stats.generated_tokens += 1
        if r.finish_reason != "stop":  # an ending EOS is counted but never shown
            seq.detok.add_token(r.token)
        if r.finish_reason is not None:
            seq.detok.finalize()
        text, hit = seq.stops.feed(seq.detok.last_segment)
        reason = "stop" if hit else r.finish_reason
        if reason is not None:
            text += "" if hit else seq.stops.flush()
            self.stats.completed += 1
        if text or reason is not None:
            seq.job.sink.put(GenerationChunk(text, seq.count, reason, seq.prompt_tokens))
        if reason is not None:
            seq.job.sink.put(DONE)
        return reason is not None

    def _fail_batch(self, key: Any, exc: MlxkError) -> None:
        batch = self._batches.pop(key)
        for seq in batch.seqs.values():
            self.stats.failed += 1
            seq.job.sink.put(exc)
            self.pool.release(batch.entry)
        batch.gen.close()

    def _sweep_cancelled(self) -> None:
        for batch in self._batches.values():
            gone = [uid for uid, s in batch.seqs.items() if s.job.sink.cancelled.is_set()]
            if gone:
                batch.gen.remove(gone)
                for uid in gone:
                    del batch.seqs[uid]
                    self.stats.cancelled += 1
                    self.pool.release(batch.entry)
        for item in [i for i in self._iters if i.job.sink.cancelled.is_set()]:
            self._end_iter(item)
            self.stats.cancelled += 1

    # -- other streams ---------------------------------------------------------------------------

    def _step_iters(self) -> None:
        for item in list(self._iters):
            try:
                chunk = next(item.it, None)
            except MlxkError as exc:
                self._end_iter(item)
                self._fail(_Call(lambda: None, item.job.sink), exc)
                continue
            except Exception as exc:
                log.exception("stream step failed")
                self._end_iter(item)
                err = GenerationError(f"generation failed: {type(exc).__name__}")
                self._fail(_Call(lambda: None, item.job.sink), err)
                continue
            if chunk is None or self._emit_chunk(item, chunk):
                self._end_iter(item)
                self.stats.completed += 1
                item.job.sink.put(DONE)

    def _emit_chunk(self, item: _Iter, chunk: GenerationChunk) -> bool:
        text, hit = item.stops.feed(chunk.text)
        reason = "stop" if hit else chunk.finish_reason
        if reason is not None and not hit:
            text += item.stops.flush()
        self.stats.generated_tokens += max(0, chunk.token_count - item.count)
        item.count = max(item.count, chunk.token_count)
        if text or reason is not None:
            item.job.sink.put(GenerationChunk(text, chunk.token_count, reason, chunk.prompt_tokens))
        return reason is not None

    def _end_iter(self, item: _Iter) -> None:
        if item in self._iters:
            self._iters.remove(item)
        close = getattr(item.it, "close", None)
        if close is not None:
            close()  # runs the backend's finally: its mlx-vlm generator is closed too
        self.pool.release(item.job.entry)

    # -- shutdown --------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        err = GenerationError("the server is shutting down")
        for key in list(self._batches):
            self._fail_batch(key, err)
        for item in list(self._iters):
            self._end_iter(item)
            item.job.sink.put(err)
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.sink.put(err)
        self.pool.unload_all()

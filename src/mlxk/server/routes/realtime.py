"""GET /v1/realtime?intent=transcription — OpenAI's Realtime transcription session over a
WebSocket: audio in (``input_audio_buffer.append``), turns out, with partial text while a
turn is still being spoken. The key, Host and Origin rules are the HTTP ones (middleware);
turn detection is ops.live; transcription is the one engine (ops.run), step by step.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import re
import uuid
from typing import Any

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from mlxk.backends.engine import DONE
from mlxk.backends.select import Inputs
from mlxk.errors import MlxkError
from mlxk.ops.live import Committed, SpeechStarted, SpeechStopped, TurnDetection, TurnTaker
from mlxk.ops.run import PreparedRun, RunOptions, fold_run, start_transcription
from mlxk.server.options import DEFAULT_CORS_REGEX
from mlxk.server.service import AsyncSink, ServerState, prepare_inputs

router = APIRouter()
log = logging.getLogger("mlxk.server")
RATES = {"audio/pcm": (24_000, 16_000), "audio/pcmu": (8_000,), "audio/pcma": (8_000,)}
MAX_APPEND_BYTES = 15 * 1024 * 1024  # one append's base64 (OpenAI's limit)
IDLE_TIMEOUT_S = 120.0
PARTIAL_EVERY_S = 1.0  # re-decode the open turn after this much new audio
MAX_SESSIONS = 16


class SessionError(Exception):
    def __init__(self, message: str, code: str = "invalid_value", param: str | None = None):
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


def _event_id() -> str:
    return "event_" + uuid.uuid4().hex[:20]


@router.websocket("/v1/realtime")
async def realtime(ws: WebSocket, intent: str | None = None, model: str | None = None) -> None:
    state: ServerState = ws.app.state.mlxk
    origin = ws.headers.get("origin")
    if origin and not _origin_allowed(state, origin):  # CORS does not cover WebSockets
        await ws.close(code=1008, reason="Origin not allowed")
        return
    wanted = ws.scope.get("subprotocols") or []
    await ws.accept(subprotocol="realtime" if "realtime" in wanted else None)
    live = _Live(state, ws)
    if intent != "transcription":
        await live.error("only ?intent=transcription sessions are served", "unsupported_intent")
        await ws.close(code=1008)
        return
    if state.live_sessions >= MAX_SESSIONS:
        await live.error(f"at most {MAX_SESSIONS} live sessions at once", "too_many_sessions")
        await ws.close(code=1013)
        return
    state.live_sessions += 1
    try:
        await live.run(model)
    finally:
        state.live_sessions -= 1
        live.stop()


def _origin_allowed(state: ServerState, origin: str) -> bool:
    allowed = state.options.cors_origins
    return origin in allowed if allowed else bool(re.match(DEFAULT_CORS_REGEX, origin))


class _Live:
    """One session: its settings, its turn taker, and the transcriptions it has running."""

    def __init__(self, state: ServerState, ws: WebSocket) -> None:
        self.state, self.ws = state, ws
        self.id = "sess_" + uuid.uuid4().hex[:20]
        self.format, self.rate = "audio/pcm", 24_000
        self.model: str | None = None
        self.prep: PreparedRun | None = None
        self.language: str | None = None
        self.prompt: str | None = None
        self.detection: TurnDetection | None = TurnDetection()
        self.turns = TurnTaker(self.detection)
        self.pending: asyncio.Queue[Committed | None] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None
        self.partial: asyncio.Task[None] | None = None
        self.partial_text: dict[str, str] = {}
        self.partial_at = 0  # open-turn samples at the last partial decode
        self.early: dict[str, asyncio.Task[str]] = {}  # a turn decoded when its speaker paused
        self.send_lock = asyncio.Lock()

    # -- the loop --------------------------------------------------------------------------

    async def run(self, model: str | None) -> None:
        self.worker = asyncio.create_task(self._transcribe_turns())
        if model:
            await self._set_model(model)
        await self.send("session.created", session=self.describe())
        while True:
            try:
                raw = await asyncio.wait_for(self.ws.receive_text(), IDLE_TIMEOUT_S)
            except (asyncio.TimeoutError, WebSocketDisconnect, RuntimeError):
                return
            try:
                await self._handle(raw)
            except SessionError as exc:
                await self.error(exc.message, exc.code, exc.param)
            except MlxkError as exc:
                await self.error(exc.message, exc.type, getattr(exc, "param", None))

    def stop(self) -> None:
        for task in (self.worker, self.partial, *self.early.values()):
            if task is not None:
                task.cancel()

    async def _handle(self, raw: str) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            raise SessionError("the message is not JSON", "invalid_json") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise SessionError("an event is a JSON object with a 'type'", "invalid_event")
        kind = event["type"]
        handlers = {
            "session.update": self._update,
            "transcription_session.update": self._update,
            "input_audio_buffer.append": self._append,
            "input_audio_buffer.commit": self._commit,
            "input_audio_buffer.clear": self._clear,
        }
        if kind not in handlers:
            raise SessionError(f"unknown event type '{kind[:64]}'", "unknown_event", "type")
        await handlers[kind](event)

    # -- client events -------------------------------------------------------------------

    async def _update(self, event: dict[str, Any]) -> None:
        session = event.get("session")
        if not isinstance(session, dict):
            raise SessionError("session.update needs a 'session' object", param="session")
        audio_in = ((session.get("audio") or {}).get("input")) or {}
        # the beta shape had these at the top level
        fmt = audio_in.get("format", session.get("input_audio_format"))
        trans = audio_in.get("transcription", session.get("input_audio_transcription"))
        turn = audio_in.get("turn_detection", session.get("turn_detection", "keep"))
        if fmt is not None:
            self._set_format(fmt)
        if isinstance(trans, dict):
            if trans.get("model"):
                await self._set_model(str(trans["model"]))
            self.language = trans.get("language") or None
            self.prompt = trans.get("prompt") or None
        if turn != "keep":
            self._set_turns(turn)
        await self.send("session.updated", session=self.describe())

    def _set_format(self, fmt: Any) -> None:
        kind = fmt.get("type") if isinstance(fmt, dict) else {"pcm16": "audio/pcm",
               "g711_ulaw": "audio/pcmu", "g711_alaw": "audio/pcma"}.get(str(fmt))  # fmt: skip
        rate = fmt.get("rate", RATES.get(kind or "", (0,))[0]) if isinstance(fmt, dict) else None
        rates = RATES.get(kind or "")
        if rates is None:
            raise SessionError(f"audio format {fmt!r} is not supported", param="audio.input.format")
        rate = rate or rates[0]
        if rate not in rates:
            raise SessionError(f"{kind} at {rate} Hz is not supported (use {rates})",
                               param="audio.input.format.rate")  # fmt: skip
        self.format, self.rate = str(kind), int(rate)

    async def _set_model(self, name: str) -> None:
        prep = await prepare_inputs(self.state, name, Inputs(audio=1))  # a chat model: refused
        self.model, self.prep = name, prep

    def _set_turns(self, turn: Any) -> None:
        if turn is None:
            self.detection = None
        elif isinstance(turn, dict) and turn.get("type", "server_vad") == "server_vad":
            d = TurnDetection()
            self.detection = TurnDetection(
                float(turn.get("threshold", d.threshold)),
                int(turn.get("prefix_padding_ms", d.prefix_padding_ms)),
                int(turn.get("silence_duration_ms", d.silence_duration_ms)),
            )
        else:
            raise SessionError("turn_detection: only server_vad or null", param="turn_detection")
        self.turns = TurnTaker(self.detection)

    async def _append(self, event: dict[str, Any]) -> None:
        data = event.get("audio")
        if not isinstance(data, str):
            raise SessionError("input_audio_buffer.append needs 'audio' (base64)", param="audio")
        if len(data) > MAX_APPEND_BYTES:
            raise SessionError("one append may carry at most 15 MiB", "buffer_too_large", "audio")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise SessionError("'audio' is not valid base64", "invalid_base64", "audio") from None
        await self._events(self.turns.append(self._samples(raw)))
        self._maybe_early()
        self._maybe_partial()

    async def _commit(self, _event: dict[str, Any]) -> None:
        events = self.turns.commit()
        if not any(isinstance(e, Committed) for e in events):
            raise SessionError("the input audio buffer is empty", "input_audio_buffer_commit_empty")
        await self._events(events)

    async def _clear(self, _event: dict[str, Any]) -> None:
        self.turns.clear()
        await self.send("input_audio_buffer.cleared")

    # -- audio, turns, transcripts -----------------------------------------------------------

    def _samples(self, raw: bytes) -> np.ndarray:
        from mlxk.media.audio import resample
        from mlxk.media.g711 import alaw_to_float, ulaw_to_float

        if self.format == "audio/pcmu":
            x = ulaw_to_float(raw)
        elif self.format == "audio/pcma":
            x = alaw_to_float(raw)
        else:
            x = np.frombuffer(raw[: len(raw) // 2 * 2], "<i2").astype(np.float32) / 32768.0
        return resample(x, self.rate, 16_000) if self.rate != 16_000 else x

    async def _events(self, events: list[Any]) -> None:
        for e in events:
            if isinstance(e, SpeechStarted):
                await self.send("input_audio_buffer.speech_started", item_id=e.item_id,
                                audio_start_ms=e.audio_start_ms)  # fmt: skip
            elif isinstance(e, SpeechStopped):
                await self.send("input_audio_buffer.speech_stopped", item_id=e.item_id,
                                audio_end_ms=e.audio_end_ms)  # fmt: skip
            elif isinstance(e, Committed):
                await self.send("input_audio_buffer.committed", item_id=e.item_id,
                                previous_item_id=e.previous_item_id)  # fmt: skip
                await self.send("conversation.item.added", previous_item_id=e.previous_item_id,
                                item=_item(e.item_id))  # fmt: skip
                self.partial_at = 0
                await self.pending.put(e)

    def _maybe_early(self) -> None:
        """When the speaker pauses, decode the turn so far: if the pause becomes the end of
        the turn, its text is ready when the VAD's silence is over (the silence adds no
        words); if speech resumes, that decode is dropped."""
        t = self.turns
        item = t.item
        if item is None or self.prep is None or self.detection is None:
            return
        pause_s = min(0.3, self.detection.silence_duration_ms / 2000)
        if t.in_speech and t.silence >= pause_s and item not in self.early:
            self.early[item] = asyncio.create_task(self._transcript(t.open_samples))
        elif t.in_speech and t.silence == 0.0 and item in self.early:
            self.early.pop(item).cancel()

    def _maybe_partial(self) -> None:
        item, heard = self.turns.item, self.turns.turn_len
        busy = (self.partial is not None and not self.partial.done()) or bool(self.early)
        if item is None or busy or self.prep is None:
            return
        if heard - self.partial_at < PARTIAL_EVERY_S * 16_000:
            return
        self.partial_at = heard  # the turn's frames are joined only when a decode starts
        self.partial = asyncio.create_task(self._partial(item, self.turns.open_samples))

    async def _partial(self, item: str, samples: np.ndarray) -> None:
        """Re-decode the open turn; send what extends the text already sent for it."""
        try:
            text = await self._transcript(samples)
        except MlxkError:
            return
        sent = self.partial_text.get(item, "")
        more = _extension(sent, text)
        if more and self.turns.item == item:
            self.partial_text[item] = sent + more
            await self.send("conversation.item.input_audio_transcription.delta",
                            item_id=item, content_index=0, delta=more)  # fmt: skip

    async def _transcribe_turns(self) -> None:
        while (turn := await self.pending.get()) is not None:
            await self._final(turn)

    async def _final(self, turn: Committed) -> None:
        seconds = round(len(turn.samples) / 16_000, 3)
        try:
            if self.prep is None:
                raise SessionError("no transcription model: send session.update with "
                                   "audio.input.transcription.model", param="model")  # fmt: skip
            early = self.early.pop(turn.item_id, None)
            if early is not None and not early.cancelled():
                text = await early  # decoded in the pause that ended the turn
            else:
                text = await self._transcript(turn.samples)
        except (MlxkError, SessionError) as exc:
            message = getattr(exc, "message", str(exc))
            await self.send("conversation.item.input_audio_transcription.failed",
                            item_id=turn.item_id, content_index=0,
                            error={"type": "transcription_error", "message": message})  # fmt: skip
            return
        more = _extension(self.partial_text.pop(turn.item_id, ""), text)
        if more:
            await self.send("conversation.item.input_audio_transcription.delta",
                            item_id=turn.item_id, content_index=0, delta=more)  # fmt: skip
        await self.send("conversation.item.input_audio_transcription.completed",
                        item_id=turn.item_id, content_index=0, transcript=text,
                        usage={"type": "duration", "seconds": seconds})  # fmt: skip
        await self.send("conversation.item.done", item=_item(turn.item_id, text))

    async def _transcript(self, samples: np.ndarray) -> str:
        assert self.prep is not None
        opts = RunOptions(audio=(samples,), language=self.language, initial_prompt=self.prompt)
        sink = AsyncSink(asyncio.get_running_loop())
        start_transcription(self.state.runtime, self.prep, opts, samples, sink)
        events: list[Any] = []
        try:
            while (event := await sink.queue.get()) is not DONE:
                if isinstance(event, BaseException):
                    raise event
                events.append(event)
        except asyncio.CancelledError:
            sink.cancel()  # the engine drops it at its next step
            raise
        return fold_run(events, opts).text

    # -- sending ------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        turn = None if self.detection is None else {
            "type": "server_vad", "threshold": self.detection.threshold,
            "prefix_padding_ms": self.detection.prefix_padding_ms,
            "silence_duration_ms": self.detection.silence_duration_ms,
        }  # fmt: skip
        fmt: dict[str, Any] = {"type": self.format}
        if self.format == "audio/pcm":
            fmt["rate"] = self.rate
        return {
            "type": "transcription", "id": self.id, "object": "realtime.transcription_session",
            "audio": {"input": {
                "format": fmt, "turn_detection": turn, "noise_reduction": None,
                "transcription": {"model": self.model, "language": self.language,
                                  "prompt": self.prompt},
            }},
        }  # fmt: skip

    async def send(self, kind: str, **fields: Any) -> None:
        body = json.dumps({"type": kind, "event_id": _event_id(), **fields})
        # a client that went away: the loop ends at its next receive
        async with self.send_lock:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await self.ws.send_text(body)

    async def error(self, message: str, code: str, param: str | None = None) -> None:
        await self.send("error", error={"type": "invalid_request_error", "code": code,
                                        "message": message, "param": param})  # fmt: skip


def _words(text: str) -> list[str]:
    return [w.strip(".,!?;:\"'").lower() for w in text.split()]


def _extension(sent: str, text: str) -> str:
    """What ``text`` adds to what was already sent, word by word: a re-decode often changes
    case or punctuation of words already sent ("returned" → "Returned,"), which must not
    stop the partials; deltas only append, the completed event carries the final text."""
    old, new = _words(sent), text.split()
    if len(new) <= len(old) or _words(" ".join(new[: len(old)])) != old:
        return ""
    rest = " ".join(new[len(old) :])
    return rest if not sent else " " + rest


def _item(item_id: str, transcript: str | None = None) -> dict[str, Any]:
    return {
        "id": item_id, "object": "realtime.item", "type": "message", "role": "user",
        "status": "completed", "content": [{"type": "input_audio", "transcript": transcript}],
    }  # fmt: skip

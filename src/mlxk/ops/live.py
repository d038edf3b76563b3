"""Live speech: audio arrives in pieces, turns come out — for the Realtime WebSocket session
and `mlxk run --live` alike. No I/O here: the edges feed samples and send the events.

Turn detection (``server_vad``) runs Silero VAD over 32 ms frames: speech starts when a
frame's probability reaches ``threshold`` (the turn keeps ``prefix_padding_ms`` of audio
before it), and stops after ``silence_duration_ms`` below ``threshold - 0.15`` (hysteresis,
as Silero's own iterator). A turn longer than ``max_turn_s`` is cut at its quietest recent
frame. Without turn detection, the caller commits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

RATE = 16_000
FRAME_S = 512 / RATE


@dataclass(frozen=True)
class TurnDetection:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500


@dataclass(frozen=True)
class SpeechStarted:
    item_id: str
    audio_start_ms: int


@dataclass(frozen=True)
class SpeechStopped:
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True)
class Committed:
    item_id: str
    previous_item_id: str | None
    samples: np.ndarray = field(repr=False)


LiveEvent = SpeechStarted | SpeechStopped | Committed


class TurnTaker:
    """Samples in (16 kHz float32), turn events out."""

    def __init__(self, detection: TurnDetection | None, *, max_turn_s: float = 30.0) -> None:
        self.detection = detection
        self.max_turn = round(max_turn_s * RATE)
        self.vad = None
        if detection is not None:
            from mlxk.backends.vad import VadStream

            self.vad = VadStream()
        self.prefix: deque[np.ndarray] = deque()
        self.turn: list[np.ndarray] = []
        self.turn_len = 0  # samples in ``turn``
        self.in_speech = False
        self.silence = 0.0
        self.received = 0  # samples so far
        self.scored = 0  # samples the VAD has seen
        self.item: str | None = None
        self.last_item: str | None = None
        self.count = 0
        self._carry = np.zeros(0, np.float32)

    @property
    def open_samples(self) -> np.ndarray:
        """The audio of the turn being spoken (for partial transcripts)."""
        return np.concatenate(self.turn) if self.turn else np.zeros(0, np.float32)

    def append(self, samples: np.ndarray) -> list[LiveEvent]:
        self.received += len(samples)
        if self.vad is None:
            self.turn.append(samples)
            self.turn_len += len(samples)
            if self.item is None:
                self.item = self._new_id()
            return self._cut_if_long()
        return self._detect(samples)

    def commit(self) -> list[LiveEvent]:
        """The buffered audio as a turn (manual commits, or the end of the stream)."""
        events: list[LiveEvent] = []
        if self.in_speech and self.item is not None:
            events.append(SpeechStopped(self.item, self._ms(self.received)))
        return events + self._committed()

    def clear(self) -> None:
        self.turn, self.in_speech, self.silence, self.item = [], False, 0.0, None
        self.turn_len = 0

    def _detect(self, samples: np.ndarray) -> list[LiveEvent]:
        assert self.vad is not None
        probs = self.vad.feed(samples)
        # the VAD scores whole 512-sample frames and keeps the remainder for the next call
        self._carry = np.concatenate([self._carry, samples])
        frames = [self._carry[i * 512 : (i + 1) * 512] for i in range(len(probs))]
        self._carry = self._carry[len(probs) * 512 :]
        events: list[LiveEvent] = []
        for prob, frame in zip(probs, frames, strict=True):
            events += self._frame(prob, frame)
        return events

    def _frame(self, prob: float, frame: np.ndarray) -> list[LiveEvent]:
        det = self.detection
        assert det is not None
        self.scored += len(frame)
        if not self.in_speech:
            self.prefix.append(frame)
            while len(self.prefix) * FRAME_S * 1000 > det.prefix_padding_ms + FRAME_S * 1000:
                self.prefix.popleft()
            if prob < det.threshold:
                return []
            self.in_speech, self.silence = True, 0.0
            self.turn = list(self.prefix)
            self.turn_len = sum(len(f) for f in self.turn)
            self.prefix.clear()
            self.item = self._new_id()
            start = self.scored - self.turn_len
            return [SpeechStarted(self.item, self._ms(max(0, start)))]
        self.turn.append(frame)
        self.turn_len += len(frame)
        self.silence = self.silence + FRAME_S if prob < det.threshold - 0.15 else 0.0
        if self.silence * 1000 >= det.silence_duration_ms:
            assert self.item is not None
            stopped = SpeechStopped(self.item, self._ms(self.scored - round(self.silence * RATE)))
            self.in_speech = False
            return [stopped, *self._committed()]
        return self._cut_if_long()

    def _cut_if_long(self) -> list[LiveEvent]:
        if self.turn_len < self.max_turn:  # a running count: this runs for every frame
            return []
        was_speaking = self.in_speech
        events = self._committed()
        if was_speaking:  # the speech goes on in a new turn
            self.in_speech, self.item = True, self._new_id()
            events.append(SpeechStarted(self.item, self._ms(self.scored)))
        return events

    def _committed(self) -> list[LiveEvent]:
        if not self.turn or self.item is None:
            self.clear()
            return []
        event = Committed(self.item, self.last_item, np.concatenate(self.turn))
        self.last_item = self.item
        self.clear()
        return [event]

    def _new_id(self) -> str:
        self.count += 1
        return f"item_{self.count:04d}"

    def _ms(self, samples: int) -> int:
        return round(samples * 1000 / RATE)


def pcm_chunks(stream: BinaryIO, block: int = 3200) -> Iterator[np.ndarray]:
    """16 kHz mono float samples from a byte stream as it arrives: a WAV (PCM16, any rate
    and channel count) or headerless s16le at 16 kHz mono."""
    head = stream.read(12)
    rate, channels = RATE, 1
    rest = b""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        rate, channels, rest = _wav_header(stream)
    else:
        rest = head
    carry = rest
    while True:
        data = stream.read(block)
        if not data and not carry:
            return
        data, carry = carry + data, b""
        frame = 2 * channels
        usable = len(data) // frame * frame
        data, carry = data[:usable], data[usable:]
        if not data:
            if not carry:
                return
            continue
        x = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
        if channels > 1:
            x = x.reshape(-1, channels).mean(axis=1)
        if rate != RATE:
            from mlxk.media.audio import resample

            x = resample(x, rate, RATE)
        yield x


def _wav_header(stream: BinaryIO) -> tuple[int, int, bytes]:
    """Read chunks up to "data": (rate, channels, bytes already read past the header)."""
    import struct

    from mlxk.errors import MediaError

    rate = channels = 0
    while True:
        head = stream.read(8)
        if len(head) < 8:
            raise MediaError("the WAV stream ended before its data")
        kind, size = head[:4], struct.unpack("<I", head[4:])[0]
        if kind == b"data":
            if not rate:
                raise MediaError("the WAV stream has no fmt chunk before its data")
            return rate, channels, b""
        body = stream.read(size + (size & 1))
        if kind == b"fmt ":
            tag, channels, rate = struct.unpack("<HHI", body[:8])
            bits = struct.unpack("<H", body[14:16])[0]
            if tag not in (1, 0xFFFE) or bits != 16:
                raise MediaError("a live WAV stream must be 16-bit PCM")


def live_transcripts(
    transcribe: Callable[[np.ndarray], str], chunks: Iterator[np.ndarray],
    detection: TurnDetection | None, partial: Callable[[str], None] | None = None,
    every_s: float = 1.5,
) -> Iterator[str]:  # fmt: skip
    """The text of each turn as it completes (the end of the stream commits the last one);
    ``partial`` gets the open turn re-decoded after every ``every_s`` of new speech."""
    turns = TurnTaker(detection)
    decoded = 0
    for samples in chunks:
        for event in turns.append(samples):
            if isinstance(event, Committed):
                decoded = 0
                yield transcribe(event.samples)
        if partial is not None and turns.in_speech and turns.turn_len - decoded >= every_s * RATE:
            decoded = turns.turn_len  # join the turn's frames only when it is decoded
            partial(transcribe(turns.open_samples))
    for event in turns.commit():
        if isinstance(event, Committed) and len(event.samples) >= RATE // 4:
            yield transcribe(event.samples)

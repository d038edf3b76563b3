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
from dataclasses import dataclass, field

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
            self.prefix.clear()
            self.item = self._new_id()
            start = self.scored - sum(len(f) for f in self.turn)
            return [SpeechStarted(self.item, self._ms(max(0, start)))]
        self.turn.append(frame)
        self.silence = self.silence + FRAME_S if prob < det.threshold - 0.15 else 0.0
        if self.silence * 1000 >= det.silence_duration_ms:
            assert self.item is not None
            stopped = SpeechStopped(self.item, self._ms(self.scored - round(self.silence * RATE)))
            self.in_speech = False
            return [stopped, *self._committed()]
        return self._cut_if_long()

    def _cut_if_long(self) -> list[LiveEvent]:
        if sum(len(f) for f in self.turn) < self.max_turn:
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

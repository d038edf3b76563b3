"""Transcript writers shared by the CLI and the server: text, json, verbose_json, srt, vtt."""

from __future__ import annotations

import json
from typing import Any, Literal, TextIO

from mlxk.types import Segment, Transcript

TranscriptFormat = Literal["text", "json", "verbose_json", "srt", "vtt"]
FORMATS: tuple[str, ...] = ("text", "json", "verbose_json", "srt", "vtt")


def _timestamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


Cue = tuple[float, float, str]


def _cue(seg: Segment, last_end: float, duration: float) -> Cue | None:
    """A segment as a cue, clamped into the clip and forced to move forward in time."""
    text = seg.text.strip()
    if not text:
        return None
    start = min(max(seg.start, last_end), duration)
    end = min(max(seg.end, start + 0.001), duration) if duration else seg.end
    return (start, max(end, start), text)


def _cues(t: Transcript) -> list[Cue]:
    cues: list[Cue] = []
    last_end = 0.0
    for seg in t.segments:
        cue = _cue(seg, last_end, t.duration)
        if cue is not None:
            cues.append(cue)
            last_end = cue[1]
    return cues


def _srt_block(i: int, cue: Cue) -> str:
    a, b, text = cue
    return f"{i}\n{_timestamp(a, ',')} --> {_timestamp(b, ',')}\n{text}\n"


def _vtt_block(cue: Cue) -> str:
    a, b, text = cue
    return f"{_timestamp(a, '.')} --> {_timestamp(b, '.')}\n{text}\n"


def to_srt(t: Transcript) -> str:
    return "\n".join(_srt_block(i, cue) for i, cue in enumerate(_cues(t), start=1))


def to_vtt(t: Transcript) -> str:
    return "WEBVTT\n\n" + "\n".join(_vtt_block(cue) for cue in _cues(t))


LIVE_FORMATS: tuple[str, ...] = ("text", "srt", "vtt")


class CueWriter:
    """Writes a transcript cue by cue as windows are decoded (text, srt, vtt): the same
    bytes ``render`` writes for the whole transcript, only earlier."""

    def __init__(self, fmt: str, stream: TextIO) -> None:
        if fmt not in LIVE_FORMATS:
            raise ValueError(f"format {fmt!r} is written at the end, not cue by cue")
        self.fmt, self.stream = fmt, stream
        self.count, self.last_end = 0, 0.0
        self.wrote_text = False
        if fmt == "vtt":
            self._write("WEBVTT\n\n")

    def add(self, event: Any) -> None:
        """A window (``segments`` and ``duration``) or a chunk of text (omni models)."""
        if not hasattr(event, "segments"):
            if self.fmt == "text" and event.text:
                self._write(event.text.lstrip() if not self.wrote_text else event.text)
                self.wrote_text = True
            return
        for seg in event.segments:
            cue = _cue(seg, self.last_end, event.duration)
            if cue is not None:
                self._cue(cue)

    def _cue(self, cue: Cue) -> None:
        self.count += 1
        self.last_end = cue[1]
        sep = "\n" if self.count > 1 else ""
        if self.fmt == "text":
            self._write((" " if self.wrote_text else "") + cue[2])
            self.wrote_text = True
        elif self.fmt == "srt":
            self._write(sep + _srt_block(self.count, cue))
        else:
            self._write(sep + _vtt_block(cue))

    def finish(self, t: Transcript) -> None:
        if self.fmt == "text":
            self._write("\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _segment_dict(seg: Segment) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": seg.id,
        "start": round(seg.start, 3),
        "end": round(seg.end, 3),
        "text": seg.text,
    }
    if seg.avg_logprob is not None:
        out["avg_logprob"] = seg.avg_logprob
    if seg.no_speech_prob is not None:
        out["no_speech_prob"] = seg.no_speech_prob
    return out


def verbose_dict(t: Transcript) -> dict[str, Any]:
    words = [
        {"word": w.word.strip(), "start": round(w.start, 3), "end": round(w.end, 3)}
        for seg in t.segments
        for w in seg.words
    ]
    return {
        "task": t.task,
        "language": t.language,
        "duration": round(t.duration, 3),
        "text": t.text,
        "segments": [_segment_dict(s) for s in t.segments],
        "words": words,
    }


def render(t: Transcript, fmt: str) -> str:
    """The transcript as the text of a file in ``fmt`` (what the server returns as the body)."""
    if fmt == "text":
        return t.text.strip() + "\n"
    if fmt == "json":
        return json.dumps({"text": t.text.strip()}, ensure_ascii=False) + "\n"
    if fmt == "verbose_json":
        return json.dumps(verbose_dict(t), ensure_ascii=False) + "\n"
    if fmt == "srt":
        return to_srt(t)
    if fmt == "vtt":
        return to_vtt(t)
    raise ValueError(f"unknown transcript format {fmt!r}")

"""Transcript writers shared by the CLI and the server: text, json, verbose_json, srt, vtt."""

from __future__ import annotations

import json
from typing import Any, Literal

from mlxk.types import Segment, Transcript

TranscriptFormat = Literal["text", "json", "verbose_json", "srt", "vtt"]
FORMATS: tuple[str, ...] = ("text", "json", "verbose_json", "srt", "vtt")


def _timestamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cues(t: Transcript) -> list[tuple[float, float, str]]:
    """Segments as cues, clamped into the clip and forced to move forward in time."""
    cues: list[tuple[float, float, str]] = []
    last_end = 0.0
    for seg in t.segments:
        text = seg.text.strip()
        if not text:
            continue
        start = min(max(seg.start, last_end), t.duration)
        end = min(max(seg.end, start + 0.001), t.duration) if t.duration else seg.end
        end = max(end, start)
        cues.append((start, end, text))
        last_end = end
    return cues


def to_srt(t: Transcript) -> str:
    blocks = [
        f"{i}\n{_timestamp(a, ',')} --> {_timestamp(b, ',')}\n{text}\n"
        for i, (a, b, text) in enumerate(_cues(t), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(t: Transcript) -> str:
    blocks = [f"{_timestamp(a, '.')} --> {_timestamp(b, '.')}\n{text}\n" for a, b, text in _cues(t)]
    return "WEBVTT\n\n" + "\n".join(blocks)


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

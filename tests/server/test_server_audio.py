"""/v1/audio/transcriptions and /translations with real Whisper models (tiny.en and base)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import jiwer
import pytest
from tests.server.conftest import SPEECH, Server

pytestmark = pytest.mark.slow

SHORT = "a_man_said_to_the_universe_sir_i_exist"
LONG = "having_returned_to_the_royal_cavern"


def _reference(stem: str) -> str:
    with (SPEECH / "transcripts.tsv").open(encoding="utf-8") as fh:
        rows = {r["file"]: r["reference_text"] for r in csv.DictReader(fh, delimiter="\t")}
    return rows[f"{stem}.wav"]


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def wer(stem: str, hypothesis: str) -> float:
    return float(jiwer.wer(_norm(_reference(stem)), _norm(hypothesis)))


@pytest.fixture(scope="module")
def client(server: Server) -> Any:
    return server.openai()


def _transcribe(client: Any, path: Path, **kw: Any) -> Any:
    with path.open("rb") as fh:
        return client.audio.transcriptions.create(model="whisper-tiny.en", file=fh, **kw)


@pytest.mark.parametrize(("stem", "limit", "ext"), [(SHORT, 0.05, "wav"), (LONG, 0.15, "mp3")])
def test_transcription_word_error_rate(client: Any, stem: str, limit: float, ext: str) -> None:
    result = _transcribe(client, SPEECH / f"{stem}.{ext}")
    assert wer(stem, result.text) <= limit, result.text


def test_every_response_format(client: Any) -> None:
    clip = SPEECH / f"{SHORT}.wav"
    text = _transcribe(client, clip, response_format="text")
    assert isinstance(text, str) and wer(SHORT, text) <= 0.05
    verbose = _transcribe(
        client, clip, response_format="verbose_json", timestamp_granularities=["word", "segment"]
    )
    assert verbose.language == "en" and verbose.duration == pytest.approx(4.65, abs=0.05)
    assert verbose.segments and verbose.segments[0].start == pytest.approx(0.0, abs=0.5)
    words = [w.word for w in verbose.words]
    assert _norm(" ".join(words)) == _norm(verbose.text)
    assert all(a.start <= b.start for a, b in zip(verbose.words, verbose.words[1:], strict=False))
    srt = _transcribe(client, clip, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:0") and "universe" in srt.lower()
    vtt = _transcribe(client, clip, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ") and "universe" in vtt.lower()


def test_json_is_only_text_and_segments_without_words_unless_asked(server: Server) -> None:
    with server.client() as http, (SPEECH / f"{SHORT}.mp3").open("rb") as fh:
        r = http.post(
            "/v1/audio/transcriptions",
            files={"file": ("clip.mp3", fh, "audio/mpeg")},
            data={"model": "whisper-tiny.en", "response_format": "verbose_json"},
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert "words" not in body and body["segments"]
    assert wer(SHORT, body["text"]) <= 0.05


def test_streamed_transcription_sends_deltas_segments_then_done(client: Any) -> None:
    with (SPEECH / f"{SHORT}.wav").open("rb") as fh:
        events = list(
            client.audio.transcriptions.create(model="whisper-tiny.en", file=fh, stream=True)
        )
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and kinds.count("transcript.text.done") == 1
    # each segment: its delta, then the segment with its times (as OpenAI's stream sends them)
    body = kinds[:-1]
    assert body and body == ["transcript.text.delta", "transcript.text.segment"] * (len(body) // 2)
    segments = [e for e in events if e.type == "transcript.text.segment"]
    assert all(0.0 <= s.start <= s.end <= 4.7 for s in segments)
    deltas = "".join(e.delta for e in events if e.type == "transcript.text.delta")
    assert _norm(deltas) == _norm(events[-1].text)
    assert wer(SHORT, events[-1].text) <= 0.05


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the client's own warning
def test_translation_with_whisper_base(client: Any) -> None:
    with (SPEECH / f"{SHORT}.wav").open("rb") as fh:
        result = client.audio.translations.create(model="whisper-base", file=fh)
    # English speech translated to English: the words survive.
    assert wer(SHORT, result.text) <= 0.3, result.text


def test_translation_on_english_only_model_is_a_400_with_reason(server: Server) -> None:
    with server.client() as http, (SPEECH / f"{SHORT}.wav").open("rb") as fh:
        r = http.post(
            "/v1/audio/translations",
            files={"file": ("a.wav", fh, "audio/wav")},
            data={"model": "whisper-tiny.en"},
        )
    assert r.status_code == 400
    err = r.json()["error"]
    assert "translat" in err["message"] and "whisper-base" in err["message"]


def test_undecodable_upload_is_a_400_and_text_model_refuses_audio(server: Server) -> None:
    with server.client() as http:
        r = http.post(
            "/v1/audio/transcriptions",
            files={"file": ("a.wav", b"not audio")},
            data={"model": "whisper-tiny.en"},
        )
        assert r.status_code == 400 and "text" in r.json()["error"]["message"]
        wav = (SPEECH / f"{SHORT}.wav").read_bytes()
        r = http.post(
            "/v1/audio/transcriptions", files={"file": ("a.wav", wav)}, data={"model": "smollm2"}
        )
        assert r.status_code == 400 and "audio" in r.json()["error"]["message"]
        assert json.loads(r.text)["error"]["type"] == "invalid_request_error"

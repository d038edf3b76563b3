"""One engine for the CLI and the server: same request, same answer; transcripts that stream;
chats that are not stalled by a long transcription. Real models, a real `mlxk serve`.

Nothing here asserts a duration: streaming is shown by the order of events (what the client
had received while the server still reported the work as running)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.longspeech import long_speech, wav_bytes
from tests.helpers.realmodels import wer
from tests.server.conftest import LIMIT_ENV, SPEECH, Server, base_env

pytestmark = pytest.mark.slow
PROMPT = "Name three colours and one animal."
SHORT = SPEECH / "a_man_said_to_the_universe_sir_i_exist.wav"
SRC = Path(__file__).resolve().parents[2] / "src" / "mlxk"


def _cli(model_home: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "mlxk.cli.main", "run", *args, "--json"],
        env=base_env(model_home) | LIMIT_ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data: dict[str, Any] = json.loads(proc.stdout)["data"]
    return data


def test_cli_and_server_give_the_same_text_with_the_same_defaults(
    server: Server, model_home: Path
) -> None:
    cli = _cli(model_home, "smollm2", PROMPT, "--temperature", "0", "--max-tokens", "24")
    body = {"model": "smollm2", "messages": [{"role": "user", "content": PROMPT}],
            "temperature": 0, "max_tokens": 24}  # fmt: skip
    with server.client() as http:
        r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == cli["response"]
    assert cli["tokens_generated"] == r.json()["usage"]["completion_tokens"] == 24
    # The shared defaults (mlx-knife's), not written by either request: top_p 0.9, penalty 1.1.
    assert (cli["sampling"]["top_p"], cli["sampling"]["repetition_penalty"]) == (0.9, 1.1)
    assert re.search(r"backend=mlx-lm .*top_p=0.9 repetition_penalty=1.1", server.output())


def test_cli_and_server_give_the_same_transcript_and_segments(
    server: Server, model_home: Path
) -> None:
    cli = _cli(model_home, "whisper-tiny.en", "--audio", str(SHORT), "--format", "verbose_json")
    with server.client() as http, SHORT.open("rb") as fh:
        r = http.post(
            "/v1/audio/transcriptions", files={"file": ("clip.wav", fh, "audio/wav")},
            # the CLI's verbose_json carries word times: the same request asks for them
            data={"model": "whisper-tiny.en", "response_format": "verbose_json",
                  "timestamp_granularities[]": ["word", "segment"]},
        )  # fmt: skip
    assert r.status_code == 200, r.text
    mine, theirs = cli["results"][0], r.json()
    assert mine["words"] == theirs["words"] and theirs["words"]
    assert (
        mine["text"] == theirs["text"]
        and wer("a man said to the universe sir i exist", theirs["text"]) <= 0.05
    )
    assert mine["segments"] == theirs["segments"]
    assert (mine["language"], mine["duration"]) == (theirs["language"], theirs["duration"])


def test_same_prompt_and_temperature_reach_mlx_vlm_from_both_edges(
    server: Server, model_home: Path
) -> None:
    cli = _cli(model_home, "tiny-omni", "--audio", str(SHORT), "--max-tokens", "4")
    used = cli["request"]  # what the vision runner handed mlx-vlm
    assert (used["prompt"], used["temperature"]) == (
        "Transcribe what is spoken in this audio.",
        0.2,
    )
    with server.client() as http, SHORT.open("rb") as fh:
        r = http.post(
            "/v1/audio/transcriptions", files={"file": ("clip.wav", fh, "audio/wav")},
            data={"model": "tiny-omni"},
        )  # fmt: skip
    assert r.status_code == 200, r.text
    line = f"backend=mlx-vlm prompt={used['prompt']!r} temperature={used['temperature']:g}"
    assert line in server.output()


# -- streaming ---------------------------------------------------------------------------------


class Recorder:
    """Every event of every stream, in the order the clients received them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, float, dict[str, Any]]] = []

    def add(self, who: str, payload: dict[str, Any]) -> None:
        with self.lock:
            self.events.append((who, time.perf_counter(), payload))

    def index(self, who: str, kind: str) -> int:
        return next(i for i, (w, _t, p) in enumerate(self.events) if w == who and _kind(p) == kind)


def _kind(payload: dict[str, Any]) -> str:
    return str(payload.get("type") or payload.get("object") or "")


def _sse(
    server: Server, path: str, rec: Recorder, who: str, on_first: Any = None, **kw: Any
) -> None:
    with server.client() as http, http.stream("POST", path, **kw) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            rec.add(who, json.loads(line[6:]))
            if on_first is not None:
                on_first()
                on_first = None


def _transcribe_stream(server: Server, rec: Recorder, wav: bytes, on_first: Any = None) -> None:
    _sse(
        server, "/v1/audio/transcriptions", rec, "stt", on_first,
        files={"file": ("long.wav", wav, "audio/wav")},
        data={"model": "whisper-tiny.en", "stream": "true"},
    )  # fmt: skip


def test_a_long_transcription_streams_window_by_window(server: Server) -> None:
    samples, reference = long_speech(60.0)
    rec = Recorder()
    active: list[int] = []

    def still_running() -> None:  # asked when the first event arrived
        with server.client() as http:
            active.append(http.get("/v1/mlxk/stats").json()["active_sequences"])

    began = time.perf_counter()
    _transcribe_stream(server, rec, wav_bytes(samples), still_running)
    total = time.perf_counter() - began
    kinds = [_kind(p) for _w, _t, p in rec.events]
    assert kinds[-1] == "transcript.text.done"
    segments = [p for _w, _t, p in rec.events if _kind(p) == "transcript.text.segment"]
    done = [s["audio_done"] for s in segments]
    # several windows, sent as each was decoded: the first arrived while the rest was running
    assert done == sorted(done) and len(set(done)) >= 2 and active and active[0] >= 1
    assert all(s["start"] <= s["end"] <= s["audio_duration"] for s in segments)
    assert [s["id"] for s in segments] == [f"seg_{i}" for i in range(len(segments))]
    assert wer(reference, rec.events[-1][2]["text"]) <= 0.2
    times = [t - began for _w, t, p in rec.events if _kind(p) == "transcript.text.delta"]
    print(f"\n60 s clip: first delta at {times[0] / total:.0%} of {total:.1f} s, "
          f"deltas spread over {(times[-1] - times[0]) / total:.0%}")  # fmt: skip


def test_a_chat_is_not_stalled_by_a_long_transcription(server: Server) -> None:
    samples, _ref = long_speech(60.0)
    rec = Recorder()
    first_window = threading.Event()
    stt = threading.Thread(
        target=_transcribe_stream, args=(server, rec, wav_bytes(samples), first_window.set)
    )
    stt.start()
    assert first_window.wait(300), "the transcription never sent an event"
    body = {"model": "smollm2", "messages": [{"role": "user", "content": PROMPT}],
            "temperature": 0, "max_tokens": 8, "stream": True}  # fmt: skip
    _sse(server, "/v1/chat/completions", rec, "chat", json=body)
    stt.join(600)
    chat_tokens = [
        i for i, (w, _t, p) in enumerate(rec.events)
        if w == "chat" and p.get("choices") and p["choices"][0]["delta"].get("content")
    ]  # fmt: skip
    assert chat_tokens, "the chat produced no tokens"
    # the whole chat was answered while the transcription was still being decoded
    assert chat_tokens[-1] < rec.index("stt", "transcript.text.done")


def test_no_backend_dispatch_outside_backends() -> None:
    chain = re.compile(r"\bbackend\s+is\s+(not\s+)?Backend\.|Backend\.\w+\s*(==|!=)|==\s*Backend\.")
    found = [
        f"{path.relative_to(SRC)}:{n}"
        for edge in ("server", "cli", "ops")
        for path in (SRC / edge).rglob("*.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if chain.search(line)
    ]
    assert found == []
    # and no module-level model caches outside the pool
    state = re.compile(r"^_?[A-Z_]*LOADED\w*\s*[:=]|^_?(model|runner)s?\s*[:=]", re.M)
    holders = [
        str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if state.search(p.read_text("utf-8"))
    ]
    assert holders == []


def test_clients_closing_mid_transcription_leave_the_server_serving(server: Server) -> None:
    samples, _ref = long_speech(35.0)
    wav = wav_bytes(samples)
    for _ in range(10):
        with server.client() as http, http.stream(
            "POST", "/v1/audio/transcriptions", files={"file": ("x.wav", wav, "audio/wav")},
            data={"model": "whisper-tiny.en", "stream": "true"},
        ) as r:  # fmt: skip
            assert r.status_code == 200
            next(r.iter_lines())  # the first event, then hang up mid-transcription
    assert server.proc.poll() is None, server.output()
    with server.client() as http:
        r = http.post("/v1/chat/completions", json={
            "model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3})  # fmt: skip
    assert r.status_code == 200
    with server.client() as http:
        assert http.get("/v1/mlxk/stats").json()["cancelled"] >= 1

"""OpenAI Realtime transcription sessions through the official openai client against a real
`mlxk serve`: server_vad turns, partial text before each final, manual commits, bad input
answered with error events on a socket that stays usable, and the key rules."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from tests.helpers.realmodels import wer
from tests.server.conftest import API_KEY, SPEECH, Server

from mlxk.media.audio import resample

pytestmark = pytest.mark.slow
LONG = SPEECH / "having_returned_to_the_royal_cavern.wav"
SHORT = SPEECH / "a_man_said_to_the_universe_sir_i_exist.wav"


def _clip(path: Any) -> np.ndarray:
    samples, rate = sf.read(str(path), dtype="float32")
    assert rate == 16_000
    return samples


def _pcm24(samples: np.ndarray) -> bytes:
    x = np.clip(resample(samples, 16_000, 24_000), -1.0, 1.0)
    return (x * 32767).astype("<i2").tobytes()


def _session(model: str, turn: Any = "vad") -> dict[str, Any]:
    detection = {"type": "server_vad", "silence_duration_ms": 1000} if turn == "vad" else turn
    return {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 24000}, "transcription": {"model": model},
        "turn_detection": detection}}}}  # fmt: skip


def _connect(server: Server) -> Any:
    client: Any = server.openai()
    return client.realtime.connect(extra_query={"intent": "transcription"})


def _events(conn: Any, until: Any, timeout: float = 300) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until(out):
        out.append(json.loads(conn.recv_bytes()))
    return out


def _stream(conn: Any, pcm: bytes, speed: float = 2.0) -> None:
    step = 4800  # 100 ms of 24 kHz PCM16
    for i in range(0, len(pcm), step):
        conn.send({"type": "input_audio_buffer.append",
                   "audio": base64.b64encode(pcm[i : i + step]).decode()})  # fmt: skip
        time.sleep(0.1 / speed)


def _completed(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"].endswith("input_audio_transcription.completed")]


def test_server_vad_gives_two_turns_with_partials(server: Server) -> None:
    silence = np.zeros(32_000, np.float32)
    audio = np.concatenate([_clip(LONG), silence, _clip(SHORT), silence])
    with _connect(server) as conn:
        assert json.loads(conn.recv_bytes())["type"] == "session.created"
        conn.send(_session("whisper-tiny.en"))
        sender = threading.Thread(target=_stream, args=(conn, _pcm24(audio)))
        sender.start()
        events = _events(conn, lambda ev: len(_completed(ev)) >= 2)
        sender.join()
    kinds = [e["type"] for e in events]
    assert kinds.count("input_audio_buffer.speech_started") == 2
    assert kinds.count("input_audio_buffer.speech_stopped") == 2
    finals = _completed(events)
    assert len(finals) == 2 and all(f["usage"]["type"] == "duration" for f in finals)
    for f in finals:  # some partial text of each turn came before its final
        first_delta = next(i for i, e in enumerate(events)
                           if e["type"].endswith(".delta") and e["item_id"] == f["item_id"])  # fmt: skip
        assert first_delta < events.index(f)
    refs = [r for _p, _m, r, _d in __import__("tests.helpers.realmodels",
            fromlist=["speech_clips"]).speech_clips()]  # fmt: skip
    reference = " ".join(reversed(refs))  # the long clip was sent first
    assert wer(reference, " ".join(f["transcript"] for f in finals)) <= 0.2


def test_manual_commit_and_clear(server: Server) -> None:
    with _connect(server) as conn:
        conn.recv_bytes()
        conn.send(_session("whisper-tiny.en", None))
        _events(conn, lambda ev: ev and ev[-1]["type"] == "session.updated")
        _stream(conn, _pcm24(_clip(SHORT)), speed=50)
        conn.send({"type": "input_audio_buffer.commit"})
        events = _events(conn, lambda ev: len(_completed(ev)) >= 1)
        assert "universe" in _completed(events)[0]["transcript"].lower()
        _stream(conn, _pcm24(_clip(SHORT)[:16000]), speed=50)
        conn.send({"type": "input_audio_buffer.clear"})
        events = _events(conn, lambda ev: ev and ev[-1]["type"] == "input_audio_buffer.cleared")
        conn.send({"type": "input_audio_buffer.commit"})  # nothing left to commit
        err = _events(conn, lambda ev: ev and ev[-1]["type"] == "error")[-1]
        assert err["error"]["code"] == "input_audio_buffer_commit_empty"


BAD = [
    ("not json at all", "invalid_json"),
    (json.dumps({"type": "no.such.event"}), "unknown_event"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": "***not base64***"}), "invalid_base64"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": "A" * (16 * 1024 * 1024)}), "buffer_too_large"),
    (json.dumps(_session("smollm2")), "capability_mismatch"),
]  # fmt: skip


def test_bad_input_is_an_error_event_and_the_socket_stays_usable(server: Server) -> None:
    with _connect(server) as conn:
        conn.recv_bytes()
        for raw, code in BAD:
            conn.send_raw(raw) if hasattr(conn, "send_raw") else conn._connection.send(raw)  # type: ignore[attr-defined]
            err = _events(conn, lambda ev: ev and ev[-1]["type"] == "error")[-1]
            assert err["error"]["code"] == code, err
        conn.send(_session("whisper-tiny.en"))  # still usable
        assert _events(conn, lambda ev: ev and ev[-1]["type"] == "session.updated")


def test_a_wrong_or_missing_key_refuses_the_upgrade(secure_server: Server) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = secure_server.url.replace("http", "ws") + "/v1/realtime?intent=transcription"
    for headers in ({}, {"Authorization": "Bearer wrong-key-000000"}):
        with pytest.raises(InvalidStatus) as info:
            connect(url, additional_headers=headers)
        assert info.value.response.status_code in (401, 403)
    # browsers put the key in a subprotocol
    with connect(url, subprotocols=["realtime", f"openai-insecure-api-key.{API_KEY}"]) as ws:  # type: ignore[list-item]
        assert json.loads(ws.recv())["type"] == "session.created"


def test_faint_noise_completes_no_turn_with_words(server: Server) -> None:
    noise = (np.random.default_rng(5).standard_normal(5 * 16_000) * 0.003).astype(np.float32)
    with _connect(server) as conn:
        conn.recv_bytes()
        conn.send(_session("whisper-tiny.en"))
        _stream(conn, _pcm24(noise), speed=10)
        conn.send({"type": "input_audio_buffer.commit"})  # whatever is left counts as a turn
        events = _events(conn, lambda ev: ev and ev[-1]["type"] in (
            "error", "conversation.item.input_audio_transcription.completed"))  # fmt: skip
    kinds = [e["type"] for e in events]
    assert "input_audio_buffer.speech_started" not in kinds
    assert all(not e.get("transcript") for e in _completed(events))


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_twenty_sessions_are_served_or_refused_and_memory_comes_back(server: Server) -> None:
    first = _connect(server).__enter__()  # warm: one session, then measure
    first.recv_bytes()
    first.close()
    before = _rss_kb(server.proc.pid)
    conns, kinds = [], []
    for _ in range(20):
        conn = _connect(server).__enter__()
        conns.append(conn)
        kinds.append(json.loads(conn.recv_bytes()))
    served = [k for k in kinds if k["type"] == "session.created"]
    refused = [k for k in kinds if k["type"] == "error"]
    assert len(served) + len(refused) == 20 and served
    assert all(k["error"]["code"] == "too_many_sessions" for k in refused)
    for conn, kind in zip(conns, kinds, strict=True):
        if kind["type"] == "session.created":
            conn.send({"type": "input_audio_buffer.append",
                       "audio": base64.b64encode(b"\0" * 48_000).decode()})  # fmt: skip
    for conn in conns:
        conn.close()
    time.sleep(1.0)  # let the server notice the closes
    assert _rss_kb(server.proc.pid) <= before * 1.10

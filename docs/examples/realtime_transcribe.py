"""Stream a WAV file to `mlxk serve` as a live Realtime transcription session and print the
turns — with the official openai client (pip install 'openai[realtime]').

    mlxk serve --model whisper-tiny.en &
    python docs/examples/realtime_transcribe.py talk.wav
"""

import base64
import json
import sys
import threading
import time

import numpy as np
import soundfile as sf
import soxr
from openai import OpenAI

samples, rate = sf.read(sys.argv[1], dtype="float32", always_2d=True)
pcm = (np.clip(soxr.resample(samples.mean(axis=1), rate, 24000), -1, 1) * 32767).astype("<i2")
client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")

with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
    conn.send({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 24000},
        "transcription": {"model": "whisper-tiny.en"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}}})

    def send() -> None:  # 100 ms of audio every 100 ms, then a second of silence
        data = pcm.tobytes() + b"\0" * 48000
        for i in range(0, len(data), 4800):
            conn.send({"type": "input_audio_buffer.append",
                       "audio": base64.b64encode(data[i : i + 4800]).decode()})
            time.sleep(0.1)
        conn.send({"type": "input_audio_buffer.commit"})

    threading.Thread(target=send, daemon=True).start()
    while True:
        event = json.loads(conn.recv_bytes())
        if event["type"].endswith("input_audio_transcription.delta"):
            print("…", event["delta"], flush=True)
        elif event["type"].endswith("input_audio_transcription.completed"):
            print(event["transcript"], flush=True)
        elif event["type"] == "error" and event["error"]["code"] == "input_audio_buffer_commit_empty":
            break

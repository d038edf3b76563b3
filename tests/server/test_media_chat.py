"""Chat with images and audio: Whisper transcribes, omni/vision models get the media through
mlx-vlm, a text-only model refuses with a 400 before anything is loaded."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from PIL import Image
from tests.server.conftest import SPEECH, Server
from tests.server.test_server_audio import SHORT, wer

pytestmark = pytest.mark.slow


def _audio_part(ext: str) -> dict[str, Any]:
    data = base64.b64encode((SPEECH / f"{SHORT}.{ext}").read_bytes()).decode()
    return {"type": "input_audio", "input_audio": {"data": data, "format": ext}}


def png_url(size: tuple[int, int] = (64, 48)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _user(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(parts)}]


@pytest.mark.parametrize("ext", ["wav", "mp3"])
def test_input_audio_to_whisper_returns_the_transcript(server: Server, ext: str) -> None:
    client: Any = server.openai()
    r = client.chat.completions.create(model="whisper-tiny.en", messages=_user(_audio_part(ext)))
    assert r.choices[0].finish_reason == "stop"
    assert wer(SHORT, r.choices[0].message.content) <= 0.05


def test_input_audio_to_whisper_streamed(server: Server) -> None:
    client: Any = server.openai()
    chunks = list(
        client.chat.completions.create(
            model="whisper-tiny.en", stream=True, messages=_user(_audio_part("mp3"))
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert wer(SHORT, text) <= 0.05


def test_input_audio_to_omni_model_reaches_mlx_vlm(server: Server) -> None:
    client: Any = server.openai()
    r = client.chat.completions.create(
        model="tiny-omni",
        max_tokens=5,
        temperature=0,
        messages=_user({"type": "text", "text": "Transcribe this."}, _audio_part("wav")),
    )
    # Random weights: what proves the route is the prompt length (audio soft tokens) and counts.
    assert r.choices[0].finish_reason in ("length", "stop")
    assert 1 <= r.usage.completion_tokens <= 5
    text_only = client.chat.completions.create(
        model="tiny-omni",
        max_tokens=2,
        temperature=0,
        messages=_user({"type": "text", "text": "Transcribe this."}),
    )
    assert r.usage.prompt_tokens > text_only.usage.prompt_tokens + 10


def test_image_data_url_on_tiny_qwen2_vl(server: Server) -> None:
    client: Any = server.openai()
    image = {"type": "image_url", "image_url": {"url": png_url()}}
    r = client.chat.completions.create(
        model="tiny-qwen2-vl",
        max_tokens=4,
        temperature=0,
        messages=_user({"type": "text", "text": "What is this?"}, image),
    )
    assert r.choices[0].finish_reason in ("length", "stop") and r.usage.completion_tokens >= 1
    stream = client.chat.completions.create(
        model="tiny-qwen2-vl",
        max_tokens=3,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        messages=_user({"type": "text", "text": "What is this?"}, image),
    )
    chunks = list(stream)
    assert chunks[-1].usage.prompt_tokens == r.usage.prompt_tokens


@pytest.mark.parametrize(
    "part",
    [_audio_part("wav"), {"type": "image_url", "image_url": {"url": png_url()}}],
    ids=["audio", "image"],
)
def test_media_to_a_text_only_model_is_a_400(server: Server, part: dict[str, Any]) -> None:
    with server.client() as http:
        r = http.post("/v1/chat/completions", json={"model": "smollm2", "messages": _user(part)})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "capability_mismatch" and "smollm2" in err["message"]

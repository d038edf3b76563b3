"""Chat message parts → text messages, images and audio, with every limit checked early.

Sizes are checked from the base64 length before decoding; images are sniffed and their pixel
count read from the header before any pixel is decoded (media.image); audio is decoded with
the byte and duration limits enforced while decoding (media.audio). Decoding runs in a worker
thread so the event loop keeps answering.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlxk.config import Settings
from mlxk.errors import MediaError, MediaTooLargeError
from mlxk.media.audio import load_audio
from mlxk.media.image import LoadedImage, decode_data_url, load_image
from mlxk.server.errors import bad_param
from mlxk.server.options import ServerOptions
from mlxk.server.protocol import AudioPart, ChatMessage, ImagePart, TextPart

AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg", "opus", "m4a", "aac", "webm", "aiff")
AUDIO_RATE = 16_000


@dataclass
class ChatInputs:
    messages: list[dict[str, Any]]  # role + text content (+ tool_calls / tool_call_id)
    image_bytes: list[bytes] = field(default_factory=list)
    audio_bytes: list[bytes] = field(default_factory=list)


def _b64_audio(data: str, limit: int, index: int) -> bytes:
    param = f"input_audio[{index}].data"
    if len(data) * 3 // 4 > limit + 3:  # refuse on length alone, before decoding a byte
        raise MediaTooLargeError(
            f"{param}: audio is larger than the limit of {limit / 2**20:.4g} MiB",
            limit_bytes=limit,
        )
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise bad_param(param, f"{param} is not valid base64") from None


def _image_bytes(part: ImagePart, limit: int, index: int) -> bytes:
    url = part.image_url.url
    param = f"image_url[{index}].url"
    if not url[:5].lower() == "data:":
        raise bad_param(
            param,
            f"{param}: only data: URLs are accepted (the server fetches nothing from the network)",
        )
    mime, data = decode_data_url(url, max_bytes=limit)
    if not mime.startswith("image/"):
        raise bad_param(param, f"{param}: data URL type '{mime[:40]}' is not an image")
    if not data:
        raise bad_param(param, f"{param}: the image is empty")
    return data


def split_chat(
    messages: list[ChatMessage], settings: Settings, options: ServerOptions
) -> ChatInputs:
    """Text per message; media parts collected in order. Cheap checks only (no decoding)."""
    out = ChatInputs([])
    for msg in messages:
        texts: list[str] = []
        parts: list[Any] = (
            [] if msg.content is None or isinstance(msg.content, str) else msg.content
        )
        if isinstance(msg.content, str):
            texts.append(msg.content)
        for part in parts:
            if isinstance(part, TextPart):
                texts.append(part.text)
            elif isinstance(part, ImagePart):
                out.image_bytes.append(
                    _image_bytes(part, settings.max_image_bytes, len(out.image_bytes))
                )
            elif isinstance(part, AudioPart):
                fmt = part.input_audio.format.lower()
                if fmt not in AUDIO_FORMATS:
                    raise bad_param(
                        "input_audio.format",
                        f"unsupported audio format '{fmt[:16]}'"
                        f" (use one of: {', '.join(AUDIO_FORMATS)})",
                    )
                out.audio_bytes.append(
                    _b64_audio(
                        part.input_audio.data, settings.max_audio_bytes, len(out.audio_bytes)
                    )
                )
        entry: dict[str, Any] = {"role": msg.role, "content": "\n".join(texts)}
        if msg.tool_calls:
            entry["tool_calls"] = [c.model_dump() for c in msg.tool_calls]
        if msg.tool_call_id is not None:
            entry["tool_call_id"] = msg.tool_call_id
        out.messages.append(entry)
    if len(out.image_bytes) + len(out.audio_bytes) > options.max_inputs_per_request:
        raise bad_param(
            "messages",
            f"at most {options.max_inputs_per_request} images and audio clips per request",
        )
    return out


async def decode_images(
    data: list[bytes], settings: Settings, options: ServerOptions
) -> list[LoadedImage]:
    def work() -> list[LoadedImage]:
        return [
            load_image(
                d,
                max_bytes=settings.max_image_bytes,
                max_pixels=options.max_image_pixels,
                name=f"image {i + 1}",
            )
            for i, d in enumerate(data)
        ]

    images = await asyncio.to_thread(work)
    for img in images:
        if min(img.width, img.height) < 2:  # vision processors cannot resize a 1-pixel side
            raise MediaError(f"image is {img.width}x{img.height}: too small to look at")
    return images


async def decode_audio(source: Any, settings: Settings, name: str) -> np.ndarray:
    """16 kHz mono float32 samples; MediaError (400) / MediaTooLargeError (413) on bad input."""

    def work() -> np.ndarray:
        clip = load_audio(
            source,
            target_rate=AUDIO_RATE,
            max_bytes=settings.max_audio_bytes,
            max_seconds=settings.max_audio_seconds,
            name=name,
        )
        if clip.samples.size == 0:
            raise MediaError(f"{name}: the audio has no samples")
        return clip.samples

    return await asyncio.to_thread(work)

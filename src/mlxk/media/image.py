"""Image input for the run engine and the server, and ``data:`` URLs for both media kinds.

Images are identified by their magic bytes, refused by size *before* their pixels are decoded
(byte limit, then the pixel count from the header: a decompression bomb never reaches the
decoder), rotated as their EXIF orientation says, and handed over as RGB. A few EXIF fields that
help a model reason about a photo (when, where, which camera) are returned as a plain dict.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import stat
import struct
import urllib.parse
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from mlxk.errors import ImageBombError, InlineDataTooLargeError, MediaError, MediaTooLargeError

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]

DEFAULT_MAX_PIXELS = 50_000_000

# sniffed name -> (Pillow formats allowed to open it, MIME type)
_FORMATS: dict[str, tuple[tuple[str, ...], str]] = {
    "png": (("PNG",), "image/png"),
    "jpeg": (("JPEG", "MPO"), "image/jpeg"),  # phone cameras write MPO (JPEG + depth/preview)
    "gif": (("GIF",), "image/gif"),
    "webp": (("WEBP",), "image/webp"),
    "bmp": (("BMP", "DIB"), "image/bmp"),
    "tiff": (("TIFF",), "image/tiff"),
    "avif": (("AVIF",), "image/avif"),
}
_BMP_HEADER_SIZES = (12, 40, 52, 56, 64, 108, 124)

# Errors Pillow raises for malformed or truncated files (it has no single base class).
_DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    TypeError,
    ZeroDivisionError,
)


@dataclass(frozen=True)
class LoadedImage:
    image: Image.Image = field(repr=False)  # RGB, EXIF orientation applied, pixels loaded
    format: str  # "png", "jpeg", "gif", "webp", "bmp", "tiff", "avif"
    mime: str
    width: int
    height: int
    exif: dict[str, Any]  # Make, Model, DateTimeOriginal, GPSLatitude/Longitude (decimal), …


def sniff_image_format(head: bytes) -> str | None:
    """Name the image format from its first bytes (16 are enough), or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if (
        head[:2] == b"BM"
        and len(head) >= 18
        and struct.unpack_from("<I", head, 14)[0] in (_BMP_HEADER_SIZES)
    ):
        return "bmp"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "avif"
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
            return "heic"
    return None


def load_image(
    source: ImageSource,
    *,
    max_bytes: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> LoadedImage:
    """Decode an image to RGB. ``MediaError`` for anything undecodable, ``MediaTooLargeError``
    when the file or its pixel count is over the limit (checked before pixels are decoded)."""
    label = name or _source_name(source) or "image input"
    data = _read_bounded(source, max_bytes, label)
    fmt = sniff_image_format(data[:32])
    _check_supported(fmt, data, label)
    assert fmt is not None
    img = _open(data, fmt, max_pixels, label)
    exif = readable_exif(img)
    rgb = _decode(img, label)
    return LoadedImage(rgb, fmt, _FORMATS[fmt][1], rgb.width, rgb.height, exif)


def _check_supported(fmt: str | None, data: bytes, label: str) -> None:
    supported = "PNG, JPEG, GIF, WebP, BMP, TIFF" + (", AVIF" if _avif() else "")
    if fmt is None:
        raise MediaError(
            f"{label}: cannot decode image: {_describe_unknown(data)}. Supported: {supported}."
        )
    if fmt == "heic" or (fmt == "avif" and not _avif()):
        raise MediaError(
            f"{label}: {fmt.upper()} images are not supported here; convert it "
            f"to JPEG or PNG. Supported: {supported}."
        )


def _avif() -> bool:
    return bool(features.check("avif"))


def _describe_unknown(data: bytes) -> str:
    if not data:
        return "the input is empty"
    if data[:4] in (b"RIFF", b"fLaC", b"OggS") or data[:3] == b"ID3":
        return "it looks like audio, not an image"
    if data[:4] == b"%PDF":
        return "it looks like a PDF document"
    sample = data[:512]
    if b"\x00" not in sample and sum(b >= 0x20 or b in (9, 10, 13) for b in sample) >= 0.95 * len(
        sample
    ):
        return "it looks like text, not an image"
    return "its first bytes match no supported image format"


# --------------------------------------------------------------------------------------------
# Reading with a byte limit


def _source_name(source: object) -> str | None:
    if isinstance(source, (str, os.PathLike)):
        name: object = os.fspath(source)
    else:
        name = getattr(source, "name", None)
    if not isinstance(name, str) or not name:
        return None
    base = Path(name).name or name
    # Error messages stay one readable line even when handed a very long "path".
    return base if len(base) <= 80 else base[:79] + "…"


def _read_bounded(source: ImageSource, max_bytes: int, label: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        data = _read_path(Path(source), max_bytes, label)
    elif hasattr(source, "read"):
        data = _read_stream(source, max_bytes)
    else:
        raise TypeError(
            f"image source must be a path, bytes or a binary stream, not {type(source)}"
        )
    if len(data) > max_bytes:
        raise _too_many_bytes(label, max_bytes)
    return data


def _read_path(path: Path, max_bytes: int, label: str) -> bytes:
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise MediaError(f"{label}: is a directory, not an image")
        if stat.S_ISREG(st.st_mode) and st.st_size > max_bytes:
            raise _too_many_bytes(label, max_bytes)  # known size: refuse before reading
        with path.open("rb") as fh:
            return _read_stream(fh, max_bytes)
    except FileNotFoundError:
        raise MediaError(f"{label}: image file not found") from None
    except OSError as exc:
        raise MediaError(f"{label}: cannot open image file ({exc.strerror or exc})") from None


def _read_stream(stream: BinaryIO, max_bytes: int) -> bytes:
    """Read to the end, but never more than one byte past the limit (enough to know)."""
    parts, total = [], 0
    while total <= max_bytes:
        chunk = stream.read(min(1 << 20, max_bytes + 1 - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)


def _too_many_bytes(label: str, limit: int) -> MediaTooLargeError:
    return MediaTooLargeError(
        f"{label}: image is larger than the limit of {limit / 2**20:.4g} MiB "
        "(MLXK_MAX_IMAGE_BYTES)",
        limit_bytes=limit,
    )


# --------------------------------------------------------------------------------------------
# Decoding


def _open(data: bytes, fmt: str, max_pixels: int, label: str) -> Image.Image:
    """Parse the header only and check the pixel count before anything is decoded."""
    with warnings.catch_warnings():
        # Pillow's bomb warning is superseded by our own max_pixels check below; its
        # corrupt-metadata warnings (EXIF read while opening a JPEG) change nothing for us.
        warnings.simplefilter("ignore")
        try:
            img = Image.open(io.BytesIO(data), formats=list(_FORMATS[fmt][0]))
        except Image.DecompressionBombError:
            raise ImageBombError(
                f"{label}: image has too many pixels to decode safely"
            ) from None
        except _DECODE_ERRORS as exc:
            raise MediaError(
                f"{label}: not a decodable {fmt.upper()} image ({_one_line(exc)})"
            ) from None
    width, height = img.size
    if width <= 0 or height <= 0:
        raise MediaError(f"{label}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageBombError(
            f"{label}: image is {width}x{height} ({width * height / 1e6:.1f} megapixels), over "
            f"the limit of {max_pixels / 1e6:g} megapixels",
            limit_pixels=max_pixels,
        )
    return img


def _decode(img: Image.Image, label: str) -> Image.Image:
    """Decode pixels (first frame of animations), apply EXIF orientation, return RGB."""
    try:
        with warnings.catch_warnings():
            # Bomb warning: superseded by max_pixels. Corrupt-EXIF warnings: orientation is
            # then simply not applied.
            warnings.simplefilter("ignore")
            img.load()
            upright = ImageOps.exif_transpose(img) or img
    except _DECODE_ERRORS as exc:
        raise MediaError(
            f"{label}: image data is damaged or truncated ({_one_line(exc)})"
        ) from None
    return _to_rgb(upright)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # Pillow clips 16-bit grey to 255 when converting; scale instead so it stays visible.
        grey = np.clip(np.asarray(img, dtype=np.int64) >> 8, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Models expect opaque images: transparent areas become white, as viewers show them.
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, img.convert("RGBA")).convert("RGB")
    return img.convert("RGB")


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[-1] if lines else type(exc).__name__


# --------------------------------------------------------------------------------------------
# EXIF


# Orientation is left out on purpose: it is already applied, and passing it on invites a second
# rotation downstream.
_BASE_TAGS = {0x010F: "Make", 0x0110: "Model", 0x0132: "DateTime", 0x0131: "Software"}
_EXIF_IFD_TAGS = {0x9003: "DateTimeOriginal", 0xA434: "LensModel"}
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825


def readable_exif(img: Image.Image) -> dict[str, Any]:
    """A few EXIF fields as plain JSON-able values; {} when absent or unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on corrupt EXIF; {} says enough
            exif = img.getexif()
            out = _pick(exif, _BASE_TAGS)
            out.update(_pick(exif.get_ifd(_EXIF_IFD), _EXIF_IFD_TAGS))
            out.update(_gps(exif.get_ifd(_GPS_IFD)))
    except Exception:  # metadata is optional: a broken EXIF block must not fail the image
        return {}
    return out


def _pick(ifd: Any, tags: dict[int, str]) -> dict[str, Any]:
    out = {}
    for tag, key in tags.items():
        value = _plain(ifd.get(tag))
        if value is not None:
            out[key] = value
    return out


def _plain(value: Any) -> str | int | float | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="ignore")
    if isinstance(value, str):
        text = value.replace("\x00", "").strip()
        return text[:200] or None
    if isinstance(value, int):
        return value
    try:
        number = float(value)  # IFDRational and friends
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) else None


def _gps(ifd: Any) -> dict[str, float]:
    lat = _degrees(ifd.get(2), ifd.get(1), "S")
    lon = _degrees(ifd.get(4), ifd.get(3), "W")
    if lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180:
        return {}
    out = {"GPSLatitude": round(lat, 7), "GPSLongitude": round(lon, 7)}
    altitude = _plain(ifd.get(6))
    if isinstance(altitude, (int, float)):
        below = ifd.get(5) in (1, b"\x01")  # AltitudeRef 1: below sea level
        out["GPSAltitude"] = round(-altitude if below else altitude, 2)
    return out


def _degrees(dms: Any, ref: Any, negative: str) -> float | None:
    """(degrees, minutes, seconds) rationals and an N/S/E/W reference -> signed decimal."""
    if not isinstance(dms, tuple) or len(dms) != 3:
        return None
    parts = [_plain(x) for x in dms]
    if not all(isinstance(x, (int, float)) for x in parts):
        return None
    deg, minutes, seconds = (float(x) for x in parts)  # type: ignore[arg-type]
    value = deg + minutes / 60 + seconds / 3600
    ref_text = ref.decode(errors="ignore") if isinstance(ref, bytes) else str(ref or "")
    return -value if ref_text.strip().upper().startswith(negative) else value


# --------------------------------------------------------------------------------------------
# data: URLs (images and audio arrive this way in chat requests)


def decode_data_url(url: str, *, max_bytes: int) -> tuple[str, bytes]:
    """Split ``data:<mime>[;…][;base64],<payload>`` into (mime, bytes).

    The decoded size is estimated from the payload's length and refused with
    ``MediaTooLargeError`` before any decoding; malformed URLs give ``MediaError``.
    """
    if url[:5].lower() != "data:":
        raise MediaError("not a data: URL (expected data:<type>;base64,<data>)")
    comma = url.find(",", 5, 1024)  # the header is short: never scan a big payload for it
    if comma < 0:
        raise MediaError("malformed data: URL: no comma after the media type")
    params = [p.strip() for p in url[5:comma].split(";")]
    mime = params[0].lower() if "/" in params[0] else "text/plain"  # RFC 2397 default
    payload = url[comma + 1 :]
    if params[-1].lower() == "base64":
        return mime, _decode_base64(payload, max_bytes)
    if len(payload) > 3 * max_bytes:  # every decoded byte needs at least 1 and at most 3 chars
        raise _data_too_large(max_bytes)
    data = urllib.parse.unquote_to_bytes(payload)
    if len(data) > max_bytes:
        raise _data_too_large(max_bytes)
    return mime, data


def _decode_base64(payload: str, max_bytes: int) -> bytes:
    # 4 characters carry 3 bytes. Line breaks inflate the length a little, so only a payload
    # far beyond the limit is refused on length alone; the rest is measured exactly below.
    if len(payload) * 3 // 4 > 2 * max_bytes + 3:
        raise _data_too_large(max_bytes)
    compact = "".join(payload.split())
    if "%" in compact:
        compact = urllib.parse.unquote(compact)
    compact = compact.rstrip("=")
    if len(compact) * 3 // 4 > max_bytes:
        raise _data_too_large(max_bytes)
    if "-" in compact or "_" in compact:
        compact = compact.translate(str.maketrans("-_", "+/"))  # URL-safe alphabet
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise MediaError("malformed data: URL: the payload is not valid base64") from None


def _data_too_large(limit: int) -> MediaTooLargeError:
    return InlineDataTooLargeError(
        f"data: URL payload is larger than the limit of {limit / 2**20:.4g} MiB", limit_bytes=limit
    )

"""Image input and data: URLs: formats, orientation, EXIF, bombs, damaged and wrong input."""

from __future__ import annotations

import base64
import io
import struct
import urllib.parse
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from mlxk.errors import MediaError, MediaTooLargeError
from mlxk.media import image as image_mod
from mlxk.media.image import decode_data_url, load_image, sniff_image_format

MB = 2**20


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _marked(size: tuple[int, int] = (64, 32)) -> Image.Image:
    """Blue image with a red 8x8 block in the top-left corner, to track rotations."""
    img = Image.new("RGB", size, (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 8, 8))
    return img


def _is_red(pixel: tuple[int, ...]) -> bool:
    return pixel[0] > 200 and pixel[2] < 60


def _one_line(exc: pytest.ExceptionInfo[MediaError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def _camera_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "EOS 5D Mark IV"
    exif[0x0112] = orientation
    exif.get_ifd(0x8769)[0x9003] = "2024:05:06 07:08:09"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[3] = "S", "W"  # Rio de Janeiro: 22°54'30.6"S 43°10'22.8"W
    gps[2] = (IFDRational(22), IFDRational(54), IFDRational(306, 10))
    gps[4] = (IFDRational(43), IFDRational(10), IFDRational(228, 10))
    gps[5], gps[6] = b"\x00", IFDRational(11)
    return exif


# --------------------------------------------------------------------------------------------
# Formats and sources


@pytest.mark.parametrize(
    ("fmt", "name", "mime"),
    [
        ("PNG", "png", "image/png"),
        ("JPEG", "jpeg", "image/jpeg"),
        ("GIF", "gif", "image/gif"),
        ("WEBP", "webp", "image/webp"),
        ("BMP", "bmp", "image/bmp"),
        ("TIFF", "tiff", "image/tiff"),
    ],
)
def test_formats_are_sniffed_and_decoded_to_rgb(
    tmp_path: Path, fmt: str, name: str, mime: str
) -> None:
    data = _encode(_marked(), fmt)
    path = tmp_path / "picture.txt"  # the extension lies: content decides
    path.write_bytes(data)
    for source in (path, str(path), data, io.BytesIO(data)):
        loaded = load_image(source, max_bytes=MB)
        assert (loaded.format, loaded.mime, loaded.image.mode) == (name, mime, "RGB")
        assert (loaded.width, loaded.height) == (64, 32) == loaded.image.size
        assert _is_red(loaded.image.getpixel((2, 2)))
        assert loaded.exif == {}


def test_sniff_image_format() -> None:
    assert sniff_image_format(b"\x00\x00\x00\x1cftypheic") == "heic"
    assert sniff_image_format(b"\x00\x00\x00\x1cftypavif") == "avif"
    assert sniff_image_format(b"BM hello, not a bitmap") is None
    assert sniff_image_format(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Orientation 6: the camera was turned; show the stored image rotated 90° clockwise,
    # so the stored top-left corner ends up top-right.
    data = _encode(_marked((64, 32)), "JPEG", exif=_camera_exif(orientation=6), quality=95)
    loaded = load_image(data, max_bytes=MB)
    assert (loaded.width, loaded.height) == (32, 64)
    assert _is_red(loaded.image.getpixel((28, 3)))
    assert not _is_red(loaded.image.getpixel((3, 3)))
    assert "Orientation" not in loaded.exif  # already applied: nobody should rotate again


def test_readable_exif_with_gps() -> None:
    loaded = load_image(_encode(_marked(), "JPEG", exif=_camera_exif()), max_bytes=MB)
    assert loaded.exif == {
        "Make": "Canon",
        "Model": "EOS 5D Mark IV",
        "DateTimeOriginal": "2024:05:06 07:08:09",
        "GPSLatitude": pytest.approx(-(22 + 54 / 60 + 30.6 / 3600)),
        "GPSLongitude": pytest.approx(-(43 + 10 / 60 + 22.8 / 3600)),
        "GPSAltitude": 11.0,
    }
    assert all(isinstance(v, (str, int, float)) for v in loaded.exif.values())


def test_broken_exif_does_not_break_the_image() -> None:
    data = bytearray(_encode(_marked(), "JPEG", exif=_camera_exif()))
    start = data.find(b"Exif\x00\x00")
    data[start + 10 : start + 60] = b"\xff" * 50  # trash the IFD entries
    loaded = load_image(bytes(data), max_bytes=MB)
    assert loaded.width == 64 and isinstance(loaded.exif, dict)


def test_transparency_becomes_white_and_palette_is_expanded() -> None:
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    loaded = load_image(_encode(rgba, "PNG"), max_bytes=MB).image
    assert loaded.getpixel((5, 5)) == (255, 255, 255) and loaded.getpixel((0, 0)) == (255, 0, 0)
    frames = [Image.new("P", (8, 8), i) for i in (1, 2)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    assert load_image(gif.getvalue(), max_bytes=MB).image.mode == "RGB"


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    grey = np.array([[0, 32768, 65535]], dtype=np.uint16)
    data = _encode(Image.fromarray(grey), "PNG")
    pixels = [load_image(data, max_bytes=MB).image.getpixel((x, 0)) for x in range(3)]
    assert pixels == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_cmyk_jpeg() -> None:
    data = _encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG")
    assert _is_red(load_image(data, max_bytes=MB).image.getpixel((4, 4)))


# --------------------------------------------------------------------------------------------
# Limits and hostile input


def _png_claiming(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR (CRC fixed up) claims ``width`` x ``height``."""
    data = bytearray(_encode(Image.new("RGB", (1, 1)), "PNG"))
    ihdr = data.find(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(MediaTooLargeError) as exc:
        load_image(_png_claiming(100_000, 100_000), max_bytes=MB)
    assert "megapixels" in _one_line(exc) or "pixels" in _one_line(exc)
    with pytest.raises(MediaTooLargeError, match=r"over the limit of 0\.001 megapixels"):
        load_image(_encode(_marked(), "PNG"), max_bytes=MB, max_pixels=1000)


def test_byte_limit(tmp_path: Path) -> None:
    data = _encode(Image.effect_noise((256, 256), 50).convert("RGB"), "PNG")
    path = tmp_path / "big.png"
    path.write_bytes(data)
    for source in (path, data, io.BytesIO(data)):
        with pytest.raises(MediaTooLargeError, match="MLXK_MAX_IMAGE_BYTES"):
            load_image(source, max_bytes=len(data) - 1)
    assert load_image(path, max_bytes=len(data)).width == 256


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (b"", "empty"),
        (b"just some words in a file called photo.png\n", "text"),
        (bytes(np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8)), "no supported"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40), "audio"),
        (b"\x00\x00\x00\x1cftypheic" + bytes(40), "HEIC"),
        (b"\x89PNG\r\n\x1a\n" + bytes(30), "PNG"),
    ],
)
def test_bad_input_gives_one_clear_error(tmp_path: Path, content: bytes, phrase: str) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(content)
    with pytest.raises(MediaError) as exc:
        load_image(path, max_bytes=MB)
    text = _one_line(exc)
    assert text.startswith("photo.png:") and phrase in text
    assert not isinstance(exc.value, MediaTooLargeError)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_truncated_images_fail_cleanly(fmt: str) -> None:
    data = _encode(Image.effect_noise((128, 128), 60).convert("RGB"), fmt)
    for cut in (len(data) // 2, 40):
        with pytest.raises(MediaError) as exc:
            load_image(data[:cut], max_bytes=MB, name="cut")
        assert _one_line(exc).startswith("cut:")


def test_missing_file() -> None:
    with pytest.raises(MediaError, match="not found"):
        load_image("/nonexistent/picture.png", max_bytes=MB)


# --------------------------------------------------------------------------------------------
# data: URLs


def test_data_url_image_and_audio() -> None:
    png = _encode(_marked(), "PNG")
    mime, data = decode_data_url(
        "data:image/png;base64," + base64.b64encode(png).decode(), max_bytes=MB
    )
    assert (mime, data) == ("image/png", png)
    wav = b"RIFF\x24\x00\x00\x00WAVE" + bytes(100)
    b64 = base64.b64encode(wav).decode()
    assert decode_data_url(f"DATA:Audio/WAV;base64,{b64}", max_bytes=MB) == ("audio/wav", wav)


def test_data_url_tolerates_line_breaks_urlsafe_and_missing_padding() -> None:
    raw = bytes(range(256)) * 3
    std = base64.b64encode(raw).decode()
    wrapped = "\n".join(std[i : i + 76] for i in range(0, len(std), 76))
    safe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    quoted = urllib.parse.quote(std, safe="")
    for payload in (wrapped, safe, quoted):
        assert (
            decode_data_url(f"data:application/octet-stream;base64,{payload}", max_bytes=MB)[1]
            == raw
        )


def test_data_url_without_base64_and_default_type() -> None:
    assert decode_data_url("data:,hello%20world", max_bytes=100) == ("text/plain", b"hello world")
    assert decode_data_url("data:;base64,aGk=", max_bytes=100) == ("text/plain", b"hi")


def test_data_url_size_is_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("decoded a payload that is over the limit")

    monkeypatch.setattr(image_mod.base64, "b64decode", refuse)
    huge = "data:image/png;base64," + "A" * (40 * MB)
    with pytest.raises(MediaTooLargeError):
        decode_data_url(huge, max_bytes=MB)
    just_over = "data:audio/wav;base64," + "A" * (4 * (MB // 3 + 2))
    with pytest.raises(MediaTooLargeError):
        decode_data_url(just_over, max_bytes=MB)


def test_data_url_exact_limit() -> None:
    raw = bytes(3000)
    url = "data:image/png;base64," + base64.b64encode(raw).decode()
    assert decode_data_url(url, max_bytes=3000)[1] == raw
    with pytest.raises(MediaTooLargeError):
        decode_data_url(url, max_bytes=2999)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/a.png",
        "data:image/png;base64",
        "data:image/png;base64,@@@not-b64!!",
        "data:image/png;base64,QUJD\u00e9",
    ],
)
def test_malformed_data_urls(url: str) -> None:
    with pytest.raises(MediaError) as exc:
        decode_data_url(url, max_bytes=MB)
    _one_line(exc)

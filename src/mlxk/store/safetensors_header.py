"""Read a safetensors file's header without loading any tensor (no mlx, no numpy).

Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the tensor data.
Every tensor entry names ``dtype``, ``shape`` and ``data_offsets`` (relative to the data start).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from mlxk.errors import SafetensorsHeaderError

# A header beyond this is a corrupt length field, not a real model (safetensors caps it at 100 MB).
MAX_HEADER_BYTES = 100 * 1024 * 1024

DTYPE_BYTES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "F4": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8, "C64": 8,
}  # fmt: skip


def _fail(path: Path, why: str) -> SafetensorsHeaderError:
    return SafetensorsHeaderError(f"{path.name}: {why}", path=str(path))


def header_bytes(path: Path) -> bytes:
    """The raw JSON header bytes (what content hash v2 hashes), length-checked."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise _fail(path, f"truncated: {size} bytes, no header length")
            (length,) = struct.unpack("<Q", prefix)
            if length < 2 or length > MAX_HEADER_BYTES:
                raise _fail(path, f"corrupt header length {length}")
            if 8 + length > size:
                raise _fail(path, f"truncated: header needs {length} bytes, file has {size - 8}")
            return fh.read(length)
    except OSError as exc:
        raise _fail(path, f"unreadable: {exc.strerror or exc}") from exc


def _read_raw_header(path: Path) -> tuple[dict[str, Any], int]:
    """The parsed JSON header and the number of data bytes after it."""
    raw = header_bytes(path)
    size = path.stat().st_size
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"corrupt header JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise _fail(path, "corrupt header: not a JSON object")
    return header, size - 8 - len(raw)


def _check_entry(path: Path, name: str, entry: Any, data_bytes: int) -> None:
    """One tensor entry: known dtype, offsets inside the file, byte count matching the shape."""
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise _fail(path, f"corrupt entry for tensor {name!r}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise _fail(path, f"tensor {name!r} has an invalid shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise _fail(path, f"tensor {name!r} has invalid data_offsets {offsets!r}")
    if offsets[1] > data_bytes:
        raise _fail(path, f"truncated: tensor {name!r} ends at byte {offsets[1]} of {data_bytes}")
    itemsize = DTYPE_BYTES.get(dtype)
    if itemsize is not None and dtype != "F4":  # F4 packs two values per byte
        expected = math.prod(shape) * itemsize
        if expected != offsets[1] - offsets[0]:
            raise _fail(path, f"tensor {name!r}: {offsets[1] - offsets[0]} bytes for {expected}")


def read_header(path: Path | str) -> dict[str, Any]:
    """The header of one safetensors file: ``{tensor: {dtype, shape, data_offsets}}``.

    ``__metadata__`` (a str→str map) is kept when present. Raises SafetensorsHeaderError for a
    truncated file, a corrupt length or JSON, or tensor data lying beyond the end of the file.
    """
    path = Path(path)
    header, data_bytes = _read_raw_header(path)
    for name, entry in header.items():
        if name == "__metadata__":
            if entry is not None and not isinstance(entry, dict):
                raise _fail(path, "corrupt __metadata__: not an object")
            continue
        _check_entry(path, name, entry, data_bytes)
    return header


def tensor_entries(header: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tensor entries of a header, without ``__metadata__``."""
    return {k: v for k, v in header.items() if k != "__metadata__"}


def tensor_nbytes(entry: dict[str, Any]) -> int:
    start, end = entry["data_offsets"]
    return int(end) - int(start)

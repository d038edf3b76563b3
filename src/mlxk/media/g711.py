"""G.711 μ-law and A-law (ITU-T G.711) bytes → float samples in [-1, 1]."""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=1)
def _ulaw_table() -> np.ndarray:
    b = ~np.arange(256, dtype=np.int32) & 0xFF
    sign, exponent, mantissa = b & 0x80, (b >> 4) & 0x07, b & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return (np.where(sign, -magnitude, magnitude) / 32768.0).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _alaw_table() -> np.ndarray:
    b = np.arange(256, dtype=np.int32) ^ 0x55
    sign, exponent, mantissa = b & 0x80, (b >> 4) & 0x07, b & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1)
    )
    return (np.where(sign, magnitude, -magnitude) / 32768.0).astype(np.float32)


def ulaw_to_float(data: bytes) -> np.ndarray:
    return _ulaw_table()[np.frombuffer(data, np.uint8)]


def alaw_to_float(data: bytes) -> np.ndarray:
    return _alaw_table()[np.frombuffer(data, np.uint8)]

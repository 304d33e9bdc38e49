"""Small helpers that encode test images in memory (shared by the proxy tests)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def solid(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, color)


def photo_like(seed: int, size: tuple[int, int] = (640, 480)) -> bytes:
    """A smooth random colour field as a JPEG: cheap, and not a uniform colour."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    return encode(small.resize(size, Image.Resampling.BICUBIC), "JPEG", quality=90)


def upscaled_jpeg(data: bytes, size: tuple[int, int]) -> bytes:
    """A 32x32 CIFAR JPEG blown up to photo size (what the parity checks feed)."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    return encode(image.resize(size, Image.Resampling.BICUBIC), "JPEG", quality=92)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose pixel data is one empty row.

    Decoding it fails; only a limit checked on the header can answer 413 for it.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    chunks = _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

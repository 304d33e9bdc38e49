"""Small helpers that encode test images in memory (shared by the proxy tests)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from image_files import encode
from PIL import Image


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


def tiled_tiff(width: int, height: int, tile: int) -> bytes:
    """An uncompressed RGB TIFF of width x height stored as one tile of tile x tile pixels
    (libtiff decodes a tile whole, whatever the image size says)."""
    pixels = bytes(tile * tile * 3)
    tags = [  # (tag, type, count, value): SHORT = 3, LONG = 4
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
        (262, 3, 1, 2), (277, 3, 1, 3), (284, 3, 1, 1), (322, 4, 1, tile), (323, 4, 1, tile),
        (324, 4, 1, 0), (325, 4, 1, len(pixels)),
    ]  # fmt: skip
    ifd_size = 2 + 12 * len(tags) + 4
    data_offset = 8 + ifd_size
    tags[-2] = (324, 4, 1, data_offset)  # TileOffsets: the pixels follow the IFD
    entries = b"".join(struct.pack("<HHII", *tag) for tag in tags)
    ifd = struct.pack("<H", len(tags)) + entries + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + pixels


def many_scans_jpeg(scans: int, size: tuple[int, int] = (64, 64)) -> bytes:
    """A progressive JPEG whose last scan is repeated until it has `scans` scans."""
    data = encode(Image.new("RGB", size, (90, 120, 200)), "JPEG", progressive=True)
    last = data.rindex(b"\xff\xda")
    end = data.rindex(b"\xff\xd9")
    have = data.count(b"\xff\xda")
    return data[:end] + data[last:end] * (scans - have) + data[end:]


def rle8_bmp(width: int, height: int) -> bytes:
    """An 8-bit run-length-encoded BMP (BI_RLE8) of one colour."""
    rows = b""
    for _ in range(height):
        for start in range(0, width, 255):
            rows += bytes([min(255, width - start), 0])
        rows += b"\x00\x00"  # end of line
    rows += b"\x00\x01"  # end of bitmap
    palette = b"\x00\x00\xff\x00" + bytes(4 * 255)
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(rows), 2835, 2835, 256, 0)
    header = b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset)
    return header + info + palette + rows

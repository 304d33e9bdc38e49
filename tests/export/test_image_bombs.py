"""`serving_default` refuses images over MAX_PIXELS from their header, before decoding.

Each bomb is a header that claims a huge size with (almost) no pixel data behind it: the
decoders would allocate the whole bitmap first (a 389 kB 20000x20000 PNG took 52 s and
10.8 GB in the model server). Refused by the header check, they cost nothing.
"""

from __future__ import annotations

import io
import math
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")

from image_cases import CASES  # noqa: E402
from image_files import encode  # noqa: E402

from export.config import GIF_BLOCK_STEPS, GIF_WALK_STEPS, MAX_PIXELS  # noqa: E402
from export.image_graph import (  # noqa: E402
    _check_pixel_count,
    _format_of,
    _gif_layout,
    _header_size,
)


def png(width: int, height: int) -> bytes:
    """A PNG whose IHDR (valid CRC) claims width x height, with one tiny IDAT."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def gif(width: int, height: int) -> bytes:
    """A real 1x1 GIF whose logical screen (what TensorFlow allocates) is width x height."""
    data = bytearray(encode(Image.new("P", (1, 1)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def bmp(width: int, height: int) -> bytes:
    """A real 2x2 BMP whose BITMAPINFOHEADER says width x height (height < 0: top-down)."""
    data = bytearray(encode(Image.new("RGB", (2, 2)), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def jpeg(width: int, height: int) -> bytes:
    """A real 8x8 JPEG whose SOF0 frame header says width x height."""
    data = bytearray(encode(Image.new("RGB", (8, 8)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp(width: int, height: int) -> bytes:
    """An extended WebP whose VP8X canvas says width x height (a 1x1 lossless image inside)."""
    inner = encode(Image.new("RGB", (1, 1)), "WEBP", lossless=True)[12:]
    size = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + b"\0" * 4 + size + inner
    return b"RIFF" + struct.pack("<I", len(body)) + body


MAKERS = {"png": png, "gif": gif, "bmp": bmp, "jpeg": jpeg, "webp": webp}


def header_size(data: bytes) -> list[int]:
    data = tf.constant(data)
    return _header_size(data, _format_of(data)).numpy().tolist()


@pytest.mark.parametrize("fmt", sorted(MAKERS))
def test_header_size_is_read_for_every_format(fmt):
    assert header_size(MAKERS[fmt](300, 200)) == [300, 200]


def test_header_size_of_real_files():
    for name in ["jpeg_tall", "png_rgb", "gif", "bmp_rgb", "bmp_palette"]:
        with Image.open(io.BytesIO(CASES[name])) as img:
            assert header_size(CASES[name]) == list(img.size), name
    rgb = Image.new("RGB", (90, 60))
    for kwargs in [{}, {"lossless": True}]:  # lossy "VP8 " and lossless "VP8L" chunks
        assert header_size(encode(rgb, "WEBP", **kwargs)) == [90, 60]
    assert header_size(encode(rgb, "JPEG", progressive=True)) == [90, 60]


def test_top_down_bmp_counts_its_rows():
    assert header_size(bmp(300, -200)) == [300, 200]


@pytest.mark.parametrize("fmt", sorted(MAKERS))
def test_header_bombs_are_refused_before_decoding(serving_default, fmt):
    bomb = MAKERS[fmt](20000, 20000)
    assert len(bomb) < 2000
    batch = tf.constant([CASES["jpeg_wide"], bomb])  # one bomb fails the request, as any bad image
    expected = "image is 20000x20000 = 400.0 megapixels; the limit is 40 megapixels"
    with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
        serving_default(image_bytes=batch)
    assert serving_default(image_bytes=tf.constant([CASES["png_rgb"]]))["classes"].shape == (1, 10)


def test_png_sizes_that_overflow_int64_are_refused():
    with pytest.raises(tf.errors.InvalidArgumentError, match="4294967295x4294967295"):
        _check_pixel_count(tf.constant(png(2**32 - 1, 2**32 - 1)))


@pytest.mark.parametrize("fmt", sorted(MAKERS))
def test_just_under_the_limit_passes_the_check(fmt):
    side = math.isqrt(MAX_PIXELS)
    width = MAX_PIXELS // side  # width * side <= MAX_PIXELS < (width + 1) * side
    if fmt in ("gif", "jpeg", "webp") and width > 16383:  # 16-bit (WebP: 14-bit) fields
        pytest.skip("the limit is beyond this format's largest size")
    under = MAKERS[fmt](width, side)
    assert _check_pixel_count(tf.constant(under)).numpy() == under
    with pytest.raises(tf.errors.InvalidArgumentError, match="the limit is 40 megapixels"):
        _check_pixel_count(tf.constant(MAKERS[fmt](width + 1, side)))


def test_jpeg_xl_is_refused():
    with pytest.raises(tf.errors.InvalidArgumentError, match="JPEG XL is not accepted"):
        _check_pixel_count(tf.constant(b"\xff\x0a" + b"\0" * 30))


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_truncated_headers_get_the_decoders_error(serving_default, fmt):
    cut = {"jpeg": CASES["jpeg_wide"][:20], "png": CASES["png_rgb"][:20]}[fmt]
    with pytest.raises(tf.errors.InvalidArgumentError, match="(?i)" + fmt):
        serving_default(image_bytes=tf.constant([cut]))


def test_truncated_progressive_jpeg_is_invalid_argument(serving_default):
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 90, 3), np.uint8))
    data = encode(photo, "JPEG", progressive=True)
    for cut in (len(data) // 2, 300, 150):
        with pytest.raises(tf.errors.InvalidArgumentError, match="JPEG"):
            serving_default(image_bytes=tf.constant([data[:cut]]))


def gif_frames(screen: tuple[int, int], frames: list[tuple[int, int, int, int]], blocks=1) -> bytes:
    """A GIF with a 2-colour global table and image descriptors (left, top, width, height), each
    with a tiny LZW stream cut into `blocks` one-byte sub-blocks (decoders would still allocate
    the frame's full size before finding the data short)."""
    head = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    control = b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # graphic control extension (delay)
    body = b"".join(
        control
        + b"\x2c"
        + struct.pack("<HHHHB", *frame, 0)
        + b"\x02"
        + b"\x01\x44" * blocks
        + b"\0"
        for frame in frames
    )
    return head + body + b"\x3b"


# As in the SavedModel, a graph: eagerly, tf.while_loop would run step by step in Python.
_graph_gif_layout = tf.function(_gif_layout)
_graph_check = tf.function(_check_pixel_count)


def gif_layout(data: bytes) -> list[int]:
    return [int(x) for x in _graph_gif_layout(tf.constant(data))]


def test_gif_walk_reads_every_frame_of_a_real_animation():
    """Pillow writes local colour tables, extensions and 255-byte sub-blocks; sizes differ."""
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (60, 80, 3), np.uint8)) for _ in range(3)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], disposal=2)
    width, height, pixels, complete = gif_layout(data)
    with Image.open(io.BytesIO(data)) as img:
        assert img.n_frames == 3
        expected = 0
        for i in range(3):
            img.seek(i)
            left, top, right, bottom = img.dispose_extent
            expected += (right - left) * (bottom - top)
    assert (width, height, complete) == (80, 60, 1)
    assert pixels == expected


def test_gif_frame_larger_than_its_screen_is_refused(serving_default):
    bomb = gif_frames((16, 16), [(0, 0, 16000, 16000)])
    assert gif_layout(bomb) == [16000, 16000, 256_000_000, 1]
    with pytest.raises(tf.errors.InvalidArgumentError, match="GIF frames span 16000x16000"):
        serving_default(image_bytes=tf.constant([bomb]))


def test_gif_frames_over_the_limit_in_all_are_refused(serving_default):
    side = 4000  # 16 MP each: one frame passes, three do not
    assert _graph_check(tf.constant(gif_frames((side, side), [(0, 0, side, side)])))
    bomb = gif_frames((side, side), [(0, 0, side, side)] * 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"GIF frames hold 48\.0 megapixels"):
        serving_default(image_bytes=tf.constant([bomb]))


def test_gif_walk_stops_when_its_step_budget_is_spent():
    """One-byte sub-blocks, or many tiny frames, make the walk long: it gives up (refusing)."""
    many_blocks = [gif_frames((8, 8), [(0, 0, 8, 8)], blocks=GIF_WALK_STEPS)]
    frames = GIF_WALK_STEPS // (2 * GIF_BLOCK_STEPS)  # each frame: a control extension + image
    many_frames = [gif_frames((8, 8), [(0, 0, 1, 1)] * frames)]
    for long in many_blocks + many_frames:
        assert gif_layout(long)[3] == 0
        with pytest.raises(tf.errors.InvalidArgumentError, match="too many blocks to check"):
            _graph_check(tf.constant(long))
    half_blocks = gif_frames((8, 8), [(0, 0, 8, 8)], blocks=GIF_WALK_STEPS // 2)
    half_frames = gif_frames((8, 8), [(0, 0, 1, 1)] * (frames // 2))
    assert gif_layout(half_blocks)[3] == gif_layout(half_frames)[3] == 1

"""imaging.decode, the proxy's decoder: every image mode, EXIF orientation, size and limit
case (no server)."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from proxy_images import (
    encode,
    many_scans_jpeg,
    png_header_only,
    rle8_bmp,
    solid,
    tiled_tiff,
)

from imaging.decode import (
    ImageError,
    ImageTooLarge,
    UnsupportedImage,
    to_pixels,
)
from proxy.config import ProxyConfig

LIMIT = ProxyConfig().max_pixels  # the proxy's default pixel limit
RED, GREEN, BLUE, WHITE = (220, 20, 30), (20, 200, 40), (30, 40, 210), (255, 255, 255)


def pixels(data: bytes, limit: int = LIMIT) -> np.ndarray:
    out = to_pixels(data, limit)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    return out


def assert_color(out: np.ndarray, color: tuple[int, int, int], tol: int = 2) -> None:
    diff = np.abs(out.astype(int) - np.array(color)).max()
    assert diff <= tol, f"expected {color}, got {out.reshape(-1, 3)[0]} (max diff {diff})"


# ---------- modes ----------


@pytest.mark.parametrize(
    ("mode", "fmt", "expected"),
    [
        ("RGB", "PNG", RED),
        ("RGB", "BMP", RED),
        ("RGB", "WEBP", RED),
        ("L", "PNG", (81, 81, 81)),  # ITU-R 601 luma of RED
        ("P", "PNG", RED),
        ("P", "GIF", RED),
        ("CMYK", "TIFF", RED),
        ("YCbCr", "JPEG", RED),
    ],
)
def test_opaque_modes_become_rgb(mode: str, fmt: str, expected: tuple[int, int, int]) -> None:
    image = solid(RED).convert(mode, palette=Image.Palette.ADAPTIVE)
    assert Image.open(io.BytesIO(encode(image, fmt, **_lossless(fmt)))).mode in (mode, "RGB")
    assert_color(pixels(encode(image, fmt, **_lossless(fmt))), expected, tol=3)


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(solid(RED).convert("CMYK"), "JPEG", quality=100)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    assert_color(pixels(data), RED, tol=6)


def test_one_bit_image() -> None:
    assert_color(pixels(encode(Image.new("1", (40, 40), 1))), WHITE, tol=0)
    assert_color(pixels(encode(Image.new("1", (40, 40), 0))), (0, 0, 0), tol=0)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_rgba_is_composited_over_white(fmt: str) -> None:
    transparent = Image.new("RGBA", (40, 40), (*RED, 0))
    half = Image.new("RGBA", (40, 40), (*RED, 128))
    assert_color(pixels(encode(transparent, fmt, **_lossless(fmt))), WHITE, tol=0)
    expected = tuple(round(c * 128 / 255 + 255 * 127 / 255) for c in RED)
    assert_color(pixels(encode(half, fmt, **_lossless(fmt))), expected, tol=2)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_compositing_a_strip_at_a_time_equals_the_whole_image(monkeypatch, mode) -> None:
    """Big transparent images are composited in strips to bound memory (imaging/decode.py's
    STRIP_PIXELS); forced to many uneven strips here, the pixels must not change."""
    from imaging import decode

    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (203, 97, 4), np.uint8), "RGBA").convert(mode)
    background = Image.new("RGBA", image.size, (*WHITE, 255))
    whole = Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    monkeypatch.setattr(decode, "STRIP_PIXELS", 97 * 10 + 5)  # 10 rows; the last strip: 3
    np.testing.assert_array_equal(np.asarray(decode.to_rgb(image)), np.asarray(whole))


def test_big_images_that_decode_at_full_size_are_decoded_one_at_a_time(monkeypatch) -> None:
    """Each holds ~8 bytes a pixel while it decodes; a worker's threads decoding four at once
    could go past the proxy's memory limit. Small images overlap, and so do big JPEGs that
    libjpeg decodes shrunk; a JPEG too narrow to shrink is big."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from imaging import decode

    monkeypatch.setattr(decode, "BIG_DECODE_PIXELS", 600 * 600)
    inside, most = 0, 0
    changed, real = threading.Condition(), decode.to_rgb

    def counting_to_rgb(image):
        nonlocal inside, most
        with changed:
            inside += 1
            most = max(most, inside)
            changed.notify_all()
            # Until a second thread is inside too; decodes that are serialised never get
            # there, so they wait out the timeout, long enough for a busy machine.
            changed.wait_for(lambda: most >= 2, timeout=1.5)
            inside -= 1
        return real(image)

    monkeypatch.setattr(decode, "to_rgb", counting_to_rgb)

    def overlap(data: bytes) -> int:
        nonlocal most
        most = 0
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda d: to_pixels(d, LIMIT), [data] * 4))
        return most

    assert overlap(encode(solid(RED, (700, 700)), "PNG")) == 1
    assert overlap(encode(solid(RED, (1000, 500)), "JPEG")) == 1  # under 2 x 256: not shrunk
    assert overlap(encode(solid(RED, (500, 500)), "PNG")) >= 2
    # A progressive JPEG holds the whole image's coefficients however small it is drafted.
    assert overlap(encode(solid(RED, (1300, 1300)), "JPEG", progressive=True)) == 1
    assert overlap(encode(solid(RED, (4096, 4096)), "JPEG")) >= 2  # decoded at 512 x 512


def test_la_is_composited_over_white() -> None:
    image = Image.new("LA", (40, 40), (0, 0))
    assert Image.open(io.BytesIO(encode(image))).mode == "LA"
    assert_color(pixels(encode(image)), WHITE, tol=0)


def test_palette_with_transparent_index_over_white() -> None:
    image = solid(RED, (40, 40)).convert("P", palette=Image.Palette.ADAPTIVE)
    index = image.getpixel((0, 0))
    data = encode(image, "PNG", transparency=index)
    assert "transparency" in Image.open(io.BytesIO(data)).info
    assert_color(pixels(data), WHITE, tol=0)
    gif = encode(image, "GIF", transparency=index)
    assert_color(pixels(gif), WHITE, tol=0)


def test_sixteen_bit_grey_keeps_the_high_byte() -> None:
    image = Image.fromarray(np.full((40, 40), 40000, dtype=np.uint16))
    data = encode(image)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    assert_color(pixels(data), (156, 156, 156), tol=0)  # 40000 >> 8


@pytest.mark.parametrize(("value", "expected"), [(40000, 156), (100, 100), (-5, 0)])
def test_32_bit_integer_grey(value: int, expected: int) -> None:
    image = Image.fromarray(np.full((40, 40), value, dtype=np.int32))
    assert image.mode == "I"
    assert_color(pixels(encode(image, "TIFF")), (expected,) * 3, tol=0)


@pytest.mark.parametrize(
    ("value", "expected"), [(0.5, 128), (1.0, 255), (200.0, 200), (900.0, 255)]
)
def test_float_grey(value: float, expected: int) -> None:
    image = Image.fromarray(np.full((40, 40), value, dtype=np.float32))
    assert image.mode == "F"
    assert_color(pixels(encode(image, "TIFF")), (expected,) * 3, tol=0)


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [solid(RED, (40, 40)), solid(BLUE, (40, 40))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert_color(pixels(data), RED, tol=4)


# ---------- EXIF orientation ----------


def _quadrant_image() -> Image.Image:
    """Red top-left quadrant, blue elsewhere: rotations move the red corner."""
    image = solid(BLUE, (64, 64))
    image.paste(RED, (0, 0, 32, 32))
    return image


@pytest.mark.parametrize(
    ("orientation", "red_corner"),
    [
        (1, (0, 0)),  # as stored
        (2, (0, 1)),  # mirrored horizontally
        (3, (1, 1)),  # rotated 180
        (4, (1, 0)),  # mirrored vertically
        (6, (0, 1)),  # stored rotated 90 CW -> displayed red at top-right
        (8, (1, 0)),  # stored rotated 90 CCW -> displayed red at bottom-left
    ],
)
def test_exif_orientation_is_applied(orientation: int, red_corner: tuple[int, int]) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = pixels(encode(_quadrant_image(), "JPEG", quality=95, exif=exif))
    row, col = red_corner
    corner = out[row * 24 : row * 24 + 8, col * 24 : col * 24 + 8].reshape(-1, 3).mean(0)
    assert corner[0] > 150 and corner[2] < 100, f"orientation {orientation}: corner is {corner}"


# ---------- sizes and geometry ----------


def test_exact_32_square_png_is_unchanged() -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert np.array_equal(pixels(encode(Image.fromarray(array))), array)


def test_one_pixel_image_is_upscaled() -> None:
    assert_color(pixels(encode(solid(GREEN, (1, 1)))), GREEN, tol=0)


@pytest.mark.parametrize("size", [(300, 100), (100, 300)])
def test_center_crop_keeps_the_middle(size: tuple[int, int]) -> None:
    """Three bands along the long side; only the middle one survives the square crop."""
    width, height = size
    image = solid(RED, size)
    if width > height:
        image.paste(GREEN, (100, 0, 200, 100))
        image.paste(BLUE, (200, 0, 300, 100))
    else:
        image.paste(GREEN, (0, 100, 100, 200))
        image.paste(BLUE, (0, 200, 100, 300))
    assert_color(pixels(encode(image))[4:28, 4:28], GREEN, tol=0)


def test_large_jpeg_draft_decoding_stays_close_to_full_decoding() -> None:
    """A 4000x3000 JPEG is decoded at reduced scale; the 32x32 result barely moves."""
    from imaging.decode import resize_center_square

    rng = np.random.default_rng(1)
    field = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    data = encode(field.resize((4000, 3000), Image.Resampling.BICUBIC), "JPEG", quality=90)
    fast = pixels(data)
    full = np.asarray(resize_center_square(Image.open(io.BytesIO(data)).convert("RGB"), 32))
    diff = np.abs(fast.astype(int) - full.astype(int))
    assert diff.mean() < 2.5 and diff.max() <= 12


# ---------- limits and bad input ----------


def test_pixel_limit_is_checked_on_the_header_before_decoding() -> None:
    # 7000x7000 = 49 MP: over our 40 MP limit, under Pillow's own bomb threshold. The file
    # holds no pixel data, so a decode attempt would be a 400, not a 413.
    with pytest.raises(ImageTooLarge, match="megapixels"):
        to_pixels(png_header_only(7000, 7000), LIMIT)
    with pytest.raises(ImageTooLarge):
        to_pixels(png_header_only(100_000, 100_000), LIMIT)  # Pillow's bomb error path
    with pytest.raises(ImageError, match="corrupt"):
        to_pixels(png_header_only(100, 100), LIMIT)  # under the limit: decoding fails


def test_limit_is_configurable() -> None:
    data = encode(solid(RED, (100, 100)))
    pixels(data, 10_000)  # exactly at the limit: decodes (pixels() checks the tensor)
    with pytest.raises(ImageTooLarge):
        to_pixels(data, 9_999)


@pytest.mark.parametrize(
    "data",
    [b"hello, I am text", b"%PDF-1.7\n...", encode(solid(RED), "PPM"), encode(solid(RED), "ICO")],
    ids=["text", "pdf", "ppm", "ico"],
)
def test_non_images_and_unaccepted_formats_are_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedImage):
        to_pixels(data, LIMIT)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "a HEIC photo"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1" + bytes(64), "an AVIF image"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "an SVG drawing"),
        (b"%PDF-1.7\n...", "a PDF document"),
    ],
    ids=["heic", "avif", "svg", "pdf"],
)
def test_a_known_format_that_cannot_be_read_is_named(data: bytes, named: str) -> None:
    """A picker offers these as images (an iPhone photo is HEIC): "not an image we can read"
    left the user guessing what to change."""
    with pytest.raises(UnsupportedImage, match=f"this is {named}, .* save it as JPEG or PNG"):
        to_pixels(data, LIMIT)


def test_empty_and_truncated_files_are_bad_requests() -> None:
    with pytest.raises(ImageError, match="empty") as empty:
        to_pixels(b"", LIMIT)
    assert empty.value.http_status == 400
    jpeg = encode(solid(RED, (200, 200)), "JPEG")
    with pytest.raises(ImageError, match="corrupt") as truncated:
        to_pixels(jpeg[: len(jpeg) // 2], LIMIT)
    assert type(truncated.value) is ImageError and truncated.value.http_status == 400


def test_statuses() -> None:
    assert (ImageError.http_status, ImageTooLarge.http_status, UnsupportedImage.http_status) == (
        400,
        413,
        415,
    )


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(1, 200),
    height=st.integers(1, 200),
    mode=st.sampled_from(["RGB", "RGBA", "L", "LA", "P", "1", "CMYK"]),
    fmt=st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"]),
    seed=st.integers(0, 1000),
)
def test_any_valid_image_gives_a_32x32_rgb_tensor(width, height, mode, fmt, seed) -> None:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)
    try:
        data = encode(image, fmt)
    except (OSError, ValueError, KeyError):
        return  # this format cannot store this mode; nothing to decode
    pixels(data)


def _lossless(fmt: str) -> dict:
    return {"lossless": True} if fmt == "WEBP" else {}


# A 184-byte TIFF found by fuzzing the proxy: Pillow raised TypeError in exif_transpose (a 500).
FUZZED_TIFF = bytes.fromhex(
    "49492a0028000000789cedc2411100000c02a0bf21ec1fc5380b3238b2465555d57f0fda77653d000b00"
    "00010300010000002800000001010300010000001e0000000201030003000000b2000000030103000"
    "13d00000800000006010300010000000200000011010200010000000800d100120103000100000006"
    "00000015010300010000000300000016010300010000001e00000017010400010000001f0000001c01"
    "0300010000000100b50000000000080008000800"
)


@pytest.mark.parametrize(
    ("data", "error", "fragment"),
    [
        (tiled_tiff(16, 16, 4096), ImageError, "tiles (4096 x 4096) are larger than the image"),
        (many_scans_jpeg(150), ImageError, "more than 100 scans"),
        (rle8_bmp(300, 20), UnsupportedImage, "run-length-encoded BMP"),
        (FUZZED_TIFF, ImageError, "corrupt or truncated"),
    ],
    ids=["tiff-tile-bomb", "jpeg-scan-bomb", "bmp-rle", "fuzzed-tiff"],
)
def test_files_that_cost_far_more_than_their_pixels_are_refused_from_the_header(
    data, error, fragment
) -> None:
    """A few kilobytes that would take gigabytes (a 26000-pixel tile took 2 GB) or minutes
    of CPU (3,000 copies of a JPEG scan; RLE BMPs decode in Python) are refused before any
    pixel is decoded."""
    with pytest.raises(error, match=re.escape(fragment)):
        to_pixels(data, LIMIT)


def test_the_well_behaved_kinds_of_those_files_still_decode() -> None:
    for data in (tiled_tiff(16, 16, 16), many_scans_jpeg(20), encode(solid(RED, (30, 20)), "BMP")):
        pixels(data)


@pytest.mark.parametrize(
    ("image", "fmt", "share", "kind"),
    [
        (Image.new("F", (60, 50)), "TIFF", 4, "a 32-bit float TIFF image"),
        (Image.new("I;16", (60, 50)), "PNG", 2, "a 16-bit PNG image"),
        (solid(RED, (60, 50)), "WEBP", 2, "a WEBP image"),
    ],
)
def test_formats_that_decode_at_several_bytes_a_pixel_get_a_share_of_the_limit(
    image, fmt, share, kind
) -> None:
    """A 40-megapixel float TIFF peaked at 833 MB, a lossless WebP at 642 MB: past a proxy
    pod's memory with two workers, where an RGB PNG of that size stays under it."""
    data = encode(image, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    pixels(data, 3000 * share)  # 3,000 pixels fit the share
    with pytest.raises(ImageTooLarge, match=f"^{kind} may have at most"):
        to_pixels(data, 3000 * share - share)  # named in words, not by Pillow's mode ("I;16")
    pixels(encode(solid(RED, (60, 50)), "PNG"), 3000)  # RGB: the whole limit

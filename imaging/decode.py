"""Uploaded image bytes -> the uint8 [32,32,3] tensor the `pixels` signature takes.

Mirrors the in-graph preprocessing of `serving_default` (decode, center-crop to a square,
bilinear resize with antialiasing to 32x32) so that both signatures agree, and adds what a
browser upload needs on top: EXIF orientation, every Pillow mode to RGB, limits checked on
the header before the pixels are decoded. Works on bytes in memory only, with Pillow and
NumPy alone: training decodes data-set files through `to_pixels` too (training/data.py), so a
photo is seen in training exactly as the page sends it.
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import warnings

import numpy as np
from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

IMAGE_SIZE = 32
# The most pixels (width * height) an image may have: the proxy's MAX_PIXELS default and the
# exported graph's fixed limit (export/config.py) are this one figure.
MAX_PIXELS = 40_000_000
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")
# JPEGs whose square crop is at least 2x this many times the output side are decoded at
# 1/2..1/8 scale in the DCT domain (libjpeg "draft" mode): much faster for camera photos, and
# still 8x the output size, so the antialiased result hardly changes.
DRAFT_FACTOR = 8
WHITE = (255, 255, 255)
# Transparency is composited over white this many pixels at a time: on the whole image, its
# RGBA copy, the white background and their blend took ~19 bytes a pixel (760 MB for one
# 40-megapixel PNG, past the proxy pod's memory limit); a strip at a time adds ~16 MB.
STRIP_PIXELS = 1 << 20
# Images that decode to more pixels than this (PNG, WebP..., and JPEGs that libjpeg cannot
# shrink enough while decoding) need ~8 bytes a pixel for a moment (320 MB at 40
# megapixels): one at a time per process, so that a worker's threads cannot together go
# past its memory limit.
BIG_DECODE_PIXELS = 4_000_000
_big_decodes = threading.Lock()
# What some files cost to decode beyond their pixel count, refused from the header (a few
# hundred bytes could otherwise take gigabytes or minutes):
# - pixels allowed, as a share of max_pixels, for formats that need more bytes a pixel while
#   decoding (a 40-megapixel 32-bit TIFF peaked at 833 MB, a lossless WebP at 642 MB);
PIXEL_SHARE = {"F": 4, "I": 4, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2, "WEBP": 2}
# How the refusal names those kinds to a user, instead of Pillow's mode names.
SHARE_KIND = {"F": "32-bit float", "I": "32-bit", "I;16": "16-bit", "I;16L": "16-bit",
              "I;16B": "16-bit", "I;16N": "16-bit"}  # fmt: skip
# - a TIFF tile is decoded whole: one of 26000 x 26000 in a 16 x 16 image took 2 GB;
TILE_SLACK = 16
# - every scan of a progressive JPEG is a pass over the whole image (libjpeg's default
#   script has about ten; 3,000 copies of one scan in 389 KB took minutes of CPU);
MAX_JPEG_SCANS = 100
# - run-length-encoded BMPs decode in pure Python (5 s for 36 megapixels).
BMP_RLE = (1, 2)  # BI_RLE8, BI_RLE4
# Importing a plugin registers its decoder; Image.open alone preloads only a few formats and
# Image.init() would load ~40. Phone "MPO" JPEGs open through the JPEG plugin.
DECODERS = (
    BmpImagePlugin,
    GifImagePlugin,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)


class ImageError(Exception):
    """An upload we cannot turn into a tensor; carries the HTTP status to answer with."""

    http_status = 400
    kind = "bad_image"


class ImageTooLarge(ImageError):
    http_status = 413
    kind = "too_large"


class UnsupportedImage(ImageError):
    http_status = 415
    kind = "unsupported_media"


def to_pixels(data: bytes, max_pixels: int, size: int = IMAGE_SIZE) -> np.ndarray:
    """Decode one image and return its uint8 [size, size, 3] tensor."""
    image = open_image(data, max_pixels)
    try:
        big = _pixels_to_decode(image, size) > BIG_DECODE_PIXELS
        with _big_decodes if big else contextlib.nullcontext():
            ImageOps.exif_transpose(image, in_place=True)  # in place: a copy costs ~2 ms
            rgb = to_rgb(image)
            return np.asarray(resize_center_square(rgb, size), dtype=np.uint8)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError, KeyError,
            struct.error) as exc:  # fmt: skip
        # Pillow's plugins raise all of these for some damaged files.
        raise ImageError("the image file is corrupt or truncated") from exc


def decode_cost(data: bytes, max_pixels: int, size: int = IMAGE_SIZE) -> int:
    """The pixels `to_pixels` will decode `data` to, from its header (a baseline JPEG shrinks
    while it decodes). A count, not a cost: WebP and 16- or 32-bit images take 2-4x the bytes
    a pixel, which open_image's per-image limit allows for. Refuses what open_image refuses."""
    return _pixels_to_decode(open_image(data, max_pixels), size)


def _pixels_to_decode(image: Image.Image, size: int) -> int:
    """Sets a JPEG's draft size (header only) and counts the pixels it will decode to. A
    progressive JPEG keeps every coefficient of the full image while it decodes, whatever the
    size it is drafted to: it counts at its full size."""
    full = image.width * image.height
    _draft_jpeg(image, DRAFT_FACTOR * size)
    return full if image.info.get("progressive") else image.width * image.height


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Read only the header, and refuse decompression bombs before any pixel is decoded."""
    if not data:
        raise ImageError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(_too_many_pixels(max_pixels)) from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedImage(_unreadable_message(data)) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError("the image file is corrupt") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(_too_many_pixels(max_pixels, width, height))
    if width < 1 or height < 1:
        raise ImageError("the image has no pixels")
    _refuse_costly_decodes(image, data, max_pixels)
    return image


def _refuse_costly_decodes(image: Image.Image, data: bytes, max_pixels: int) -> None:
    """The header checks of the costs listed at PIXEL_SHARE..BMP_RLE."""
    width, height = image.size
    share = PIXEL_SHARE.get(image.mode) or PIXEL_SHARE.get(image.format, 1)
    if width * height > max_pixels // share:
        kind = " ".join(filter(None, ("a", SHARE_KIND.get(image.mode), image.format, "image")))
        raise ImageTooLarge(
            f"{kind} may have at most {max_pixels // share:,} pixels (it decodes at several "
            f"bytes a pixel); this one has {width} x {height}"
        )
    if image.format == "TIFF":
        tile = image.tag_v2.get(322, 0), image.tag_v2.get(323, 0)  # TileWidth, TileLength
        if tile[0] > _round_up(width, TILE_SLACK) or tile[1] > _round_up(height, TILE_SLACK):
            raise ImageError(f"the TIFF's tiles ({tile[0]} x {tile[1]}) are larger than the image")
    if image.format in ("JPEG", "MPO") and data.count(b"\xff\xda") > MAX_JPEG_SCANS:
        raise ImageError(
            f"the JPEG has more than {MAX_JPEG_SCANS} scans (a progressive JPEG has about ten)"
        )
    if image.format == "BMP" and image.info.get("compression") in BMP_RLE:
        raise UnsupportedImage(
            "this is a run-length-encoded BMP, which cannot be read here: save it as PNG "
            "and try again"
        )


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


# Image formats people often have that Pillow does not read here, by their first bytes: an
# iPhone photo is HEIC unless set to "Most Compatible", and a file picker offers SVG as an image.
_ISO_MEDIA_BRANDS = {
    b"heic": "a HEIC photo", b"heix": "a HEIC photo", b"hevc": "a HEIC photo",
    b"heim": "a HEIC photo", b"heis": "a HEIC photo", b"mif1": "a HEIF image",
    b"msf1": "a HEIF image", b"avif": "an AVIF image", b"avis": "an AVIF image",
}  # fmt: skip
READABLE = "JPEG, PNG, GIF, BMP, WebP or TIFF"


def _unreadable_message(data: bytes) -> str:
    """Names the format when it is a known one that cannot be read, so the fix is plain."""
    head = data[:512].lstrip()
    if data[4:8] == b"ftyp" and data[8:12] in _ISO_MEDIA_BRANDS:
        kind = _ISO_MEDIA_BRANDS[data[8:12]]
    elif head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        kind = "an SVG drawing"
    elif head.startswith(b"%PDF"):
        kind = "a PDF document"
    else:
        return f"this file is not an image we can read (use {READABLE})"
    return f"this is {kind}, which cannot be read here: save it as JPEG or PNG and try again"


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: transparency over white, high bit depths scaled down.
    An RGB image comes back as it is: convert() would copy it."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = Image.fromarray(_to_uint8(np.asarray(image)), mode="L")
    if _has_alpha(image):
        return _over_white(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def _over_white(image: Image.Image) -> Image.Image:
    """The image composited over opaque white, a strip of rows at a time (STRIP_PIXELS)."""
    width, height = image.size
    rows = max(1, STRIP_PIXELS // width)
    out = Image.new("RGB", image.size)
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(top + rows, height))).convert("RGBA")
        white = Image.new("RGBA", strip.size, (*WHITE, 255))
        out.paste(Image.alpha_composite(white, strip).convert("RGB"), (0, top))
    return out


def resize_center_square(image: Image.Image, size: int) -> Image.Image:
    """Center-crop to a square and resize with an antialiased bilinear (triangle) filter.

    Same geometry as tf.image's center crop (offset = (long - short) // 2) followed by
    tf.image.resize(method="bilinear", antialias=True); Pillow's BILINEAR widens its kernel
    by the scale factor when shrinking, which is exactly TF's antialias behaviour.
    """
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    box = (left, top, left + side, top + side)
    return image.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=None)


def _draft_jpeg(image: Image.Image, min_side: int) -> None:
    """Let libjpeg decode big JPEGs at a reduced scale (keeps the crop >= min_side)."""
    if image.format not in ("JPEG", "MPO"):
        return
    width, height = image.size
    short = min(width, height)
    if short < 2 * min_side:
        return
    scale = min_side / short
    image.draft(image.mode, (int(width * scale) + 1, int(height * scale) + 1))


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """16/32-bit integer and float grey levels to 0..255.

    Integers above 255 are taken as 16-bit (>> 8, as TF's decode_png does for 16-bit PNGs);
    floats up to 1.0 as 0..1, larger floats as 0..255.
    """
    if array.dtype.kind == "f":
        peak = float(np.nanmax(array)) if array.size else 0.0
        scaled = array * 255.0 if peak <= 1.0 else array
        return np.clip(np.nan_to_num(scaled), 0, 255).round().astype(np.uint8)
    # In the array's own type (16 or 32 bits): an int64 copy was 8 bytes a pixel.
    if array.size and array.max() > 255:
        if array.dtype.itemsize > 2 or array.dtype.kind == "i":  # uint16 needs no clipping
            array = np.clip(array, 0, 65535)
        array = array >> 8
    return np.clip(array, 0, 255).astype(np.uint8)


def _too_many_pixels(limit: int, width: int | None = None, height: int | None = None) -> str:
    size = f" ({width}x{height})" if width else ""
    return f"the image has too many pixels{size}; the limit is {limit / 1e6:g} megapixels"

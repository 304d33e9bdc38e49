"""`serving_default` decodes every format and mode like the documented Pillow steps, and
refuses what is not an image with INVALID_ARGUMENT instead of crashing."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")

from image_cases import CASES, RGB  # noqa: E402
from image_files import encode  # noqa: E402

from export.image_graph import decode_to_square  # noqa: E402


def pillow_reference(data: bytes) -> np.ndarray:
    """The module docstring's steps with Pillow (what the proxy mirrors): alpha over white,
    RGB (16-bit grey keeps its high byte), center-crop, antialiased bilinear resize to 32x32."""
    with Image.open(io.BytesIO(data)) as img:
        if img.mode.startswith("I"):
            img = Image.fromarray((np.asarray(img).astype(np.int64) >> 8).astype(np.uint8))
        if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
            rgba = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
        img = img.convert("RGB")
        w, h = img.size
        s = min(w, h)
        box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
        if s != 32:
            img = img.resize((32, 32), Image.Resampling.BILINEAR, box=box, reducing_gap=None)
        else:
            img = img.crop(box)
        return np.asarray(img, np.int32)


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_pillow_reference(name):
    data = CASES[name]
    graph = decode_to_square(tf.constant(data)).numpy().astype(np.int32)
    diff = np.abs(graph - pillow_reference(data))
    assert graph.shape == (32, 32, 3)
    # Pillow rounds to uint8 between its two resize passes: a level or two, rarely more
    # (most at the sharp edges of palette images).
    assert diff.mean() < 0.5, name
    assert np.mean(diff > 2) < 0.03, name
    if name in ("square_32", "crop_only_32x50", "one_pixel"):
        assert diff.max() == 0, name


def test_center_crop_keeps_the_middle():
    image = np.zeros((32, 96, 3), np.uint8)
    image[:, 32:64] = 255  # only the central square is white
    out = decode_to_square(tf.io.encode_png(image)).numpy()
    assert out.min() == 255


def test_cifar_jpegs_decode_bit_identically_to_pillow(cifar_sample):
    for data in cifar_sample.data[::10]:
        graph = decode_to_square(tf.constant(data)).numpy()
        np.testing.assert_array_equal(graph, pillow_reference(data))


def test_every_case_through_the_loaded_signature(serving_default):
    out = serving_default(image_bytes=tf.constant([CASES[name] for name in sorted(CASES)]))
    assert out["probabilities"].shape == (len(CASES), 10)
    assert np.all(np.isfinite(out["probabilities"].numpy()))


BAD = {
    "text": (b"hello, I am not an image", "Unknown image file format"),
    "empty": (b"", "Input is empty"),
    "two_bytes": (b"\xff\xd8", "Unknown image file format"),
    "truncated_jpeg": (CASES["jpeg_wide"][:200], "JPEG"),
    "truncated_png": (CASES["png_rgb"][:100], "PNG|png"),
    "one_bit_bmp": (encode(RGB.convert("1"), "BMP"), "channels"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_invalid_argument(serving_default, name):
    data, message = BAD[name]
    batch = tf.constant([CASES["jpeg_wide"], data])  # one bad image fails the request
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        serving_default(image_bytes=batch)
    # the model still answers afterwards
    assert serving_default(image_bytes=tf.constant([CASES["png_rgb"]]))["classes"].shape == (1, 10)

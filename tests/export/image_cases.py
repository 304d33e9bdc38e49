"""Encoded test images of every format and mode `serving_default` and the proxy decode:
photo-like pixels, so that resizing differences show."""

from __future__ import annotations

import numpy as np
from image_files import encode
from PIL import Image


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth gradient with noise: photo-like, with an off-centre bright square."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1)
    base[h // 3 : h // 2, w // 3 : w // 2] = 250
    noise = np.random.default_rng(seed).normal(0, 12, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def rgba(h: int, w: int) -> Image.Image:
    alpha = np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1))
    return Image.fromarray(np.dstack([photo(h, w), alpha]), "RGBA")


RGB = Image.fromarray(photo(60, 90))
CASES = {
    "jpeg_wide": encode(RGB, "JPEG", quality=90),
    "jpeg_tall": encode(Image.fromarray(photo(97, 41)), "JPEG"),
    "jpeg_grayscale": encode(RGB.convert("L"), "JPEG"),
    "jpeg_large": encode(Image.fromarray(photo(900, 1200)), "JPEG"),
    "png_rgb": encode(RGB, "PNG"),
    "png_grayscale": encode(RGB.convert("L"), "PNG"),
    "png_rgba": encode(rgba(60, 90), "PNG"),
    "png_grey_alpha": encode(rgba(60, 90).convert("LA"), "PNG"),
    "png_palette": encode(RGB.convert("P"), "PNG"),
    "png_16bit": encode(Image.fromarray(photo(40, 40)[..., 0].astype(np.uint16) * 257), "PNG"),
    "gif": encode(RGB.convert("P"), "GIF"),
    "bmp_rgb": encode(RGB, "BMP"),
    "bmp_grayscale": encode(RGB.convert("L"), "BMP"),
    "bmp_palette": encode(RGB.convert("P"), "BMP"),
    "bmp_32bit": encode(RGB.convert("RGBA"), "BMP"),
    "upscaled_small": encode(Image.fromarray(photo(20, 25)), "PNG"),
    "one_pixel": encode(Image.fromarray(photo(1, 1)), "PNG"),
    "square_32": encode(Image.fromarray(photo(32, 32)), "PNG"),
    "crop_only_32x50": encode(Image.fromarray(photo(32, 50)), "PNG"),
}

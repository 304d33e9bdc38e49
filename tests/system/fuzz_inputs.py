"""Hypothesis strategies for hostile input: broken image files and odd JSON.

Mutating real files finds far more than random bytes: a decoder only reaches its deeper
states when the magic number and most of the header are right.
"""

from __future__ import annotations

import base64
import io
from functools import cache

import numpy as np
from hypothesis import strategies as st
from PIL import Image

FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")


@cache
def seed_files() -> tuple[bytes, ...]:
    """One small valid file per format the proxy reads (plus a progressive JPEG and an
    RGBA PNG), from a smooth random picture."""
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8))
    picture = small.resize((40, 30), Image.Resampling.BICUBIC)
    files = []
    for fmt in FORMATS:
        buffer = io.BytesIO()
        picture.save(buffer, fmt)
        files.append(buffer.getvalue())
    for image, fmt, options in (
        (picture, "JPEG", {"progressive": True, "quality": 80}),
        (picture.convert("RGBA"), "PNG", {}),
    ):
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        files.append(buffer.getvalue())
    return tuple(files)


@st.composite
def mutated_images(draw) -> bytes:
    """A valid image file with a few bytes flipped, inserted or deleted, or cut short."""
    data = bytearray(draw(st.sampled_from(seed_files())))
    for _ in range(draw(st.integers(0, 6))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(("flip", "insert", "delete", "truncate")))
        if action == "flip" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        elif action == "truncate":
            del data[position:]
    return bytes(data)


def image_bytes() -> st.SearchStrategy[bytes]:
    """Mostly mutated real files, sometimes valid ones or plain noise."""
    return st.one_of(mutated_images(), st.sampled_from(seed_files()), st.binary(max_size=2000))


def json_values(leaves: st.SearchStrategy | None = None) -> st.SearchStrategy:
    """Arbitrary JSON documents (NaN and huge numbers included)."""
    scalars = leaves or st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=30,
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()

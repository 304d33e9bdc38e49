"""Every name and default of the export area, in one place (names are DESIGN.md's contract)."""

from __future__ import annotations

from pathlib import Path

# The side the model sees: the proxy's decoder and the graph share the one figure.
from imaging.decode import IMAGE_SIZE, MAX_PIXELS  # noqa: F401 - re-exported for export/
from training.config import TTA_NAMES

MODEL_NAME = "cifar10"
# The file types serving_default decodes in its graph (export/image_graph.py): what its
# accuracy is measured on. Training also reads TIFF, which the graph refuses.
SERVED_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
DEFAULT_BASE_PATH = Path("models/cifar10")

# Signatures and their tensor names (DESIGN.md "Interfaces").
SERVING_SIGNATURE = "serving_default"
PIXELS_SIGNATURE = "pixels"
BYTES_INPUT = "image_bytes"
PIXELS_INPUT = "images"

# Files inside a SavedModel folder besides TensorFlow's own.
WARMUP_FILE = Path("assets.extra/tf_serving_warmup_requests")
LABELS_ASSET = Path("assets/labels.txt")
INFO_ASSET = Path("assets/model_info.json")

# --tta: a level of training.config.TTA_NAMES, or "auto" (export.tta.choose_tta picks one).
TTA_CHOICES = ("auto", *(str(level) for level in TTA_NAMES))

# A best class under this probability is marked as a guess, by export.predict as by the page
# (settings.unsureBelow in proxy/static/app.js; a test keeps the two equal).
GUESS_BELOW = 0.5

# Issue 3: the export must give the Keras model's top-1 class on at least these shares.
MIN_PIXELS_AGREEMENT = 0.999
MIN_SERVING_DEFAULT_AGREEMENT = 0.99

# serving_default refuses, from the header and before decoding, an image of more pixels than
# this (width * height): decoders allocate from the header alone, so a 389 kB PNG claiming
# 20000x20000 would cost tens of GB and seconds: MAX_PIXELS (imaging/decode.py), the proxy's
# default too, with the same test (>). The proxy refuses more besides: a lower share of it for
# images that decode at more bytes a pixel, and headers that promise a costly decode
# (imaging/decode.py); the graph has only TensorFlow's decoders and this limit.
# A GIF's frame sizes are only found by walking its blocks (giflib decodes every frame, each at
# its own size, even when the graph keeps only the first). The walk's cost is bounded by a budget
# of loop steps: a data sub-block costs 1 (about 7 us here), a block header (an extension or a
# frame) 12, the cost of its inner loop's set-up (about 80 us). The budget covers about 16 MB of
# normal GIF (255-byte sub-blocks), and bounds the worst case near 0.5 s: what decoding a
# 40-megapixel PNG within MAX_PIXELS costs anyway (docs/RELIABILITY.md).
GIF_WALK_STEPS = 65_536
GIF_BLOCK_STEPS = 12

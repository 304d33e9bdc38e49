"""A Keras classifier as a TF-Serving SavedModel whose preprocessing lives in the graph.

Signatures (names and dtypes are DESIGN.md's contract; N is a free batch dimension):

* ``serving_default``: input ``image_bytes`` DT_STRING [N], each an encoded JPEG, PNG, GIF,
  BMP or WebP of at most ``MAX_PIXELS`` (export/config.py) width * height, decoded,
  center-cropped and resized to 32x32 inside the graph exactly as ``export/image_graph.py``
  describes, then run through the ``pixels`` computation below. A string that is not a
  decodable image fails the whole request with INVALID_ARGUMENT; it never crashes the server.

* ``pixels``: input ``images`` DT_UINT8 [N, 32, 32, 3] (RGB, what a client that decodes itself
  sends, e.g. the proxy: EXIF-transpose, RGB with transparency over white, center-crop,
  antialiased resize).
  A ``fast`` model comes with its input normalisation, BatchNorms and logit scale folded into
  its convs and head (``training.fold.fold_for_serving``: the same function in fewer ops);
  other models normalise in their first layer. Either way the raw 0..255 pixels go in; with
  test-time augmentation the logits of the flipped (and 1-pixel reflect-shifted) copies are
  averaged, exactly as ``training.inference.make_logits_fn``.

Both return ``probabilities`` float32 [N, C] (softmax, in class-index order), ``classes``
string [N, C] (class names sorted by probability, best first; ties keep class order) and
``scores`` float32 [N, C] (the probabilities sorted the same way).

The class names, normalisation statistics and export information are stored as variables
(``class_names``, ``mean``, ``std``, ``info`` on the loaded object) and as plain files
``assets/labels.txt`` and ``assets/model_info.json``, so no client needs a side file.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import tensorflow as tf

from export.config import (
    BYTES_INPUT,
    IMAGE_SIZE,
    LABELS_ASSET,
    PIXELS_INPUT,
    PIXELS_SIGNATURE,
    SERVING_SIGNATURE,
)
from export.image_graph import decode_batch
from export.info import write_info
from export.warmup import write_warmup_requests
from training.config import TTA_ACCURACY_KEYS, TTA_NAMES
from training.inference import make_logits_fn

PIXELS_SPEC = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.uint8, name=PIXELS_INPUT)
BYTES_SPEC = tf.TensorSpec([None], tf.string, name=BYTES_INPUT)


class ServingModule(tf.Module):
    """The exported object: the Keras model, its metadata and the two serving signatures."""

    def __init__(self, model: keras.Model, meta: dict, tta: int, info: dict):
        super().__init__(name="cifar10_serving")
        self.model = model
        self.class_names = tf.Variable(meta["class_names"], trainable=False, name="class_names")
        self.mean = tf.Variable(meta["mean"], dtype=tf.float32, trainable=False, name="mean")
        self.std = tf.Variable(meta["std"], dtype=tf.float32, trainable=False, name="std")
        self.info = tf.Variable(json.dumps(info), trainable=False, name="info")
        self._logits = make_logits_fn(model, tta)
        self.num_classes = len(meta["class_names"])

    def _predict(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        # An empty batch skips the model: its convolutions reject zero-size inputs.
        logits = tf.cond(
            tf.shape(images)[0] > 0,
            lambda: tf.cast(self._logits(images), tf.float32),
            lambda: tf.zeros([0, self.num_classes]),
        )
        probabilities = tf.nn.softmax(logits, axis=-1)
        order = tf.argsort(probabilities, axis=-1, direction="DESCENDING", stable=True)
        return {
            "probabilities": probabilities,
            "classes": tf.gather(self.class_names, order),
            "scores": tf.gather(probabilities, order, batch_dims=1),
        }

    @tf.function(input_signature=[PIXELS_SPEC])
    def pixels(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._predict(images)

    @tf.function(input_signature=[BYTES_SPEC])
    def serving_default(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._predict(decode_batch(image_bytes))


def export_info(meta: dict, tta: int, extra: dict | None = None) -> dict:
    """What the SavedModel says about itself (assets/model_info.json and the `info` variable)."""
    accuracy_key = TTA_ACCURACY_KEYS[tta]
    return {
        **(extra or {}),
        "class_names": list(meta["class_names"]),
        "mean": list(meta["mean"]),
        "std": list(meta["std"]),
        "arch": meta.get("arch"),
        "params": meta.get("params"),
        "seed": meta.get("seed"),
        "data": meta.get("data"),
        "tta": tta,
        "expected_test_accuracy": meta.get(accuracy_key),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tta_name": TTA_NAMES[tta],
    }


def save_savedmodel(
    model: keras.Model,
    meta: dict,
    out_dir: str | Path,
    tta: int = 0,
    extra_info: dict | None = None,
) -> Path:
    """Write the SavedModel (+ assets and warm-up records) to `out_dir` and return it."""
    out_dir = Path(out_dir)
    info = export_info(meta, tta, extra_info)
    module = ServingModule(model, meta, tta, info)
    signatures = {SERVING_SIGNATURE: module.serving_default, PIXELS_SIGNATURE: module.pixels}
    tf.saved_model.save(module, str(out_dir), signatures=signatures)
    (out_dir / LABELS_ASSET).parent.mkdir(exist_ok=True)
    (out_dir / LABELS_ASSET).write_text("\n".join(meta["class_names"]) + "\n")
    write_info(out_dir, info)
    write_warmup_requests(out_dir)
    return out_dir

"""Accuracy of an exported SavedModel, and its agreement with the Keras model it came from.

Both signatures are measured: `pixels` on the decoded test arrays, `serving_default` on the
original encoded files (what a REST client sends), so a preprocessing mismatch shows up.
"""

from __future__ import annotations

import tarfile
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from export.config import (
    BYTES_INPUT,
    IMAGE_SIZE,
    PIXELS_INPUT,
    PIXELS_SIGNATURE,
    SERVING_SIGNATURE,
)
from export.encoded import EncodedImages, read_encoded
from export.info import read_info
from imaging.decode import ImageError
from training.data import DataError, Dataset, decode_image_file
from training.inference import predict_logits, top1_accuracy

BATCH_SIZE = 500


class ServedModel:
    """A loaded SavedModel called through its two signatures, in batches."""

    def __init__(self, path: str | Path, batch_size: int = BATCH_SIZE):
        self.path = Path(path)
        self.info = read_info(path)
        self._loaded = tf.saved_model.load(str(path))  # keeps the signatures' variables alive
        self.batch_size = batch_size

    def pixels(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, 32, 32, 3] -> probabilities [N, C]."""
        return self._run(PIXELS_SIGNATURE, PIXELS_INPUT, images)

    def serving_default(self, encoded: list[bytes]) -> np.ndarray:
        """Encoded image files -> probabilities [N, C]."""
        return self._run(SERVING_SIGNATURE, BYTES_INPUT, encoded)

    def _run(self, signature: str, input_name: str, inputs) -> np.ndarray:
        fn = self._loaded.signatures[signature]
        chunks = [
            fn(**{input_name: tf.constant(inputs[i : i + self.batch_size])})["probabilities"]
            for i in range(0, len(inputs), self.batch_size)
        ]
        if not chunks:
            return np.zeros((0, len(self.info["class_names"])), np.float32)
        return np.concatenate([c.numpy() for c in chunks])


def evaluate_saved_model(path: str | Path, dataset: Dataset) -> dict:
    """Test accuracy through `pixels` (decoded arrays) and `serving_default` (original files).

    The `serving_default` figure needs the data set's original files (an image-folder tree or
    its tar); for other sources (the official pickles) it is None.
    """
    served = ServedModel(path)
    names = served.info["class_names"]
    if list(names) != list(dataset.class_names):
        raise ValueError(f"{path} has classes {names}, the data {list(dataset.class_names)}")
    return _report(served, dataset.test.images, dataset.test.labels, _original_test_files(dataset))


def evaluate_saved_model_on_files(path: str | Path, encoded: EncodedImages) -> dict:
    """The same report for labelled image files alone (`<root>/test/<class>/*`, say your own
    photos): classes matched to the model's by name, any subset of them. Files that are not
    readable images are left out and listed under "skipped"."""
    served = ServedModel(path)
    names = list(served.info["class_names"])
    images, labels, readable, skipped = decode_for_model(encoded, names)
    files = replace(encoded.take(readable), labels=labels, class_names=tuple(names))
    return {**_report(served, images, labels, files), "skipped": skipped}


def decode_for_model(
    encoded: EncodedImages, names: list[str]
) -> tuple[np.ndarray, np.ndarray, list[int], list[str]]:
    """Labelled image files as a model with classes `names` sees them: uint8 images, labels
    in the model's class order, which files those are, and "name: reason" for each file that
    is not a readable image. Any subset of the model's classes; another class is an error."""
    unknown = sorted(set(encoded.class_names) - set(names))
    if unknown:
        raise ValueError(f"the data's classes {unknown} are not among the model's: {names}")
    images, readable, skipped = [], [], []
    for i, data in enumerate(encoded.data):
        try:
            images.append(decode_image_file(data, IMAGE_SIZE))
            readable.append(i)
        except (ImageError, OSError, ValueError) as err:
            skipped.append(f"{encoded.names[i]}: {err}")
    if not images:
        raise ValueError(f"none of the {len(encoded)} files is a readable image: {skipped[0]}")
    labels = np.array([names.index(encoded.class_names[encoded.labels[i]]) for i in readable])
    return np.stack(images), labels.astype(np.int32), readable, skipped


def _report(
    served: ServedModel, images: np.ndarray, labels: np.ndarray, files: EncodedImages | None
) -> dict:
    """Accuracy through `pixels` on `images`, and through `serving_default` on `files` (None
    without the original files)."""
    report = {
        "saved_model": str(served.path),
        "tta": served.info["tta"],
        "test_images": len(labels),
        "pixels_accuracy": top1_accuracy(served.pixels(images).argmax(1), labels),
        "serving_default_images": 0,
        "serving_default_accuracy": None,
    }
    if files is not None:
        try:
            top1 = served.serving_default(files.data).argmax(1)
        except tf.errors.InvalidArgumentError as err:  # a file Pillow reads and TF cannot
            raise ValueError(f"serving_default refused a file: {err.message[:300]}") from err
        report["serving_default_images"] = len(files)
        report["serving_default_accuracy"] = top1_accuracy(top1, files.labels)
    return report


def agreement(path: str | Path, model: keras.Model, encoded: EncodedImages) -> dict:
    """Share of images whose top-1 class is the Keras model's, per signature.

    The Keras model sees the files decoded as training and the proxy decode them, with the TTA level
    the export baked in; `pixels` gets the same arrays; `serving_default` the original bytes.
    """
    exported = ServedModel(path)
    tta = exported.info["tta"]
    images = np.stack([decode_image_file(data, IMAGE_SIZE) for data in encoded.data])
    keras_top1 = predict_logits(model, images, tta=tta).argmax(1)
    pixels = exported.pixels(images).argmax(1)
    served = exported.serving_default(encoded.data).argmax(1)
    return {
        "images": len(encoded),
        "tta": tta,
        "pixels_agreement": float(np.mean(pixels == keras_top1)),
        "serving_default_agreement": float(np.mean(served == keras_top1)),
        "keras_accuracy": top1_accuracy(keras_top1, encoded.labels),
        "pixels_accuracy": top1_accuracy(pixels, encoded.labels),
        "serving_default_accuracy": top1_accuracy(served, encoded.labels),
        "serving_default_disagreements": [
            encoded.names[i] for i in np.flatnonzero(served != keras_top1)[:20]
        ],
    }


def _original_test_files(dataset: Dataset) -> EncodedImages | None:
    source = Path(dataset.source)
    try:
        encoded = read_encoded(source, "test")
    # Not an image-folder source: `keras`, the CIFAR-10 python archive or its folder.
    except (OSError, ValueError, tarfile.TarError, DataError):
        return None
    return encoded if encoded.class_names == tuple(dataset.class_names) else None

"""Batched inference with optional test-time augmentation, shared by training and evaluation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

from training.config import TTA_NAMES


def make_logits_fn(model: keras.Model, tta: int = 0) -> Callable[[tf.Tensor], tf.Tensor]:
    """A compiled function uint8/float images [N,H,W,3] -> float32 logits [N,C]."""

    def plain(x):
        return tf.cast(model(x, training=False), tf.float32)

    def mirror(x):
        # Two passes, not one over [x; mirrored x]: on the 2-core CPU a served single image ran
        # 248 img/s in-process this way and 182 as one batch of 2 (docs/BENCHMARKS.md).
        return 0.5 * (plain(x) + plain(tf.reverse(x, axis=[2])))

    @tf.function(reduce_retracing=True)
    def logits(images):
        x = tf.cast(images, tf.float32)
        if tta == 0:
            return plain(x)
        if tta == 1:
            return mirror(x)
        h, w = x.shape[1], x.shape[2]
        padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
        shifted = [padded[:, :h, :w], padded[:, 2 : h + 2, 2 : w + 2]]
        return 0.5 * mirror(x) + 0.25 * (mirror(shifted[0]) + mirror(shifted[1]))

    return logits


def predict_logits(
    model: keras.Model,
    images: np.ndarray,
    tta: int = 0,
    batch_size: int = 1000,
    logits_fn=None,
) -> np.ndarray:
    """Logits of `images` in batches. A caller that predicts again and again (once per epoch)
    passes its own `make_logits_fn(model, tta)`: each new tf.function traces anew."""
    fn = logits_fn or make_logits_fn(model, tta)
    out = [fn(images[i : i + batch_size]).numpy() for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


def top1_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """The share of predicted classes (not logits) that are right; nan without images."""
    return float(np.mean(predicted == labels)) if len(labels) else float("nan")


def predict_each_tta(
    model: keras.Model, images: np.ndarray
) -> Iterator[tuple[int, str, np.ndarray, float]]:
    """(level, name, predicted classes, seconds) for every TTA level: what a run's final
    report and `training.evaluate` both score (minutes on the full test set, so one by one)."""
    for level, name in TTA_NAMES.items():
        started = time.perf_counter()
        predicted = predict_logits(model, images, tta=level).argmax(1)
        yield level, name, predicted, time.perf_counter() - started

"""Batched inference with optional test-time augmentation, shared by training and evaluation."""

from __future__ import annotations

import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from training.config import TTA_NAMES

# Images per forward call. On an AMX CPU batches of 250 took 5-9 % less time than batches of
# 1,000 for the final evaluation (float32) and about 20 % less for the per-epoch test check
# (bfloat16); docs/BENCHMARKS.md.
BATCH = 250


def make_logits_fn(
    model: keras.Model, tta: int = 0, jit_compile: bool = False
) -> Callable[[tf.Tensor], tf.Tensor]:
    """A compiled function uint8/float images [N,H,W,3] -> float32 logits [N,C]; `jit_compile`
    (bench.xla_serving only) as one XLA program."""

    @tf.function(reduce_retracing=True, jit_compile=jit_compile)
    def logits(images):
        return tta_logits(model, images, tta)[tta]

    return logits


def tta_logits(model: keras.Model, images: tf.Tensor, top: int) -> list[tf.Tensor]:
    """Float32 logits at every TTA level up to `top`, each forward pass run once: level 1 adds
    the mirror's pass to level 0's, level 2 adds four for the two shifted images."""

    def plain(x):
        return tf.cast(model(x, training=False), tf.float32)

    def mirror(x, unmirrored):
        # Two passes, not one over [x; mirrored x]: on the 2-core CPU a served single image ran
        # 248 img/s in-process this way and 182 as one batch of 2 (docs/BENCHMARKS.md).
        return 0.5 * (unmirrored + plain(tf.reverse(x, axis=[2])))

    x = tf.cast(images, tf.float32)
    levels = [plain(x)]
    if top >= 1:
        levels.append(mirror(x, levels[0]))
    if top >= 2:
        h, w = x.shape[1], x.shape[2]
        padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
        shifted = [padded[:, :h, :w], padded[:, 2 : h + 2, 2 : w + 2]]
        mirrored = [mirror(s, plain(s)) for s in shifted]
        levels.append(0.5 * levels[1] + 0.25 * (mirrored[0] + mirrored[1]))
    return levels


def predict_logits(
    model: keras.Model,
    images: np.ndarray,
    tta: int = 0,
    batch_size: int = BATCH,
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


def predict_every_tta(
    model: keras.Model, images: np.ndarray, batch_size: int = BATCH
) -> tuple[dict[int, np.ndarray], float]:
    """({level: predicted classes} for every TTA level, seconds): what a run's final report and
    `training.evaluate` both score. One sweep over the images: the levels share their passes
    (6 per image, not 1 + 2 + 6 level by level)."""
    top = max(TTA_NAMES)
    fn = tf.function(lambda x: tta_logits(model, x, top), reduce_retracing=True)
    started = time.perf_counter()
    parts: dict[int, list[np.ndarray]] = {level: [] for level in TTA_NAMES}
    for i in range(0, len(images), batch_size):
        for level, logits in enumerate(fn(images[i : i + batch_size])):
            parts[level].append(logits.numpy().argmax(1))
    predicted = {
        level: np.concatenate(p) if p else np.zeros((0,), np.int64) for level, p in parts.items()
    }
    return predicted, time.perf_counter() - started

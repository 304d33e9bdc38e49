"""Training augmentation: horizontal flip, reflect-padded translation and cutout, per image.

Which images flip is decided outside the graph (`flip_mask`), so the recipe can use airbench's
alternating flip: every image has a fixed random parity and flips on every other epoch, which
shows each image both ways equally often instead of by chance. Translation and cutout are in-graph
and seeded by (seed, global step), so a resumed run sees exactly the batches an uninterrupted one
would have seen: there is no RNG state to checkpoint.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf


def flip_mask(
    indices: np.ndarray, epoch: int, step: int, seed: int, n_images: int, alternate: bool
) -> np.ndarray:
    """bool [B]: which images of the batch `indices` are mirrored this epoch."""
    if alternate:
        return (_flip_parity(seed, n_images)[indices] + epoch) % 2 == 1
    return np.random.default_rng([seed, step, 7]).random(len(indices)) < 0.5


@functools.cache
def _flip_parity(seed: int, n_images: int) -> np.ndarray:
    """Each image's fixed random parity, drawn once per run rather than at every step.
    Its stream, [seed, 7], is also epoch 7's shuffle (Trainer._run_epoch): harmless, and
    kept, since another would change every recorded run's weights."""
    return np.random.default_rng([seed, 7]).integers(0, 2, n_images, dtype=np.int8)


def augment(
    images: tf.Tensor, flip: tf.Tensor, seed: tf.Tensor, translate: int, cutout: int = 0
) -> tf.Tensor:
    """uint8 [B,H,W,C] -> uint8 [B,H,W,C]: mirror where `flip` [B] is true, shift, cut out.

    The shift crops the mirrored image, reflect-padded by `translate` pixels, at a random
    offset. Mirror, padding and crop are all index arithmetic, gathered from the batch in one
    pass per axis: a padded copy and a mirrored one took 20 ms of traced op time a step on an
    AMX CPU (docs/BENCHMARKS.md).
    """
    b, h, w = tf.shape(images)[0], images.shape[1], images.shape[2]
    p = translate
    offsets = tf.zeros([b, 2], tf.int32)
    if p:
        offsets = tf.random.stateless_uniform(
            [b, 2], seed=seed + 1, minval=0, maxval=2 * p + 1, dtype=tf.int32
        )
    rows = _reflect(offsets[:, :1] - p + tf.range(h)[None, :], h)  # [B, H]
    cols = _reflect(offsets[:, 1:] - p + tf.range(w)[None, :], w)  # [B, W]
    cols = tf.where(flip[:, None], w - 1 - cols, cols)
    if p:
        images = tf.gather(images, rows, axis=1, batch_dims=1)
    images = tf.gather(images, cols, axis=2, batch_dims=1)
    if cutout:
        images = _cut_out(images, seed, cutout)
    return images


def _reflect(index: tf.Tensor, size: int) -> tf.Tensor:
    """Positions outside 0..size-1 mirrored back in, edge pixel not repeated (numpy's and
    tf.pad's "reflect"), for shifts of less than `size`."""
    index = tf.abs(index)
    return tf.where(index >= size, 2 * (size - 1) - index, index)


def _cut_out(images: tf.Tensor, seed: tf.Tensor, side: int) -> tf.Tensor:
    """Zero a side x side square per image, centred anywhere, so it may hang over the edge."""
    b, h, w = tf.shape(images)[0], images.shape[1], images.shape[2]
    top = tf.random.stateless_uniform([b, 1, 1], seed=seed + 2, maxval=h, dtype=tf.int32)
    left = tf.random.stateless_uniform([b, 1, 1], seed=seed + 3, maxval=w, dtype=tf.int32)
    top, left = top - side // 2, left - side // 2
    rows, cols = tf.range(h)[None, :, None], tf.range(w)[None, None, :]
    inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
    return tf.where(inside[..., None], tf.zeros_like(images), images)

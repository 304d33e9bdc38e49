"""In-graph training augmentation: random flip and reflect-padded translation, per image.

Randomness is stateless and seeded by (seed, global step), so a resumed run sees exactly the
batches an uninterrupted one would have seen: there is no RNG state to checkpoint.
"""

from __future__ import annotations

import tensorflow as tf


def augment(images: tf.Tensor, seed: tf.Tensor, translate: int, flip: bool) -> tf.Tensor:
    """uint8 [B,H,W,C] -> uint8 [B,H,W,C], each image flipped and shifted independently."""
    b, h, w = tf.shape(images)[0], images.shape[1], images.shape[2]
    if flip:
        coin = tf.random.stateless_uniform([b], seed=seed) < 0.5
        images = tf.where(coin[:, None, None, None], tf.reverse(images, axis=[2]), images)
    if translate:
        p = translate
        padded = tf.pad(images, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
        offsets = tf.random.stateless_uniform(
            [b, 2], seed=seed + 1, minval=0, maxval=2 * p + 1, dtype=tf.int32
        )
        rows = offsets[:, :1] + tf.range(h)[None, :]  # [B, H]
        cols = offsets[:, 1:] + tf.range(w)[None, :]  # [B, W]
        images = tf.gather(padded, rows, axis=1, batch_dims=1)
        images = tf.gather(images, cols, axis=2, batch_dims=1)
    return images

"""Optimizers and LR schedules of the two recipes, behind one small interface: `apply` a step,
the `learning_rate_at` a point of the schedule, and `reduce_on_plateau` (the trainer counts the
epochs without improvement; the optimizer decides what a plateau changes).

`AirbenchSGD` is airbench94's update, written out so its per-group learning rates (biases x64),
lr-relative weight decay and the frozen-after-N-epochs whitening bias are explicit. With
`recipe.muon_lr > 0` the conv filters instead take Muon steps (Keller Jordan's airbench94_muon
idea): the Nesterov momentum update is orthogonalised by a Newton-Schulz iteration, so every
direction of the filter matrix moves at the same rate. On this data it gained about 0.8 points
at the same work (docs/BENCHMARKS.md). With `recipe.muon_normalize` each filter tensor is first
rescaled to norm sqrt(out channels), as airbench94_muon does, so that a step of muon_lr moves
the filters the same share of their size all run (GPU mirror, 6 seeds: +0.4 points).
`KerasAdam` wraps keras.optimizers.Adam for the vgg recipe.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from training.config import Recipe


def triangle_lr(step: int, total_steps: int, recipe: Recipe) -> float:
    """Linear warm-up from start_lr to 1, then linear decay to end_lr (airbench's triangle)."""
    peak = max(1, int(recipe.warmup_fraction * total_steps))
    if step < peak:
        return recipe.start_lr + (1 - recipe.start_lr) * step / peak
    return 1 + (recipe.end_lr - 1) * (step - peak) / max(1, total_steps - peak)


def lookahead_decay(step: int, total_steps: int, steps: int, rate: float) -> float:
    """airbench's EMA decay for an update `steps` steps after the previous one: `rate` a step
    (the recipe's lookahead_rate), times a cube ramp that makes the early EMA follow the
    weights."""
    return rate**steps * (step / total_steps) ** 3


class AirbenchSGD:
    """airbench's Nesterov SGD on the loss summed over the batch, with Muon for the conv
    filters. The split is by rank: every 4-D variable (the conv filters: 1,967,616 of `fast`'s
    1,971,352 trained values) takes Muon steps at `muon_lr` when it is above 0; `lr` moves the
    rest, the head's weights and, at `bias_lr_scale` times it, every bias, the whitening
    conv's included (airbench94 gives its whitening bias the base rate; the GPU mirror's
    sweeps tuned the recipe with this one). The learning rate is divided by the batch size
    the steps really run (`batch_size`: the recipe's, or a small data set's whole training
    split), so a step moves the weights as far for 500 images as for 1024."""

    def __init__(
        self,
        variables: list,
        recipe: Recipe,
        whiten_bias: tf.Variable | None,
        batch_size: int | None = None,
    ):
        batch_size = batch_size or recipe.batch_size
        scale = batch_size * (1 + 1 / (1 - recipe.momentum))  # airbench's kilostep scale
        self.momentum = recipe.momentum
        self.muon_lr, self.muon_momentum = recipe.muon_lr, recipe.muon_momentum
        self.muon_normalize = recipe.muon_normalize
        self.base_lr = recipe.lr / scale
        wd = recipe.weight_decay * batch_size / scale
        self.vars = variables
        is_bias = [len(v.shape) == 1 for v in variables]
        self.lr_mult = [recipe.bias_lr_scale if b else 1.0 for b in is_bias]
        # weight decay is relative to each group's lr: per-step decay = wd x schedule.
        self.wd = [wd / (self.base_lr * m) for m in self.lr_mult]
        self.whiten_index = next(
            (i for i, v in enumerate(variables) if whiten_bias is not None and v is whiten_bias),
            None,
        )
        self.buffers = [
            tf.Variable(tf.zeros(v.shape, tf.float32), trainable=False) for v in variables
        ]

    @property
    def variables(self) -> list:
        return self.buffers

    def learning_rate_at(self, schedule: float) -> float:
        """The rate of a step at this point of the triangle: the head's weights' (biases x
        bias_lr_scale; the conv filters' Muon steps have their own, muon_lr)."""
        return self.base_lr * schedule

    def reduce_on_plateau(self, factor: float, floor: float) -> float | None:
        """None: the triangle schedule is fixed in advance, a plateau changes nothing."""
        del factor, floor
        return None

    def apply(self, grads, schedule: tf.Tensor, whiten_bias_on: tf.Tensor) -> None:
        lr = self.base_lr * schedule
        for i, (g, v, buf) in enumerate(zip(grads, self.vars, self.buffers)):
            if self.muon_lr and len(v.shape) == 4:
                self._muon_step(tf.cast(g, tf.float32), v, buf, self.muon_lr * schedule)
                continue
            mult = self.lr_mult[i] * (whiten_bias_on if i == self.whiten_index else 1.0)
            g = tf.cast(g, tf.float32) + self.wd[i] * tf.cast(v, tf.float32)
            buf.assign(self.momentum * buf + g)
            v.assign_sub(tf.cast(lr * mult * (g + self.momentum * buf), v.dtype))

    def _muon_step(self, g: tf.Tensor, v: tf.Variable, buf: tf.Variable, lr: tf.Tensor) -> None:
        buf.assign(self.muon_momentum * buf + g)
        update = g + self.muon_momentum * buf  # Nesterov
        kh, kw, cin, cout = v.shape
        matrix = tf.transpose(tf.reshape(update, [kh * kw * cin, cout]))  # [out, fan-in]
        step = tf.reshape(tf.transpose(orthogonalize(matrix)), v.shape)
        if self.muon_normalize:  # the filters' scale is free under BatchNorm: pin it
            v.assign(v * tf.cast(cout**0.5 / tf.norm(tf.cast(v, tf.float32)), v.dtype))
        v.assign_sub(tf.cast(lr * max(1.0, cout / (kh * kw * cin)) ** 0.5 * step, v.dtype))


def orthogonalize(matrix: tf.Tensor, steps: int = 5) -> tf.Tensor:
    """Approximately U V^T of the SVD of `matrix`, by the quintic Newton-Schulz iteration.

    The coefficients are Muon's: they push every singular value towards 1 fast, without
    converging exactly (it does not need to), in a few matrix products and no decomposition.
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    x = matrix / (tf.norm(matrix) + 1e-7)
    tall = matrix.shape[0] > matrix.shape[1]
    if tall:
        x = tf.transpose(x)
    for _ in range(steps):
        gram = x @ tf.transpose(x)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return tf.transpose(x) if tall else x


class KerasAdam:
    def __init__(self, variables: list, recipe: Recipe):
        self.vars = variables
        self.opt = keras.optimizers.Adam(learning_rate=recipe.lr)
        self.opt.build(variables)

    @property
    def variables(self) -> list:
        return list(self.opt.variables)

    @property
    def learning_rate(self) -> float:
        return float(np.asarray(self.opt.learning_rate))

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self.opt.learning_rate.assign(value)

    def learning_rate_at(self, schedule: float) -> float:
        """Adam follows no schedule: its rate moves only when validation plateaus."""
        del schedule
        return self.learning_rate

    def reduce_on_plateau(self, factor: float, floor: float) -> float:
        """ReduceLROnPlateau's step: the rate times `factor`, not below `floor`; the new rate."""
        self.learning_rate = max(floor, self.learning_rate * factor)
        return self.learning_rate

    def apply(self, grads, schedule: tf.Tensor, whiten_bias_on: tf.Tensor) -> None:
        del schedule, whiten_bias_on  # Adam's LR moves by plateau logic, between epochs
        self.opt.apply_gradients(zip(grads, self.vars))

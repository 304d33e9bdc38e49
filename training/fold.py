"""A trained `fast` network in its serving form: the same function in fewer ops."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from training.models import build_fast, precision_policy


def fold_for_serving(model: keras.Model) -> keras.Model:
    """The same function as a trained `fast` model (to float rounding) in fewer ops, in float32.

    In inference every BN (scale frozen at 1) is x * inv + (beta - mean * inv) with inv > 0, so
    it moves into the conv before it, through the max-pool between them (max commutes with a
    positive scale). The input normalisation moves into the whitening conv (valid padding, so
    no padded border sees the difference) and the logit scale into the head. That removes 13
    elementwise passes over activations per forward pass, which is what batch-1 serving spends
    much of its time on.
    """
    norm = model.get_layer("normalize")
    mean = np.ravel(np.asarray(norm.mean, np.float64))
    # As keras.layers.Normalization divides: a channel that never varied in training (std 0)
    # is divided by epsilon, not by zero.
    std = np.maximum(
        np.sqrt(np.ravel(np.asarray(norm.variance, np.float64))), keras.config.epsilon()
    )
    blocks = range(1, sum(layer.name.endswith("_conv1") for layer in model.layers) + 1)
    widths = [model.get_layer(f"block{i}_conv1").filters for i in blocks]
    depth = sum(layer.name.startswith("block1_conv") for layer in model.layers)
    with precision_policy("float32"):  # whatever the caller's: a training run's is bfloat16
        folded = build_fast(
            model.output_shape[-1], mean, std, model.input_shape[1], widths, depth, folded=True
        )
    whiten = model.get_layer("whiten")
    kernel = whiten.kernel.numpy().astype(np.float64)
    _set(
        folded.get_layer("whiten"),
        kernel / std[None, None, :, None],
        whiten.bias.numpy() - np.einsum("hwco,c->o", kernel, mean / std),
    )
    for i in blocks:
        for j in range(1, depth + 1):
            bn = model.get_layer(f"block{i}_bn{j}")
            inv = 1.0 / np.sqrt(bn.moving_variance.numpy().astype(np.float64) + bn.epsilon)
            _set(
                folded.get_layer(f"block{i}_conv{j}"),
                model.get_layer(f"block{i}_conv{j}").kernel.numpy() * inv,
                bn.beta.numpy() - bn.moving_mean.numpy() * inv,
            )
    scale = float(model.get_layer("logit_scale").scale)
    _set(folded.get_layer("head"), model.get_layer("head").kernel.numpy() * scale)
    return folded


def _set(layer: layers.Layer, *weights: np.ndarray) -> None:
    layer.set_weights([np.asarray(w, np.float32) for w in weights])

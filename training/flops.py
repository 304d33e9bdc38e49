"""The work unit of issue 10: forward FLOPs per image, counted from a built model's layers."""

from __future__ import annotations

import keras
from keras import layers


def forward_flops(model: keras.Model) -> int:
    """Multiply-adds x 2 of the conv and dense layers for one image: the work unit of issue 10."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            total += conv_flops(layer)
        elif isinstance(layer, layers.Dense):
            cin, cout = layer.kernel.shape
            total += 2 * cin * cout
    return int(total)


def conv_flops(layer: layers.Conv2D) -> int:
    """Multiply-adds x 2 of one image's forward pass through a built Conv2D layer."""
    _, h, w, cout = layer.output.shape
    kh, kw, cin, _ = layer.kernel.shape
    return 2 * h * w * cout * kh * kw * cin

"""bench.gelu_passes: it times the fast net's real activation shapes, and a timing runs."""

from __future__ import annotations

import collections

from bench.gelu_passes import SHAPES, time_ms
from training.config import RECIPES
from training.layers import Gelu
from training.models import build_model, precision_policy


def test_the_timed_shapes_are_the_fast_models_gelus_at_batch_1024():
    recipe = RECIPES["fast"]
    with precision_policy("mixed_bfloat16"):
        model = build_model("fast", 10, [0.0] * 3, [1.0] * 3, 32, recipe.widths, recipe.depth)
    found = collections.Counter(
        ((recipe.batch_size, *layer.output.shape[1:]), layer.compute_dtype)
        for layer in model.layers
        if isinstance(layer, Gelu)
    )
    assert found == {(shape, dtype): count for shape, dtype, count in SHAPES}


def test_a_fused_gelu_timing_runs():
    import tensorflow as tf

    fused = Gelu()
    assert time_ms(lambda v: fused(v, training=True), tf.ones([2, 4, 4, 8]), repeats=2) > 0

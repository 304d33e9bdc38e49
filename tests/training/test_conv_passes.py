"""bench.conv_passes: the timed kernels are a conv layer's real three passes, for every conv, and
the nine-matmul filter gradient computes the same gradient."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_the_three_passes_are_a_convs_forward_and_gradients(padding):
    import tensorflow as tf

    from bench.conv_passes import conv_passes

    x = tf.random.normal([2, 6, 6, 4])
    k = tf.random.normal([3, 3, 4, 8])
    with tf.GradientTape() as tape:
        tape.watch([x, k])
        y = tf.nn.conv2d(x, k, 1, padding)
    g = tf.random.normal(y.shape)
    dx, dk = tape.gradient(y, [x, k], output_gradients=g)
    passes = conv_passes(x, k, g, padding)
    expected = {"forward": y, "input grad": dx, "filter grad": dk}
    if padding == "SAME":  # the nine-matmul form exists for 3x3 SAME convs only
        expected["as 9 matmuls"] = dk
    assert set(passes) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(passes[name](), value, rtol=1e-4, atol=1e-4)


def test_layer_passes_take_the_layers_shapes_and_dtype():
    import keras

    from bench.conv_passes import layer_passes

    layer = keras.layers.Conv2D(8, 2, padding="valid", dtype="mixed_bfloat16")
    layer(keras.Input((6, 6, 4)))
    shapes = {name: (f().shape, f().dtype) for name, f in layer_passes(layer, batch=3).items()}
    assert shapes == {  # a 2x2 VALID conv: no nine-matmul form
        "forward": ((3, 5, 5, 8), "bfloat16"),
        "input grad": ((3, 6, 6, 4), "bfloat16"),
        "filter grad": ((2, 2, 4, 8), "bfloat16"),
    }


def test_every_conv_of_the_recipe_is_measured():
    from bench.conv_passes import PASSES, measure
    from training.config import RECIPES
    from training.flops import forward_flops
    from training.models import build_model

    rows = measure("tiny", "float32", repeats=1)
    rows, ceiling_row = rows[:-1], rows[-1]
    recipe = RECIPES["tiny"]
    model = build_model("fast", 10, [0.0] * 3, [1.0] * 3, widths=recipe.widths)
    head_flops = 2 * model.get_layer("head").kernel.shape[0] * 10
    assert [r["layer"] for r in rows][:2] == ["whiten", "block1_conv1"]
    assert len(rows) == 7  # the whitening conv and two per group
    conv_gflop = (forward_flops(model) - head_flops) * recipe.batch_size / 1e9
    assert sum(r["gflop"] for r in rows) == pytest.approx(conv_gflop)
    assert set(rows[0]["seconds"]) == {"forward"}  # image input, frozen whitening filters
    assert all(r["seconds"][p] > 0 for r in rows[1:] for p in PASSES)
    assert ceiling_row["layer"] == "ceiling conv" and set(ceiling_row["seconds"]) == set(PASSES)
    assert ceiling_row["gflop"] == pytest.approx(2 * 512 * 8 * 8 * 256 * 256 * 9 / 1e9)


def test_the_summary_counts_each_convs_filter_gradient_as_training_runs_it():
    from bench.conv_passes import trained_passes
    from training.layers import Conv2D

    assert trained_passes(Conv2D(8, 3, padding="same")) == ("forward", "input grad", "filter grad")
    wide = Conv2D(8, 3, padding="same", matmul_filter_grad=True)
    assert trained_passes(wide) == ("forward", "input grad", "as 9 matmuls")

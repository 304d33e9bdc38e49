"""Model shapes, the reference parameter count, the FLOP count, the whitening init, the fused
BN and TTA."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from training.flops import forward_flops
from training.fold import fold_for_serving
from training.models import build_model, init_whitening

MEAN, STD = [125.0, 123.0, 114.0], [63.0, 62.0, 67.0]


def test_fast_model_maps_pixels_to_float32_logits():
    model = build_model("fast", 10, MEAN, STD)
    out = model(np.zeros((2, 32, 32, 3), np.float32))
    assert tuple(out.shape) == (2, 10) and "float32" in str(out.dtype)


def test_vgg_reference_has_about_1_19_million_parameters():
    model = build_model("vgg", 10, MEAN, STD)
    # 1,172,256 conv + 10,250 dense + 3,840 batch-norm weights (half of them statistics)
    assert model.count_params() == 1_186_346


def _hand_conv_flops(h: int, cin: int, cout: int, k: int = 3) -> int:
    """A square h x h output of a k x k conv, counted by hand (not by training.models)."""
    return 2 * h * h * cout * k * k * cin


def test_forward_flops_of_the_fast_model_match_a_hand_count():
    # whiten 2x2 valid: 32 -> 31; each group pools by 2 after its first conv: 31 -> 15 -> 7 -> 3
    expected = (
        _hand_conv_flops(31, 3, 24, k=2)
        + _hand_conv_flops(31, 24, 64)
        + _hand_conv_flops(15, 64, 64)
        + _hand_conv_flops(15, 64, 256)
        + _hand_conv_flops(7, 256, 256)
        + _hand_conv_flops(7, 256, 256)
        + _hand_conv_flops(3, 256, 256)
        + 2 * 256 * 10
    )
    assert forward_flops(build_model("fast", 10, MEAN, STD)) == expected


def test_forward_flops_count_every_conv_of_deeper_wider_groups():
    expected = (
        _hand_conv_flops(31, 3, 24, k=2)
        + _hand_conv_flops(31, 24, 16)
        + 2 * _hand_conv_flops(15, 16, 16)
        + _hand_conv_flops(15, 16, 32)
        + 2 * _hand_conv_flops(7, 32, 32)
        + _hand_conv_flops(7, 32, 48)
        + 2 * _hand_conv_flops(3, 48, 48)
        + 2 * 48 * 10
    )
    model = build_model("fast", 10, MEAN, STD, widths=(16, 32, 48), depth=3)
    assert forward_flops(model) == expected


def test_whitening_layer_decorrelates_image_patches():
    rng = np.random.default_rng(0)
    base = rng.normal(128, 40, (64, 32, 32, 1))
    images = np.clip(base + rng.normal(0, 10, (64, 32, 32, 3)), 0, 255).astype(np.uint8)
    model = build_model("fast", 10, MEAN, STD)
    init_whitening(model, images)
    normalized = model.get_layer("normalize")(images.astype(np.float32))
    out = np.asarray(model.get_layer("whiten")(normalized)).reshape(-1, 24)[:, :12]
    cov = np.cov(out, rowvar=False)
    np.testing.assert_allclose(cov, np.eye(12), atol=0.05)


def test_whitening_stays_float32_under_mixed_bfloat16():
    """In bfloat16 the whitening filters' ~25x gain on pixel differences swamped the signal,
    and the BN statistics behind it lagged the weights: 24 % test accuracy in inference mode
    after one epoch instead of 68 % (docs/BENCHMARKS.md). The stage must compute in float32;
    it hands the conv groups its float32 result rounded once to their bfloat16."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    base = rng.normal(128, 40, (8, 32, 32, 1))
    images = np.clip(base + rng.normal(0, 10, (8, 32, 32, 3)), 0, 255).astype(np.float32)

    def whitened(policy: str) -> tuple[dict, str]:
        keras.mixed_precision.set_global_policy(policy)
        try:
            keras.utils.set_random_seed(0)
            model = build_model("fast", 10, MEAN, STD)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        init_whitening(model, images.astype(np.uint8))
        stage = keras.Model(
            model.input, [model.get_layer(n).output for n in ("whiten", "whiten_act")]
        )
        conv_dtype = model.get_layer("block1_conv1").compute_dtype
        return {
            training: dict(zip(("conv", "act"), stage(images, training=training)))
            for training in (False, True)
        }, conv_dtype

    mixed, mixed_conv = whitened("mixed_bfloat16")
    full, _ = whitened("float32")
    assert mixed_conv == "bfloat16"  # the rest of the net still gets the fast path
    for training in (False, True):
        np.testing.assert_allclose(
            mixed[training]["conv"], full[training]["conv"], rtol=1e-5, atol=1e-4
        )
        act = mixed[training]["act"]
        assert act.dtype == "bfloat16" and full[training]["act"].dtype == "float32"
        rounded = tf.cast(tf.cast(full[training]["act"], tf.bfloat16), tf.float32)
        # one rounding of the float32 result, not bfloat16 arithmetic (which is 3 digits off)
        assert np.mean(np.asarray(tf.cast(act, tf.float32)) == rounded.numpy()) > 0.99


@pytest.mark.parametrize("training", [True, False])
def test_gelu_handing_on_another_dtype_rounds_once_and_passes_float32_gradients(training):
    """The whitening stage's GELU computes in float32 and outputs bfloat16 (`output_dtype`),
    the cast inside its kernel: the same values and gradients as the float32 GELU followed by
    a cast."""
    import tensorflow as tf

    from training.layers import Gelu

    x = tf.constant(np.random.default_rng(1).normal(0.0, 3.0, (4, 6, 6, 16)), tf.float32)
    dy = tf.cast(tf.random.stateless_normal(x.shape, seed=[2, 3]), tf.bfloat16)
    handing_on = Gelu(dtype="float32", output_dtype="bfloat16")
    results = []
    for layer, cast_after in ((handing_on, False), (Gelu(dtype="float32"), True)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            if cast_after:
                y = tf.cast(y, tf.bfloat16)
        results.append((y, tape.gradient(y, x, output_gradients=dy)))
    (y, grad), (y_ref, grad_ref) = results
    assert y.dtype == tf.bfloat16
    tol = 0 if training else 1e-6  # inference runs TF's own gelu ops, training the XLA kernel
    np.testing.assert_allclose(grad.numpy(), grad_ref.numpy(), rtol=tol, atol=tol)
    np.testing.assert_array_equal(
        tf.cast(y, tf.float32).numpy(), tf.cast(y_ref, tf.float32).numpy()
    )


def test_a_bfloat16_runs_model_keras_reopens_with_the_handed_on_dtype(tmp_path):
    """A run's model.keras (saved under mixed_bfloat16) keeps the whitening GELU's bfloat16
    output when reopened, and gives the same logits."""
    import keras

    import training.layers  # noqa: F401  (registers the custom layers, as README says)
    from training.models import precision_policy

    with precision_policy("mixed_bfloat16"):
        model = build_model("fast", 10, MEAN, STD, widths=(8, 16, 16))
    model.save(tmp_path / "model.keras")
    reopened = keras.saving.load_model(tmp_path / "model.keras")
    assert reopened.get_layer("whiten_act").output_dtype == "bfloat16"
    images = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(reopened(images)), np.asarray(model(images)))


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("scale", [False, True])  # fast freezes the scale; vgg trains it
def test_fused_batchnorm_trains_like_keras_batchnorm(policy, scale):
    """Same output, moving statistics (biased variance) and gradients as the Keras layer."""
    import keras
    import tensorflow as tf

    from training.layers import BatchNormalization as FusedBatchNorm

    keras.mixed_precision.set_global_policy(policy)
    try:
        x = tf.constant(np.random.default_rng(0).normal(3.0, 2.0, (16, 8, 8, 32)), tf.float32)
        layers = [
            cls(momentum=0.4, epsilon=1e-5, scale=scale)
            for cls in (keras.layers.BatchNormalization, FusedBatchNorm)
        ]
        results = []
        for layer in layers:
            layer.build(x.shape)
            layer.beta.assign(tf.range(32, dtype=tf.float32) / 10)
            if scale:
                layer.gamma.assign(1 + tf.range(32, dtype=tf.float32) / 20)
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(tf.cast(y, tf.float32) * x)
            grads = tape.gradient(loss, [x, layer.beta] + ([layer.gamma] if scale else []))
            results.append([y, layer.moving_mean, layer.moving_variance, *grads])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert results[1][0].dtype == ("bfloat16" if policy == "mixed_bfloat16" else "float32")
    tol = 1e-5 if policy == "float32" else 1e-2  # bfloat16 outputs: 3 significant digits
    for keras_value, fused_value in zip(*results):
        keras_value, fused_value = (
            np.asarray(tf.cast(v, tf.float32)) for v in (keras_value, fused_value)
        )
        np.testing.assert_allclose(fused_value, keras_value, rtol=tol, atol=tol)
    # inference: the Keras layer's own code, on the moving statistics
    inference = [np.asarray(tf.cast(layer(x), tf.float32)) for layer in layers]
    np.testing.assert_allclose(inference[1], inference[0], rtol=tol, atol=tol)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fused_gelu_trains_and_infers_like_keras_gelu(policy):
    """The XLA-fused training path and the plain inference path both match Keras's exact GELU
    computed in float32, forward and backward; the output keeps the layer's compute dtype."""
    import keras
    import tensorflow as tf

    from training.layers import Gelu
    from training.models import precision_policy

    with precision_policy(policy):  # the layer keeps the policy it is built with
        layer = Gelu()
    x = tf.constant(np.random.default_rng(0).normal(0.0, 3.0, (4, 6, 6, 16)), tf.float32)
    x = tf.cast(x, layer.compute_dtype)
    results = {}
    for training in (True, False):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.cast(x, tf.float32))
        results[training] = (y, tape.gradient(loss, x))
    xf = tf.cast(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(xf)
        reference = keras.activations.gelu(xf, approximate=False)
        loss = tf.reduce_sum(reference * xf)
    reference_grad = tape.gradient(loss, xf)
    tol = 1e-5 if policy == "float32" else 1e-2  # bfloat16 results: 3 significant digits
    for y, grad in results.values():
        assert y.dtype == x.dtype
        for value, expected in ((y, reference), (grad, reference_grad)):
            np.testing.assert_allclose(
                np.asarray(tf.cast(value, tf.float32)), expected, rtol=tol, atol=tol
            )


def test_exported_inference_graph_of_the_fast_model_needs_no_xla():
    """Only training takes the XLA path: a traced inference call has no XLA-compiled function,
    so a SavedModel of it runs on any TensorFlow Serving build."""
    import tensorflow as tf

    model = build_model("fast", 10, MEAN, STD, widths=(8, 8, 8))

    def graph_ops(training: bool) -> set[str]:
        fn = tf.function(lambda x: model(x, training=training))
        graph = fn.get_concrete_function(tf.TensorSpec([2, 32, 32, 3], tf.float32)).graph
        ops = {op.type for op in graph.get_operations()}
        for function in graph.as_graph_def().library.function:
            ops |= {node.op for node in function.node_def}
            if function.attr.get("_XlaMustCompile") and function.attr["_XlaMustCompile"].b:
                ops.add("XLA-compiled function")
        return ops

    assert "XLA-compiled function" in graph_ops(training=True)  # the check can see it
    inference = graph_ops(training=False)
    assert "XLA-compiled function" not in inference and "Erfc" in inference  # tf.nn.gelu


def test_weights_saved_with_keras_layers_load_into_the_fused_ones(tmp_path, monkeypatch):
    """Runs trained before the fused BatchNorm and GELU (every shipped version came from
    them) still load, and give the same logits."""
    import keras

    import training.models as models

    def keras_gelu(name: str, dtype: str | None = None, output_dtype=None) -> keras.layers.Layer:
        return keras.layers.Activation("gelu", name=name, dtype="float32")  # as before

    def keras_conv(*args, matmul_filter_grad=False, **kwargs) -> keras.layers.Layer:
        return keras.layers.Conv2D(*args, **kwargs)

    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    with monkeypatch.context() as patch:
        patch.setattr(models, "BatchNormalization", keras.layers.BatchNormalization)
        patch.setattr(models, "Gelu", keras_gelu)
        patch.setattr(models, "Conv2D", keras_conv)
        old = build_model("fast", 10, MEAN, STD)
    assert type(old.get_layer("block1_bn1")) is keras.layers.BatchNormalization
    assert type(old.get_layer("block1_act1")) is keras.layers.Activation
    assert type(old.get_layer("block3_conv2")) is keras.layers.Conv2D
    for layer in old.layers:  # trained-looking statistics, so a failed load would show
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.3, np.float32))
    old.save_weights(tmp_path / "old.weights.h5")
    new = build_model("fast", 10, MEAN, STD, matmul_filter_grad=True)
    assert type(new.get_layer("block3_conv2")) is models.Conv2D
    assert type(new.get_layer("block1_bn1")) is models.BatchNormalization
    assert type(new.get_layer("block1_act1")) is models.Gelu
    new.load_weights(tmp_path / "old.weights.h5")
    np.testing.assert_allclose(new(images), old(images), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_the_nine_matmul_filter_gradient_is_the_convs_own(policy):
    """Forward pass and input gradient unchanged, and the filter gradient the same as
    TensorFlow's kernel computes (to float rounding): every tap in its place."""
    import tensorflow as tf

    from training.layers import conv3x3_matmul_filter_grad

    dtype = tf.as_dtype(policy.replace("mixed_", ""))
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(4, 7, 5, 24)), dtype)  # not square: h and w kept apart
    kernel = tf.constant(rng.normal(size=(3, 3, 24, 16)), dtype)
    weight = tf.constant(rng.normal(size=(4, 7, 5, 16)), tf.float32)
    results = []
    for conv in (lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"), conv3x3_matmul_filter_grad):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = conv(x, kernel)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * weight)
        results.append([y, *tape.gradient(loss, [x, kernel])])
    tol = 1e-5 if policy == "float32" else 2e-2
    for name, ref, ours in zip(("forward", "input grad", "filter grad"), *results):
        ref, ours = (np.asarray(tf.cast(v, tf.float32)) for v in (ref, ours))
        scale = np.abs(ref).max()
        np.testing.assert_allclose(ours / scale, ref / scale, atol=tol, err_msg=name)


def test_only_the_wide_convs_train_with_the_matmul_filter_gradient(tmp_path):
    """The 64-channel convs ran it slower (training.models.MATMUL_GRAD_MIN_CHANNELS); a run's
    model.keras keeps the choice; the gradients of a whole model are the same either way."""
    import keras
    import tensorflow as tf

    import training.layers  # noqa: F401  (registers the custom layers)

    model = build_model("fast", 10, MEAN, STD, matmul_filter_grad=True)
    wide = {layer.name for layer in model.layers if getattr(layer, "matmul_filter_grad", False)}
    assert wide == {"block2_conv2", "block3_conv1", "block3_conv2"}
    plain = build_model("fast", 10, MEAN, STD)
    assert not any(getattr(layer, "matmul_filter_grad", False) for layer in plain.layers)
    model.save(tmp_path / "model.keras")
    reopened = keras.saving.load_model(tmp_path / "model.keras")
    assert reopened.get_layer("block3_conv2").matmul_filter_grad
    plain.set_weights(model.get_weights())
    images = np.random.default_rng(2).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    grads = []
    for net in (plain, model):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(net(images, training=True) ** 2)
        grads.append(tape.gradient(loss, net.trainable_variables))
    for var, ref, ours in zip(model.trainable_variables, *grads):
        scale = np.abs(ref).max() + 1e-12
        np.testing.assert_allclose(ours / scale, ref / scale, atol=1e-5, err_msg=var.path)


def test_a_bfloat16_model_trains_with_the_matmul_filter_gradient():
    """As training runs it: mixed_bfloat16, each float32 kernel cast to bfloat16 before the
    custom gradient. Every kernel gets a gradient, close to TensorFlow's kernel's."""
    import tensorflow as tf

    from training.models import precision_policy

    with precision_policy("mixed_bfloat16"):
        nets = [build_model("fast", 10, MEAN, STD, matmul_filter_grad=m) for m in (False, True)]
    nets[1].set_weights(nets[0].get_weights())
    images = np.random.default_rng(4).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    grads = []
    for net in nets:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(net(images, training=True), tf.float32) ** 2)
        grads.append(tape.gradient(loss, net.trainable_variables))
    for var, ref, ours in zip(nets[1].trainable_variables, *grads):
        assert ours is not None, var.path
        ref, ours = np.asarray(ref, np.float32), np.asarray(ours, np.float32)
        scale = np.abs(ref).max() + 1e-12
        np.testing.assert_allclose(ours / scale, ref / scale, atol=3e-2, err_msg=var.path)


def test_the_matmul_filter_gradient_is_refused_for_other_convs():
    from training.layers import Conv2D

    for kwargs in ({"kernel_size": 2}, {"kernel_size": 3, "strides": 2}, {"kernel_size": 3}):
        with pytest.raises(ValueError, match="3x3, stride-1, SAME"):
            Conv2D(8, matmul_filter_grad=True, **kwargs)  # the last: padding "valid"
    assert Conv2D(8, 3, padding="same", matmul_filter_grad=True).matmul_filter_grad


@pytest.mark.parametrize("depth", [2, 3])
def test_folding_for_serving_keeps_the_function_and_drops_the_affine_layers(depth):
    import keras

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (16, 32, 32, 3)).astype(np.float32)
    keras.utils.set_random_seed(1)
    model = build_model("fast", 10, MEAN, STD, depth=depth)
    init_whitening(model, images.astype(np.uint8))
    # Trained-looking statistics, so a wrong fold (sign, axis, epsilon) shows in the logits.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.beta.shape[0]
            layer.beta.assign(rng.normal(0, 0.5, n).astype(np.float32))
            layer.moving_mean.assign(rng.normal(0, 2, n).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.05, 9, n).astype(np.float32))
    folded = fold_for_serving(model)
    expected = np.asarray(model(images, training=False))
    np.testing.assert_allclose(np.asarray(folded(images)), expected, rtol=1e-4, atol=1e-4)
    kinds = {type(layer).__name__ for layer in folded.layers}
    assert not kinds & {"BatchNormalization", "Normalization", "Rescaling"}
    assert forward_flops(folded) == forward_flops(model)


def test_folding_a_channel_that_never_varied_divides_as_keras_does():
    """A data set whose blue channel is constant (std 0): the fold divided by zero (a
    RuntimeWarning and inf weights) where Keras's Normalization divides by epsilon."""
    images = np.random.default_rng(2).integers(0, 256, (8, 32, 32, 3)).astype(np.float32)
    images[..., 2] = 50.0
    model = build_model("fast", 10, [120.0, 120.0, 50.0], [60.0, 60.0, 0.0], widths=(16, 32, 32))
    init_whitening(model, images.astype(np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        folded = fold_for_serving(model)
    expected = np.asarray(model(images, training=False))
    np.testing.assert_allclose(np.asarray(folded(images)), expected, rtol=1e-4, atol=1e-4)


def test_unknown_architecture_is_named_in_the_error():
    with pytest.raises(ValueError, match="resnet"):
        build_model("resnet", 10, MEAN, STD)


def test_flip_tta_is_the_mean_of_the_image_and_its_mirror():
    from training.inference import make_logits_fn

    model = build_model("fast", 10, MEAN, STD, widths=(16, 32, 32))
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype(np.float32)
    expected = 0.5 * (model(x, training=False) + model(x[:, :, ::-1], training=False))
    np.testing.assert_allclose(make_logits_fn(model, 1)(x), expected, rtol=1e-4, atol=1e-5)


def test_every_tta_level_in_one_sweep_scores_as_each_level_alone():
    """The final report's shared passes give each level's own predictions; level 2 is the
    flip mean weighted 1/2 and the two reflect-shifted images' flip means 1/4 each."""
    from training.inference import make_logits_fn, predict_every_tta, predict_logits

    model = build_model("fast", 10, MEAN, STD, widths=(16, 32, 32))
    x = np.random.default_rng(1).integers(0, 256, (40, 32, 32, 3)).astype(np.uint8)

    def flip_mean(images):
        images = images.astype(np.float32)
        return 0.5 * (model(images, training=False) + model(images[:, :, ::-1], training=False))

    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    level2 = 0.5 * flip_mean(x) + 0.25 * (
        flip_mean(padded[:, :32, :32]) + flip_mean(padded[:, 2:, 2:])
    )
    np.testing.assert_allclose(make_logits_fn(model, 2)(x), level2, rtol=1e-4, atol=1e-5)
    predicted, seconds = predict_every_tta(model, x, batch_size=16)  # 3 batches, the last short
    assert sorted(predicted) == [0, 1, 2] and seconds > 0
    for level in (0, 1, 2):
        alone = predict_logits(model, x, tta=level, batch_size=16)  # the same batches
        np.testing.assert_array_equal(predicted[level], alone.argmax(1))


def test_a_run_of_deeper_groups_reloads_for_inference_from_its_meta(tmp_path):
    """meta.json's widths and depth rebuild the net that the weights file was saved from."""
    import json

    from training.run_model import load_for_inference

    model = build_model("fast", 10, MEAN, STD, widths=(8, 16, 24), depth=3)
    model.save_weights(tmp_path / "final.weights.h5")
    meta = {"arch": "fast", "class_names": [str(i) for i in range(10)], "mean": MEAN}
    meta |= {"std": STD, "widths": [8, 16, 24], "depth": 3}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    loaded, _ = load_for_inference(tmp_path)
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(images), model(images), rtol=1e-5, atol=1e-5)
    assert loaded.get_layer("block3_conv3").filters == 24


def test_the_served_form_is_folded_and_float32_inside_a_bfloat16_training_run(tmp_path):
    """A training run scores its final weights as export serves them, while its own policy is
    mixed_bfloat16: the folded net must still be float32 (it was bfloat16 once, and the run
    reported bfloat16 accuracies as float32 ones)."""
    from training.models import precision_policy
    from training.run_model import build_for_inference, inference_meta

    model = build_model("fast", 10, MEAN, STD, widths=(8, 16, 24))
    model.save_weights(tmp_path / "final.weights.h5")
    names = [str(i) for i in range(10)]
    meta = inference_meta(model, "fast", (8, 16, 24), 2, names, MEAN, STD, 32)
    with precision_policy("mixed_bfloat16"):
        served = build_for_inference(meta, tmp_path / "final.weights.h5", served=True)
    assert served.name == "fast_folded"
    assert {layer.compute_dtype for layer in served.layers} == {"float32"}
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(served(images), model(images), rtol=1e-4, atol=1e-4)


def test_a_run_is_rebuilt_with_the_logit_scale_its_meta_records(tmp_path):
    """The scale is no weight: a run must not be served with a later default of the code."""
    import json

    from training.run_model import load_for_inference, network_constants

    model = build_model("fast", 10, MEAN, STD, widths=(8, 16, 24), logit_scale=0.25)
    assert network_constants(model) == {"logit_scale": 0.25}
    assert network_constants(build_model("vgg", 10, MEAN, STD)) == {}
    model.save_weights(tmp_path / "final.weights.h5")
    meta = {"arch": "fast", "class_names": [str(i) for i in range(10)], "mean": MEAN}
    meta |= {"std": STD, "widths": [8, 16, 24], **network_constants(model)}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    loaded, _ = load_for_inference(tmp_path)
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(images), model(images), rtol=1e-5, atol=1e-5)
    # A meta.json from before the scale was recorded: the 1/9 those runs trained with, written
    # out here, not the code's default, which is what may change.
    del meta["logit_scale"]
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    assert load_for_inference(tmp_path)[0].get_layer("logit_scale").scale == pytest.approx(1 / 9)


@pytest.mark.parametrize("arch", ["fast", "vgg"])
def test_forward_flops_match_tensorflows_own_profiler(arch):
    """A count independent of training.flops and of the hand formula above: TensorFlow's graph
    profiler (its registered FLOP statistics of Conv2D and MatMul) on the frozen batch-1 graph."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    model = build_model(arch, 10, MEAN, STD)
    serve = tf.function(lambda x: model(x, training=False))
    graph = convert_variables_to_constants_v2(
        serve.get_concrete_function(tf.TensorSpec([1, 32, 32, 3], tf.float32))
    ).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options.update(account_type_regexes=["Conv2D", "MatMul"], output="none")
    counted = tf.compat.v1.profiler.profile(graph, options=options).total_float_ops
    assert forward_flops(model) == counted

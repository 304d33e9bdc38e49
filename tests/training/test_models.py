"""Model shapes, the reference parameter count, the FLOP count, the whitening init and TTA."""

from __future__ import annotations

import numpy as np
import pytest

from training.models import build_model, forward_flops, init_whitening

MEAN, STD = [125.0, 123.0, 114.0], [63.0, 62.0, 67.0]


def test_fast_model_maps_pixels_to_float32_logits():
    model = build_model("fast", 10, MEAN, STD)
    out = model(np.zeros((2, 32, 32, 3), np.float32))
    assert tuple(out.shape) == (2, 10) and "float32" in str(out.dtype)


def test_vgg_reference_has_about_1_19_million_parameters():
    model = build_model("vgg", 10, MEAN, STD)
    # 1,172,256 conv + 10,250 dense + 3,840 batch-norm weights (half of them statistics)
    assert model.count_params() == 1_186_346


def test_forward_flops_of_the_fast_model_match_a_hand_count():
    # whiten 2x2 valid: 32 -> 31; each group pools by 2 after its first conv: 31 -> 15 -> 7 -> 3
    def conv(h, cin, cout, k=3):
        return 2 * h * h * cout * k * k * cin

    expected = (
        conv(31, 3, 24, k=2)
        + conv(31, 24, 64)
        + conv(15, 64, 64)
        + conv(15, 64, 256)
        + conv(7, 256, 256)
        + conv(7, 256, 256)
        + conv(3, 256, 256)
        + 2 * 256 * 10
    )
    assert forward_flops(build_model("fast", 10, MEAN, STD)) == expected


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


def test_unknown_architecture_is_named_in_the_error():
    with pytest.raises(ValueError, match="resnet"):
        build_model("resnet", 10, MEAN, STD)


def test_flip_tta_is_the_mean_of_the_image_and_its_mirror():
    from training.inference import make_logits_fn

    model = build_model("fast", 10, MEAN, STD, widths=(16, 32, 32))
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype(np.float32)
    expected = 0.5 * (model(x, training=False) + model(x[:, :, ::-1], training=False))
    np.testing.assert_allclose(make_logits_fn(model, 1)(x), expected, rtol=1e-4, atol=1e-5)

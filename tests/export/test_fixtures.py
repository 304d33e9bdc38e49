"""The shared fixtures give what tests/conftest.py promises the other areas."""

from __future__ import annotations

import numpy as np
import pytest


def _pixels_probabilities(version_dir, images):
    import tensorflow as tf

    fn = tf.saved_model.load(str(version_dir)).signatures["pixels"]
    return fn(images=tf.constant(images))["probabilities"].numpy()


def test_tiny_model_base_holds_version_1_with_real_signatures(tiny_model_base):
    import tensorflow as tf

    assert tiny_model_base.name == "cifar10"
    assert sorted(p.name for p in tiny_model_base.iterdir() if not p.name.startswith(".")) == ["1"]
    loaded = tf.saved_model.load(str(tiny_model_base / "1"))
    assert set(loaded.signatures) == {"serving_default", "pixels"}
    assert (tiny_model_base / "1" / "assets.extra" / "tf_serving_warmup_requests").is_file()


@pytest.mark.parametrize("turn", [1, 2])
def test_tiny_model_base_is_fresh_per_test(tiny_model_base, tmp_path, turn):
    """Each test gets its own copy: the first turn's scratch file is not in the second's."""
    assert tiny_model_base.is_relative_to(tmp_path)
    assert not (tiny_model_base / "1" / "scratch").exists()
    (tiny_model_base / "1" / "scratch").write_text("tests may change their copy")


def test_versions_differ_by_default_match_with_one_seed(tiny_model_base, add_model_version):
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    v2 = add_model_version(tiny_model_base, 2)
    v3 = add_model_version(tiny_model_base, 3, seed=1)
    assert v2 == tiny_model_base / "2"
    one = _pixels_probabilities(tiny_model_base / "1", images)
    assert not np.allclose(one, _pixels_probabilities(v2, images))
    np.testing.assert_array_equal(one, _pixels_probabilities(v3, images))


def test_add_model_version_refuses_an_existing_version(tiny_model_base, add_model_version):
    from export.publish import VersionExistsError

    with pytest.raises(VersionExistsError):
        add_model_version(tiny_model_base, 1)


def test_cifar_sample_is_balanced_real_jpegs(cifar_sample):
    assert len(cifar_sample) == 300
    assert cifar_sample.class_names[0] == "airplane" and len(cifar_sample.class_names) == 10
    assert np.bincount(cifar_sample.labels).tolist() == [30] * 10
    assert all(data[:3] == b"\xff\xd8\xff" for data in cifar_sample.data)

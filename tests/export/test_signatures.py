"""The exported signatures match DESIGN.md's contract (names, dtypes, shapes, sorted outputs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

OUTPUTS = {"probabilities": tf.float32, "classes": tf.string, "scores": tf.float32}


@pytest.fixture
def version_dir(tiny_model_base) -> Path:
    return tiny_model_base / "1"


@pytest.fixture
def loaded(version_dir):
    return tf.saved_model.load(str(version_dir))


@pytest.mark.parametrize(
    ("signature", "input_name", "dtype", "shape"),
    [
        ("serving_default", "image_bytes", tf.string, [None]),
        ("pixels", "images", tf.uint8, [None, 32, 32, 3]),
    ],
)
def test_signature_inputs_and_outputs(loaded, signature, input_name, dtype, shape):
    fn = loaded.signatures[signature]
    _, kwargs = fn.structured_input_signature
    assert list(kwargs) == [input_name]
    assert kwargs[input_name].dtype == dtype
    assert kwargs[input_name].shape.as_list() == shape
    assert {name: spec.dtype for name, spec in fn.structured_outputs.items()} == OUTPUTS
    for spec in fn.structured_outputs.values():
        assert spec.shape.as_list() == [None, 10]


def test_the_proxy_asks_for_the_outputs_the_signatures_have(loaded):
    """The proxy keeps its own copy of the names (it imports no TensorFlow) and asks for them
    by name (gRPC output_filter): a renamed output would fail every request."""
    from proxy.client.base import OUTPUTS as PROXY_OUTPUTS
    from proxy.client.base import PIXELS_INPUT, PIXELS_SIGNATURE

    fn = loaded.signatures[PIXELS_SIGNATURE]
    assert list(fn.structured_input_signature[1]) == [PIXELS_INPUT]
    assert set(PROXY_OUTPUTS) == set(fn.structured_outputs)


def test_only_the_two_contract_signatures(loaded):
    assert set(loaded.signatures) == {"serving_default", "pixels"}


def test_saved_model_cli_lists_both_signatures(version_dir):
    cli = Path(sys.executable).parent / "saved_model_cli"
    if not cli.exists():
        pytest.skip("saved_model_cli is not installed next to this Python")
    shown = subprocess.run(
        [str(cli), "show", "--dir", str(version_dir), "--all"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for block in shown.split("signature_def[")[1:]:
        name = block.split("]", 1)[0].strip("'")
        if name == "serving_default":
            assert "inputs['image_bytes'] tensor_info:\n        dtype: DT_STRING" in block
            assert "shape: (-1)" in block
        elif name == "pixels":
            assert "inputs['images'] tensor_info:\n        dtype: DT_UINT8" in block
            assert "shape: (-1, 32, 32, 3)" in block
        else:
            continue
        assert "outputs['classes'] tensor_info:\n        dtype: DT_STRING" in block
        assert "outputs['scores'] tensor_info:\n        dtype: DT_FLOAT" in block
        assert "outputs['probabilities'] tensor_info:\n        dtype: DT_FLOAT" in block
        assert "Method name is: tensorflow/serving/predict" in block
    assert "signature_def['serving_default']" in shown
    assert "signature_def['pixels']" in shown


def test_outputs_are_sorted_consistently(loaded):
    images = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    out = loaded.signatures["pixels"](images=tf.constant(images))
    probabilities, scores = out["probabilities"].numpy(), out["scores"].numpy()
    classes = out["classes"].numpy().astype(str)
    names = loaded.class_names.numpy().astype(str)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)
    for row in range(len(images)):
        assert sorted(classes[row]) == sorted(names)
        expected = [probabilities[row][list(names).index(c)] for c in classes[row]]
        np.testing.assert_array_equal(scores[row], expected)
        assert classes[row][0] == names[probabilities[row].argmax()]


def test_empty_batch_gives_empty_outputs(loaded):
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([], tf.string))
    assert out["probabilities"].shape == (0, 10) and out["classes"].shape == (0, 10)


def test_metadata_lives_in_the_savedmodel(loaded, version_dir):
    info = json.loads((version_dir / "assets" / "model_info.json").read_text())
    labels = (version_dir / "assets" / "labels.txt").read_text().split()
    assert labels == info["class_names"] == list(loaded.class_names.numpy().astype(str))
    np.testing.assert_allclose(loaded.mean.numpy(), info["mean"])
    np.testing.assert_allclose(loaded.std.numpy(), info["std"])
    assert json.loads(loaded.info.numpy()) == info
    assert info["tta"] == 0  # as the fixture exported it


@pytest.mark.parametrize(
    ("accuracies", "images", "level"),
    [
        ((0.8997, 0.9091, 0.9098), 10_000, 1),  # the shipped run: flip pays, translate does not
        ((0.115, 0.120, 0.125), 200, 0),  # one test image apart each: noise, no TTA
        ((0.50, 0.60, 0.70), 200, 2),  # clear gains survive a small test set
        ((0.90, 0.89, 0.95), 10_000, 2),  # compared with the level chosen so far
        ((0.90, 0.91, 0.92), None, 2),  # no image count recorded: the best
    ],
)
def test_auto_tta_pays_for_a_costlier_level_only_beyond_test_set_noise(accuracies, images, level):
    from export.tta import choose_tta, tta_reason
    from training.config import TTA_ACCURACY_KEYS

    meta = dict(zip(TTA_ACCURACY_KEYS.values(), accuracies, strict=True))
    if images:
        meta["test_images"] = images
    assert choose_tta(meta) == level
    assert choose_tta(meta, "2") == 2
    # export prints why, with what the level serves
    served = f"serves {accuracies[level]:.2%} on the run's test images"
    assert tta_reason(meta, "auto", level).endswith(served)
    assert (f"on {images:,} test images" if images else "no test-image count recorded") in (
        tta_reason(meta, "auto", level)
    )

"""export.encoded: the files serving_default is judged on, read as training reads them."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from export.encoded import read_encoded
from training.data import load_dataset


def _save(path: Path, colour: tuple[int, int, int], fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buf, fmt)
    path.write_bytes(buf.getvalue())


def _tree(root: Path) -> Path:
    """Three training classes; the test split lacks `bee` and holds a WebP."""
    for i, cls in enumerate(("ant", "bee", "cow")):
        _save(root / "train" / cls / "0.png", (80 * i, 0, 0), "PNG")
    _save(root / "test" / "ant" / "0.jpg", (0, 0, 0), "JPEG")
    _save(root / "test" / "cow" / "0.webp", (160, 0, 0), "WEBP")
    _save(root / "test" / "cow" / "1.tif", (160, 0, 0), "TIFF")  # trained on, not served
    return root


def test_a_test_split_without_a_class_keeps_the_training_indices(tmp_path):
    root = _tree(tmp_path / "d")
    encoded, dataset = read_encoded(root, "test"), load_dataset(root, cache_dir=None)
    assert encoded.class_names == dataset.class_names == ("ant", "bee", "cow")
    np.testing.assert_array_equal(encoded.labels, [0, 2])  # cow is 2, as training numbers it
    # The TIFF is read by training but left out: serving_default's graph cannot decode it.
    assert [Path(name).suffix for name in encoded.names] == [".jpg", ".webp"]
    assert len(dataset.test.labels) == 3


def test_a_tar_gives_the_same_files_as_the_folder(tmp_path):
    root = _tree(tmp_path / "d")
    archive = tmp_path / "d.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="d")
    a, b = read_encoded(root, "test"), read_encoded(archive, "test")
    assert a.data == b.data and a.class_names == b.class_names
    np.testing.assert_array_equal(a.labels, b.labels)

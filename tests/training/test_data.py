"""Data loaders on generated folders/tars/official-format archives, real images, and bad input."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.config import SHARED_DATA
from training.data import CIFAR10_CLASSES, DataError, load_dataset

SHARED_TAR = SHARED_DATA


def _image_bytes(color, size=(32, 32), fmt="PNG", mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, fmt)
    return buf.getvalue()


def make_tree(root: Path, classes=("ant", "bee", "cow"), per_class=4, size=(32, 32)) -> Path:
    for split in ("train", "test"):
        for i, cls in enumerate(classes):
            d = root / split / cls
            d.mkdir(parents=True)
            for j in range(per_class):
                fmt = "PNG" if j % 2 else "JPEG"
                (d / f"{j}.{fmt.lower()}").write_bytes(
                    _image_bytes((80 * i, 10 * j, 200), size, fmt)
                )
    return root


def test_folder_tree_gives_uint8_images_labels_and_sorted_classes(tmp_path):
    ds = load_dataset(make_tree(tmp_path / "d"), cache_dir=None)
    assert ds.class_names == ("ant", "bee", "cow")
    assert ds.train.images.shape == (12, 32, 32, 3) and ds.train.images.dtype == np.uint8
    assert sorted(np.bincount(ds.train.labels)) == [4, 4, 4]
    assert len(ds.test.labels) == 12


@pytest.mark.parametrize("size", [(120, 80), (80, 120)])
def test_larger_images_are_center_cropped_and_resized(tmp_path, size):
    """Red outer bands along the long side, green middle square: only the green survives."""
    width, height = size
    side = min(size)
    image = Image.new("RGB", size, (255, 0, 0))
    left, top = (width - side) // 2, (height - side) // 2
    image.paste((0, 255, 0), (left, top, left + side, top + side))
    for split in ("train", "test"):
        folder = tmp_path / "d" / split / "only"
        folder.mkdir(parents=True)
        image.save(folder / "banded.png")
    ds = load_dataset(tmp_path / "d", cache_dir=None)
    assert ds.train.images.shape == (1, 32, 32, 3)
    image = ds.train.images[0]
    np.testing.assert_array_equal(image[1:31, 1:31], np.broadcast_to([0, 255, 0], (30, 30, 3)))
    # The bilinear filter reaches a little past the crop box: a trace of red in the outermost
    # pixels, not a band (a wrong crop would leave whole columns or rows at 255).
    assert image[..., 0].max() < 64


def test_tar_gz_of_a_tree_matches_the_folder(tmp_path):
    root = make_tree(tmp_path / "d")
    archive = tmp_path / "d.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="mydata")
    a, b = load_dataset(root, cache_dir=None), load_dataset(archive, cache_dir=None)
    assert a.class_names == b.class_names
    for split_a, split_b in ((a.train, b.train), (a.test, b.test)):
        order_a, order_b = _by_content(split_a), _by_content(split_b)
        np.testing.assert_array_equal(split_a.labels[order_a], split_b.labels[order_b])
        np.testing.assert_array_equal(split_a.images[order_a], split_b.images[order_b])


def _by_content(split) -> np.ndarray:
    """An order that does not depend on how the loader listed the files: by label, then bytes."""
    keys = [(int(label), image.tobytes()) for label, image in zip(split.labels, split.images)]
    return np.array(sorted(range(len(keys)), key=keys.__getitem__))


def _official_archive(path: Path, n: int = 20) -> np.ndarray:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6 * n, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(6 * n) % 10
    with tarfile.open(path, "w:gz") as tar:

        def add(name, obj):
            data = pickle.dumps(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for b in range(6):
            sl = slice(b * n, (b + 1) * n)
            flat = images[sl].transpose(0, 3, 1, 2).reshape(n, -1)
            name = f"data_batch_{b + 1}" if b < 5 else "test_batch"
            add(name, {b"data": flat, b"labels": labels[sl].tolist()})
        names = [c.encode() for c in ("airplane", "automobile", "bird", "cat", "deer")]
        names += [c.encode() for c in ("dog", "frog", "horse", "ship", "truck")]
        add("batches.meta", {b"label_names": names})
    return images


def test_official_python_archive_format(tmp_path):
    images = _official_archive(tmp_path / "cifar-10-python.tar.gz")
    ds = load_dataset(tmp_path / "cifar-10-python.tar.gz", cache_dir=None)
    assert ds.class_names[0] == "airplane" and len(ds.class_names) == 10
    np.testing.assert_array_equal(ds.train.images, images[:100])  # HWC order restored
    np.testing.assert_array_equal(ds.test.images, images[100:])


def test_the_second_load_reads_the_cache(tmp_path):
    root = make_tree(tmp_path / "d")
    cache = tmp_path / "cache"
    first = load_dataset(root, cache_dir=cache)
    (cache_file,) = cache.glob("*.npz")
    # Decoding is deterministic, so equal images would not show that the cache was read: mark
    # the cached copy, and the second load must return the mark.
    with np.load(cache_file) as z:
        cached = dict(z)
    cached["x_train"] = np.full_like(cached["x_train"], 7)
    np.savez(cache_file, **cached)
    second = load_dataset(root, cache_dir=cache)
    assert (second.train.images == 7).all()
    np.testing.assert_array_equal(second.test.images, first.test.images)
    # an edited source changes the key: no stale cache is read, and none is left behind
    (root / "train/ant/0.jpeg").write_bytes(_image_bytes((1, 2, 3), fmt="JPEG"))
    third = load_dataset(root, cache_dir=cache)
    assert not (third.train.images == 7).all()
    assert not np.array_equal(third.train.images, first.train.images)
    assert len(list(cache.glob("*.npz"))) == 1


def test_only_a_decode_the_cache_cannot_spare_is_announced(tmp_path):
    """The first load of the shared archive ran 17 s in silence."""
    root = make_tree(tmp_path / "d")
    heard: list[str] = []
    load_dataset(root, cache_dir=tmp_path / "cache", announce=heard.append)
    assert heard == [f"decoding the images of d, to be cached in {tmp_path / 'cache'} for "
                     "later loads"]  # fmt: skip
    load_dataset(root, cache_dir=tmp_path / "cache", announce=heard.append)
    assert len(heard) == 1


def test_an_unreadable_cache_is_decoded_again_and_replaced(tmp_path, caplog):
    """A cache cut short (a disk that filled, a copy interrupted) costs one decode, not the run."""
    root = make_tree(tmp_path / "d")
    cache = tmp_path / "cache"
    first = load_dataset(root, cache_dir=cache)
    (cache_file,) = cache.glob("*.npz")
    whole = cache_file.read_bytes()
    flipped = bytearray(whole)
    flipped[len(whole) // 2] ^= 0xFF  # inside a member's bytes: its CRC no longer matches
    for damaged in (whole[: len(whole) // 2], bytes(flipped)):
        cache_file.write_bytes(damaged)
        caplog.clear()
        with caplog.at_level("WARNING", logger="training.data"):
            second = load_dataset(root, cache_dir=cache)
        assert "ignoring unreadable cache" in caplog.text and cache_file.name in caplog.text
        np.testing.assert_array_equal(second.train.images, first.train.images)
        with np.load(cache_file) as z:  # written whole again
            np.testing.assert_array_equal(z["x_train"], first.train.images)


def test_the_cache_follows_the_images_not_file_times_or_other_files(tmp_path):
    """A copy of the same archive made again (each session's shared data is) read its cache,
    not a 13 s decode and a 185 MB rewrite; a run folder kept inside an image folder leaves
    its cache as it was. Files are the same when their bytes are."""
    import os

    from training.data import _cache_file

    root = make_tree(tmp_path / "d")
    archive = tmp_path / "d.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="d")
    cache = tmp_path / "cache"
    keys = {"tar": _cache_file(archive, cache, 32), "tree": _cache_file(root, cache, 32)}
    os.utime(archive, (1, 1))  # copied in again: same bytes, another mtime
    (root / "runs/r").mkdir(parents=True)
    (root / "runs/r/train.log").write_text("a run kept beside its data\n")
    (root / "runs/r/curves.png").write_bytes(_image_bytes((1, 2, 3), fmt="PNG"))
    assert {"tar": _cache_file(archive, cache, 32), "tree": _cache_file(root, cache, 32)} == keys
    with tarfile.open(archive, "w:gz") as tar:  # other bytes: another key
        tar.add(root / "train", arcname="d/train")
    assert _cache_file(archive, cache, 32) != keys["tar"]


def test_a_folder_without_image_files_is_fingerprinted_by_all_its_files(tmp_path):
    """The unpacked official archive holds no image files: its fingerprint was the hash of
    nothing, so any two such folders were "the same data" to a resumed run and its cache."""
    from training.data import fingerprint

    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    (batches / "data_batch_1").write_bytes(b"one")
    before = fingerprint(batches)
    (batches / "data_batch_1").write_bytes(b"other bytes")
    assert fingerprint(batches) != before


def test_two_spellings_of_one_folder_share_one_cache(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "d")
    cache = tmp_path / "cache"
    load_dataset(root, cache_dir=cache)
    monkeypatch.chdir(tmp_path)
    load_dataset(Path("d"), cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 1


def test_a_new_cache_keeps_those_of_other_sources_and_sizes(tmp_path):
    cache = tmp_path / "cache"
    a, b = make_tree(tmp_path / "a" / "d"), make_tree(tmp_path / "b" / "d")  # same name
    load_dataset(a, cache_dir=cache)
    load_dataset(a, cache_dir=cache, size=16)
    load_dataset(b, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 3


def test_a_cache_that_cannot_be_written_costs_nothing_but_the_cache(tmp_path, caplog):
    # The trainer image once ran where the cache folder could not be made: a traceback before
    # training started. A file where the folder should be fails the same way, also as root.
    root = make_tree(tmp_path / "d")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with caplog.at_level("WARNING", logger="training.data"):
        ds = load_dataset(root, cache_dir=blocker / "cache")
    assert len(ds.train.labels) == 12
    assert "could not cache the decoded images" in caplog.text


def test_a_cache_write_cut_short_leaves_no_partial_file(tmp_path, monkeypatch, caplog):
    import training.data

    def disk_full(*_args):
        raise OSError(28, "No space left on device")

    root = make_tree(tmp_path / "d")
    cache = tmp_path / "cache"
    monkeypatch.setattr(training.data.os, "replace", disk_full)  # stands in for a full disk
    with caplog.at_level("WARNING", logger="training.data"):
        ds = load_dataset(root, cache_dir=cache)
    assert len(ds.test.labels) == 12
    assert "No space left" in caplog.text
    assert list(cache.iterdir()) == []


def test_the_cache_folder_follows_DATASET_CACHE_DIR(tmp_path):
    show = "from training.config import DEFAULT_CACHE_DIR as d; print(d)"
    env = {**os.environ, "DATASET_CACHE_DIR": str(tmp_path / "c")}
    root = Path(__file__).resolve().parents[2]
    moved = subprocess.run(
        [sys.executable, "-c", show], cwd=root, env=env, capture_output=True, text=True
    )
    env.pop("DATASET_CACHE_DIR")
    # The project's folder, also for a command run from elsewhere (it decoded the data again
    # into the working directory's .cache).
    default = subprocess.run(
        [sys.executable, "-c", show], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert moved.stdout.strip() == str(tmp_path / "c")
    assert default.stdout.strip() == str(root / ".cache" / "datasets")


def test_a_subset_still_names_the_skipped_files():
    """training/run.py logs the skipped files of the subset it trains on: dropped there."""
    from training.data import Dataset, Split

    split = Split(np.zeros((10, 32, 32, 3), np.uint8), np.arange(10) % 2)
    ds = Dataset(split, split, ("a", "b"), "generated", ("train/a/broken.jpg",))
    assert ds.subset(4, 4, seed=1).skipped == ("train/a/broken.jpg",)


def test_a_subset_larger_than_the_split_says_it_uses_them_all(caplog):
    """--train-subset 100000 trained on the 50,000 there were without a word."""
    from training.data import Dataset, Split

    split = Split(np.zeros((10, 32, 32, 3), np.uint8), np.arange(10) % 2)
    ds = Dataset(split, split, ("a", "b"), "generated", ())
    with caplog.at_level("WARNING"):
        assert len(ds.subset(train=25, test=4).train.labels) == 10
    assert "a subset of 25 train images asked for; generated has 10: using them all" in (
        caplog.text
    )
    assert "test images asked" not in caplog.text


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nope")


def test_a_few_bad_files_are_skipped_and_named(tmp_path, caplog):
    root = make_tree(tmp_path / "d")
    (root / "train/ant/notes.jpg").write_text("this is not an image")
    ds = load_dataset(root, cache_dir=None)
    assert len(ds.train.labels) == 12
    assert any("notes.jpg" in s for s in ds.skipped)
    assert "notes.jpg" in caplog.text


def test_a_class_whose_files_all_fail_is_an_error_not_a_renumbering(tmp_path):
    # Dropping it would shift every later class's index; the exporter, which reads the
    # encoded files, would then score the model against other labels.
    root = make_tree(tmp_path / "d", classes=("ant", "bee", "cow", "dog"))
    for file in (root / "train/bee").iterdir():
        file.write_text("not an image")
    with pytest.raises(DataError, match="class bee"):
        load_dataset(root, cache_dir=None)


def test_a_tree_without_a_test_split_is_refused(tmp_path):
    # It trained, then wrote NaN test accuracies into meta.json (not valid JSON) and export
    # published them.
    root = make_tree(tmp_path / "d")
    shutil.rmtree(root / "test")
    with pytest.raises(DataError, match="no test images"):
        load_dataset(root, cache_dir=None)


def test_no_usable_images_fails_with_the_file_named(tmp_path):
    d = tmp_path / "d/train/cat"
    d.mkdir(parents=True)
    (d / "a.jpg").write_text("text, not jpeg")
    with pytest.raises(DataError, match=r"a\.jpg"):
        load_dataset(tmp_path / "d", cache_dir=None)


def test_empty_class_folder_is_reported(tmp_path, caplog):
    root = make_tree(tmp_path / "d")
    (root / "train/empty").mkdir()
    load_dataset(root, cache_dir=None)
    assert "empty" in caplog.text


def test_a_plain_file_is_rejected(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("hello")
    with pytest.raises(DataError, match="neither"):
        load_dataset(f)


def _archive(tmp_path: Path, mode: str) -> Path:
    root = make_tree(tmp_path / "d", per_class=6)
    archive = tmp_path / f"d.tar{'.gz' if mode == 'w:gz' else ''}"
    with tarfile.open(archive, mode) as tar:
        tar.add(root, arcname="mydata")
    return archive


def test_a_truncated_archive_is_a_data_error_not_a_traceback(tmp_path):
    archive = _archive(tmp_path, "w:gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    with pytest.raises(DataError, match="truncated or damaged"):  # was EOFError from gzip
        load_dataset(archive, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*"))


def test_a_zeroed_block_mid_archive_is_refused_not_read_as_its_end(tmp_path):
    """tarfile stops at a zeroed header as if the archive ended there: the data set came out
    short, with no word, and was cached so. 512-byte blocks; zero the header of a file in the
    middle (a plain tar, so the bytes on disk are the blocks)."""
    archive = _archive(tmp_path, "w")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
    middle = members[len(members) // 2].offset
    data = bytearray(archive.read_bytes())
    data[middle : middle + 512] = bytes(512)
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError, match="holds data after the point where its archive stops"):
        load_dataset(archive, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*"))


def test_a_plain_tar_cut_off_at_a_header_is_refused(tmp_path):
    """An interrupted copy can stop exactly where a member's header starts: tarfile then sees
    no header and ends there, as if the archive were whole."""
    archive = _archive(tmp_path, "w")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
    archive.write_bytes(archive.read_bytes()[: members[-1].offset])
    with pytest.raises(DataError, match="ends without its end-of-archive block"):
        load_dataset(archive, cache_dir=None)


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:xz"])
def test_whole_archives_of_any_compression_load(tmp_path, mode):
    assert len(load_dataset(_archive(tmp_path, mode), cache_dir=None).train.labels) == 18


@pytest.mark.skipif(not SHARED_TAR.exists(), reason="../shared/data not present")
def test_real_cifar_jpegs_from_the_shared_mirror(tmp_path):
    """A few hundred real JPEGs repacked from the shared tar load like the full set would."""
    small = tmp_path / "small.tar"
    counts: dict[str, int] = {}
    with tarfile.open(SHARED_TAR) as src, tarfile.open(small, "w") as dst:
        for info in src:
            parts = Path(info.name).parts
            if not info.isfile() or len(parts) < 3:
                continue
            key = f"{parts[-3]}/{parts[-2]}"
            if counts.get(key, 0) < 15:
                counts[key] = counts.get(key, 0) + 1
                dst.addfile(info, src.extractfile(info))
            if len(counts) == 20 and min(counts.values()) >= 15:
                break
    ds = load_dataset(small, cache_dir=None)
    assert ds.class_names == CIFAR10_CLASSES
    assert ds.train.images.shape == (150, 32, 32, 3)
    assert ds.test.images.shape == (150, 32, 32, 3)
    assert 60 < ds.train.images.mean() < 200  # real photos, not blank decodes


def test_data_set_photos_are_trained_on_as_the_proxy_sends_them(tmp_path):
    """Training once decoded with a bare convert("RGB"): a transparent PNG came out over
    black (the page composites it over white) and a phone photo lay on its side (the proxy
    applies EXIF orientation), so custom data sets trained on other pixels than were served."""
    from imaging.decode import to_pixels

    clear = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    clear.paste((200, 40, 40, 255), (32, 0, 64, 48))  # opaque right half, transparent left
    buf = io.BytesIO()
    clear.save(buf, "PNG")
    rotated = Image.new("RGB", (96, 64), (0, 0, 255))
    rotated.paste((255, 255, 0), (0, 0, 48, 64))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    photo = io.BytesIO()
    rotated.save(photo, "JPEG", quality=95, exif=exif)
    files = {"0.png": buf.getvalue(), "1.jpg": photo.getvalue()}
    for split in ("train", "test"):
        folder = tmp_path / "d" / split / "thing"
        folder.mkdir(parents=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
    images = load_dataset(tmp_path / "d", cache_dir=None).train.images
    for image, data in zip(images, files.values(), strict=True):
        np.testing.assert_array_equal(image, to_pixels(data, 40_000_000))
    assert images[0][16, 2].tolist() == [255, 255, 255]  # transparency over white
    # Upright, the yellow half is on top: EXIF orientation 6 turns the left half upwards.
    assert images[1][2, 16, 2] < 100 and images[1][29, 16, 2] > 150

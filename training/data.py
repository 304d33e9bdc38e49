"""Load image-classification data sets as uint8 arrays, decoding once and caching the result.

Three sources, one result type (`Dataset`):
  * an image-folder tree ``<root>/{train,test}/<class>/*.jpg`` or a .tar/.tar.gz of one
    (the format of ``../shared/data/cifar10-jpeg.tar.gz`` and of custom data sets);
  * the official CIFAR-10 python archive (``cifar-10-python.tar.gz`` or its unpacked folder);
  * the Keras download (``keras``), only when asked for.

Decoding 60,000 JPEGs takes ~10-20 s; the decoded arrays are cached in the project's
``.cache/datasets`` keyed by the source's path and its `fingerprint` (an archive's content; a
folder's image names, sizes and mtimes), so the second load takes well under a second.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import logging
import lzma
import os
import pickle
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imaging.decode import ImageError, to_pixels
from training.config import DEFAULT_CACHE_DIR

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "test")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2")
# Skip-and-report is for a few damaged files; beyond this share the source is not trusted.
MAX_BAD_FRACTION = 0.01
# Larger images are skipped as unreadable: Pillow's own decompression-bomb limit.
DATA_MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS
# CIFAR-10's label order (index 0..9), which is also alphabetical.
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


class DataError(Exception):
    """A data source that cannot be used, with a message that names the file at fault."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 [N, H, W, 3]
    labels: np.ndarray  # int32 [N]

    def sample(self, n: int | None, seed: Sequence[int]) -> Split:
        """`n` of the images at random, in their order (all of them when `n` is None or not
        smaller); the pick depends only on `seed`."""
        if n is None or n >= len(self.labels):
            return self
        idx = np.sort(np.random.default_rng(list(seed)).choice(len(self.labels), n, replace=False))
        return Split(self.images[idx], self.labels[idx])


@dataclass(frozen=True)
class Dataset:
    train: Split
    test: Split
    class_names: tuple[str, ...]
    source: str
    skipped: tuple[str, ...] = ()  # files that could not be decoded, "path: reason"

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[1])

    def subset(self, train: int | None = None, test: int | None = None, seed: int = 0) -> Dataset:
        """A random subset, for quick runs and tests; each split's pick depends only on seed."""

        def pick(split: Split, n: int | None, stream: int) -> Split:
            if n is not None and n > len(split.labels):
                name = SPLITS[stream]
                log.warning(
                    "a subset of %d %s images asked for; %s has %d: using them all",
                    n, name, self.source, len(split.labels),
                )  # fmt: skip
            return split.sample(n, [seed, stream])

        return Dataset(
            pick(self.train, train, 0),
            pick(self.test, test, 1),
            self.class_names,
            self.source,
            self.skipped,  # still the files the source could not give, whatever the subset
        )


def load_dataset(
    source: str | os.PathLike,
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
    size: int = 32,
    announce: Callable[[str], None] | None = None,
) -> Dataset:
    """Load ``source`` (folder, tar, official archive, or the word ``keras``). `announce`
    hears a line before a decode that the cache cannot spare (tens of seconds, once)."""
    if str(source) == "keras":
        return _load_keras_download()
    path = check_source(source)
    cache_file = _cache_file(path, cache_dir, size) if cache_dir else None
    if cache_file:
        try:
            return _read_cache(cache_file, str(path))
        except FileNotFoundError:
            pass  # the first load of this source
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            # a cache cut short or damaged (BadZipFile: no directory, or a member's CRC wrong)
            log.warning("ignoring unreadable cache %s (%s)", cache_file, err)
    if announce:
        kept = f", to be cached in {cache_file.parent} for later loads" if cache_file else ""
        announce(f"decoding the images of {path.name}{kept}")
    dataset = _load_uncached(path, size)
    if cache_file:
        try:
            _write_cache(cache_file, dataset)
        except OSError as err:  # a read-only or full disk costs the next run a decode, no more
            log.warning(
                "could not cache the decoded images in %s (%s); going on without",
                cache_file.parent,
                err,
            )
    return dataset


def check_source(source: str | os.PathLike) -> Path:
    """The source's path, once it is known to exist and to be a folder or a tar: the checks
    that take no time, so that a trainer can make them before its seconds of start-up."""
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(
            f"data source not found: {path} (give --data, or DATA= to make: an image-folder "
            "tree or its .tar/.tar.gz, the official cifar-10-python.tar.gz, or keras to "
            "download CIFAR-10)"
        )
    if not path.is_dir() and not tarfile.is_tarfile(path):
        raise DataError(
            f"{path} is neither a folder, a .tar/.tar.gz archive, nor the CIFAR-10 python archive"
        )
    flat = path.is_dir() and not any(child.is_dir() for child in path.iterdir())
    if flat and not _is_official_cifar(path):  # cifar-10-batches-py/ holds files only
        archives = sorted(p.name for p in path.iterdir() if p.name.endswith(TAR_SUFFIXES))
        hint = f"; it holds {archives[0]}: pass that file" if archives else ""
        raise DataError(f"{path} holds no image folders (<root>/train/<class>/*.jpg){hint}")
    return path


def _load_uncached(path: Path, size: int) -> Dataset:
    if _is_official_cifar(path):
        return _load_official_cifar(path)
    return _assemble(tree_members(path), str(path), size)


# ---------------------------------------------------------------- image-folder trees


def _split_and_class(parts: tuple[str, ...]) -> tuple[str, str] | None:
    """('...', 'train', 'cat', 'x.jpg') -> ('train', 'cat'); None when not under a split."""
    if len(parts) < 3 or Path(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
        return None
    split, cls = parts[-3], parts[-2]
    return (split, cls) if split in SPLITS else None


def tree_members(
    path: Path, read: Callable[[str], bool] = lambda split: True
) -> Iterator[tuple[str, str, str, bytes | None]]:
    """(split, class, name, bytes) of every image file of a folder or .tar(.gz) tree, in
    name order for a folder and archive order for a tar. The bytes are None for a split that
    `read` declines: a tar is walked past them anyway, and their class names still count.
    Training decodes these files; export judges `serving_default` on them."""
    if path.is_dir():
        yield from _folder_members(path, read)
        return
    with reading_archive(path) as tar:
        for info in tar:
            key = _split_and_class(tuple(Path(info.name).parts)) if info.isfile() else None
            if key is None:
                continue
            data = tar.extractfile(info) if read(key[0]) else None
            yield key[0], key[1], f"{path}:{info.name}", data.read() if data else None
        _check_archive_end(tar, path)


@contextlib.contextmanager
def reading_archive(path: Path) -> Iterator[tarfile.TarFile]:
    """An open tar whose damage is a DataError: a truncated or corrupt file raised EOFError,
    zlib or gzip errors from deep inside tarfile, each a traceback."""
    try:
        with tarfile.open(path) as tar:
            yield tar
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as err:
        raise DataError(
            f"cannot read {path} to its end ({err or type(err).__name__}): the archive is "
            "truncated or damaged; copy or download it again"
        ) from err


def _check_archive_end(tar: tarfile.TarFile, path: Path) -> None:
    """Fail on an archive that tarfile stopped reading early. tarfile ends at the first
    header it cannot read (a zeroed or damaged block, or none at all) wherever it is, so a
    damaged or cut-off archive silently made a smaller data set (and the cache kept it so).
    A whole archive stops at its 512-byte end-of-archive block, and only zero padding
    follows; reading to the end also makes gzip check its length and CRC."""
    fix = "copy or download it again"
    if tar.fileobj.tell() != tar.offset + tarfile.BLOCKSIZE:
        raise DataError(f"{path} ends without its end-of-archive block: it is cut off; {fix}")
    while chunk := tar.fileobj.read(1 << 20):
        if chunk.count(0) != len(chunk):
            raise DataError(
                f"{path} holds data after the point where its archive stops reading "
                f"({tar.offset:,} bytes in, uncompressed): a damaged block, or several "
                f"archives joined together; {fix}"
            )


def _folder_members(
    root: Path, read: Callable[[str], bool]
) -> Iterator[tuple[str, str, str, bytes | None]]:
    for file in sorted(root.rglob("*")):
        if file.is_file():
            key = _split_and_class(file.relative_to(root).parts)
            if key is None:
                continue
            yield key[0], key[1], str(file), file.read_bytes() if read(key[0]) else None
    for split in SPLITS:
        split_dir = _find_split_dir(root, split)
        for cls_dir in sorted(split_dir.iterdir()) if split_dir else []:
            if cls_dir.is_dir() and not any(cls_dir.iterdir()):
                log.warning("class folder %s is empty", cls_dir)


def _find_split_dir(root: Path, split: str) -> Path | None:
    candidates = [p for p in root.rglob(split) if p.is_dir()]
    return min(candidates, key=lambda p: len(p.parts)) if candidates else None


def decode_image_file(data: bytes, size: int) -> np.ndarray:
    """A data-set file as the uint8 [size, size, 3] pixels the proxy would send for it.

    The proxy's own decoder: EXIF orientation applied, transparency over white, 16-bit
    depths scaled, center-crop to a square, antialiased resize. So custom data sets of phone
    photos or transparent PNGs are trained on exactly as the page serves them (CIFAR-10's
    32x32 JPEGs come out as Pillow decodes them).
    """
    return to_pixels(data, DATA_MAX_PIXELS, size)


def _assemble(members, source: str, size: int) -> Dataset:
    images: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    classes: dict[str, list[str]] = {s: [] for s in SPLITS}
    bad: list[str] = []
    listed: set[str] = set()  # training classes with files, readable or not
    total = 0
    for split, cls, name, data in members:
        total += 1
        if split == "train":
            listed.add(cls)
        try:
            images[split].append(decode_image_file(data or b"", size))
            classes[split].append(cls)
        except (ImageError, OSError, ValueError) as err:
            bad.append(f"{name}: {type(err).__name__}: {err}")
    for line in bad[:20]:
        log.warning("skipped unreadable image %s", line)
    if bad:
        log.warning("skipped %d of %d files that are not readable images", len(bad), total)
    if not images["train"]:
        detail = f" ({len(bad)} files could not be decoded, first: {bad[0]})" if bad else ""
        raise DataError(
            f"no usable training images in {source}: expected <root>/train/<class>/*.jpg{detail}"
        )
    if not images["test"]:  # every figure the run reports is measured on it
        raise DataError(
            f"no test images in {source}: expected <root>/test/<class>/*.jpg beside train/"
        )
    if len(bad) > max(10, MAX_BAD_FRACTION * total):
        raise DataError(f"{len(bad)} of {total} files in {source} are unreadable, first: {bad[0]}")
    class_names = tuple(sorted(set(classes["train"])))
    if lost := sorted(listed - set(class_names)):  # it would renumber every class after it
        raise DataError(f"no training file of class {', '.join(lost)} in {source} could be decoded")
    unknown = set(classes["test"]) - set(class_names)
    if unknown:
        raise DataError(f"test classes {sorted(unknown)} in {source} have no training images")
    index = {c: i for i, c in enumerate(class_names)}

    def split(name: str) -> Split:
        if not images[name]:
            return Split(np.zeros((0, size, size, 3), np.uint8), np.zeros((0,), np.int32))
        labels = np.array([index[c] for c in classes[name]], dtype=np.int32)
        return Split(np.stack(images[name]), labels)

    return Dataset(split("train"), split("test"), class_names, source, tuple(bad))


# ---------------------------------------------------------------- official CIFAR-10 archive

_OFFICIAL_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def _is_official_cifar(path: Path) -> bool:
    if path.is_dir():
        return (path / "batches.meta").exists() or (path / "cifar-10-batches-py").is_dir()
    if not tarfile.is_tarfile(path):
        return False
    with reading_archive(path) as tar:
        for info in tar:
            if Path(info.name).name == "batches.meta":
                return True
            if Path(info.name).suffix.lower() in IMAGE_SUFFIXES:
                return False
    return False


def _load_official_cifar(path: Path) -> Dataset:
    blobs: dict[str, bytes] = {}
    if path.is_dir():
        folder = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
        for f in folder.iterdir():
            blobs[f.name] = f.read_bytes()
    else:
        with reading_archive(path) as tar:
            for info in tar:
                if info.isfile():
                    blobs[Path(info.name).name] = tar.extractfile(info).read()
            _check_archive_end(tar, path)
    missing = [n for n in [*_OFFICIAL_TRAIN, "test_batch", "batches.meta"] if n not in blobs]
    if missing:
        raise DataError(f"{path} looks like the CIFAR-10 python archive but lacks {missing}")

    def batch(name: str) -> Split:
        try:
            d = pickle.loads(blobs[name], encoding="bytes")
            x = np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            return Split(np.ascontiguousarray(x), np.asarray(d[b"labels"], np.int32))
        except Exception as err:
            raise DataError(f"cannot read {path}:{name}: {err}") from err

    train = [batch(n) for n in _OFFICIAL_TRAIN]
    meta = pickle.loads(blobs["batches.meta"], encoding="bytes")
    names = tuple(n.decode() for n in meta[b"label_names"])
    return Dataset(
        Split(np.concatenate([s.images for s in train]), np.concatenate([s.labels for s in train])),
        batch("test_batch"),
        names,
        str(path),
    )


def _load_keras_download() -> Dataset:
    import keras  # imported here: the other loaders must not need TensorFlow

    try:
        (xt, yt), (xv, yv) = keras.datasets.cifar10.load_data()
    except Exception as err:
        raise DataError(f"the Keras CIFAR-10 download failed ({err}); pass a local path") from err
    return Dataset(
        Split(xt, yt.reshape(-1).astype(np.int32)),
        Split(xv, yv.reshape(-1).astype(np.int32)),
        CIFAR10_CLASSES,
        "keras",
    )


# ---------------------------------------------------------------- cache

_CACHE_FORMAT = 2  # 2: files decoded by imaging.decode (EXIF, transparency over white)


def _cache_file(path: Path, cache_dir: Path, size: int) -> Path:
    origin = hashlib.sha256(f"{path.resolve()}|{size}".encode()).hexdigest()[:8]
    state = hashlib.sha256(f"{fingerprint(path)}|{_CACHE_FORMAT}".encode()).hexdigest()[:12]
    return cache_dir / f"{path.name}-{origin}-{state}.npz"


def fingerprint(path: Path) -> str:
    """What a data set's cache is valid for, and how a resumed run knows its data after a
    move (`mv` keeps the mtimes). A file: its content (a copy of the same archive made again,
    as each session's shared data is, has a new mtime, and re-decoding it cost 13 s and a
    185 MB rewrite; hashing the 19 MB archive takes 15 ms). A folder: the image files the
    loader reads, by name, size and mtime (hashing every image would cost more than decoding),
    so a run folder or notes kept inside it change nothing; a folder without any (the official
    archive unpacked) by all its files."""
    path = Path(path).resolve()
    if not path.is_dir():
        st = path.stat()
        return _file_digest(path, st.st_size, st.st_mtime_ns)
    files = [f for f in sorted(path.rglob("*")) if f.is_file()]
    images = [f for f in files if _split_and_class(f.relative_to(path).parts)]
    stamp = hashlib.sha256()
    for f in images or files:
        fs = f.stat()  # relative names: two spellings of one folder share one cache
        stamp.update(f"{f.relative_to(path)}:{fs.st_size}:{fs.st_mtime_ns}".encode())
    return stamp.hexdigest()


@functools.lru_cache(maxsize=8)
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    """A file's SHA-256, once per state of the file in a process (the loader and the run's
    record both ask: a multi-gigabyte archive of your own would take seconds)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _drop_superseded(file: Path) -> None:
    """Delete this source's caches of an older state or format: each is ~185 MB for CIFAR-10,
    and an edited source or a format bump would otherwise leave one behind every time."""
    stem = file.name.rsplit("-", 1)[0]  # <name>-<origin>, shared by this source's caches
    for old in file.parent.glob(f"{glob.escape(stem)}-*.npz"):
        if old != file and ".tmp." not in old.name:  # another load's write in progress
            try:
                old.unlink(missing_ok=True)
                log.info("removed the superseded cache %s", old)
            except OSError as err:  # the new cache is written; an old one left costs disk only
                log.warning("could not remove the superseded cache %s (%s)", old, err)


def _write_cache(file: Path, ds: Dataset) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(f".{os.getpid()}.tmp.npz")  # two loads at once write their own
    try:
        np.savez(
            tmp,
            x_train=ds.train.images,
            y_train=ds.train.labels,
            x_test=ds.test.images,
            y_test=ds.test.labels,
            class_names=np.array(ds.class_names),
            skipped=np.array(ds.skipped, dtype=str),
        )
        os.replace(tmp, file)
        _drop_superseded(file)
    finally:
        tmp.unlink(missing_ok=True)  # a full disk must not leave half a cache behind


def _read_cache(file: Path, source: str) -> Dataset:
    with np.load(file) as z:
        return Dataset(
            Split(z["x_train"], z["y_train"]),
            Split(z["x_test"], z["y_test"]),
            tuple(str(c) for c in z["class_names"]),
            source,
            tuple(str(s) for s in z["skipped"]),
        )


def has_only_test_split(data: str) -> bool:
    """A folder or tar with test/<class>/ images and no train/ split (your own labelled
    photos): a SavedModel takes its classes from itself, so it needs no training images."""
    if data == "keras":
        return False
    found_test = False
    for split, *_ in tree_members(check_source(data), read=lambda split: False):
        if split == "train":
            return False  # a whole data set: stop at its first training image
        found_test = found_test or split == "test"
    return found_test  # the CIFAR-10 python archive has neither

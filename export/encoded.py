"""Original encoded image files of an image-folder data set, read straight from its tar or folder.

`serving_default` is judged on the files a user would send, not on decoded arrays, so
evaluation, the agreement benchmark and the test fixtures read the JPEG bytes themselves.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}


@dataclass(frozen=True)
class EncodedImages:
    data: list[bytes]
    labels: np.ndarray  # int32 [N], index into class_names
    class_names: tuple[str, ...]
    names: list[str]  # file names inside the source, for messages

    def __len__(self) -> int:
        return len(self.data)

    def take(self, indices) -> EncodedImages:
        idx = [int(i) for i in indices]
        return EncodedImages(
            [self.data[i] for i in idx],
            self.labels[idx],
            self.class_names,
            [self.names[i] for i in idx],
        )

    def per_class(self, count: int) -> EncodedImages:
        """The first `count` images of every class (a small, balanced, deterministic sample)."""
        chosen = [np.flatnonzero(self.labels == c)[:count] for c in range(len(self.class_names))]
        return self.take(np.sort(np.concatenate(chosen)))


def read_encoded(source: str | Path, split: str = "test") -> EncodedImages:
    """All image files under `<root>/<split>/<class>/` of a folder or .tar(.gz), sorted by name.

    Class indices follow the sorted class-folder names, as `training.data` assigns them.
    """
    path = Path(source)
    members = _folder_members(path, split) if path.is_dir() else _tar_members(path, split)
    found = sorted(members)
    class_names = tuple(sorted({cls for _, cls, _ in found}))
    if not found:
        raise FileNotFoundError(f"no {split}/<class>/<image> files in {source}")
    index = {c: i for i, c in enumerate(class_names)}
    return EncodedImages(
        [data for _, _, data in found],
        np.array([index[cls] for _, cls, _ in found], np.int32),
        class_names,
        [name for name, _, _ in found],
    )


def _split_class(parts: tuple[str, ...], split: str) -> str | None:
    """('root', 'test', 'cat', 'x.jpg') -> 'cat' when under `split`, else None."""
    if len(parts) < 3 or parts[-3] != split:
        return None
    return parts[-2] if Path(parts[-1]).suffix.lower() in IMAGE_SUFFIXES else None


def _tar_members(path: Path, split: str) -> Iterator[tuple[str, str, bytes]]:
    with tarfile.open(path) as tar:
        for info in tar:
            cls = _split_class(tuple(Path(info.name).parts), split) if info.isfile() else None
            if cls is not None:
                yield info.name, cls, tar.extractfile(info).read()


def _folder_members(root: Path, split: str) -> Iterator[tuple[str, str, bytes]]:
    for file in root.rglob("*"):
        cls = _split_class(file.relative_to(root).parts, split) if file.is_file() else None
        if cls is not None:
            yield str(file.relative_to(root)), cls, file.read_bytes()

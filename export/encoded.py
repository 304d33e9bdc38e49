"""Original encoded image files of an image-folder data set, read straight from its tar or folder.

`serving_default` is judged on the files a user would send, not on decoded arrays, so
evaluation, the agreement benchmark and the test fixtures read the JPEG bytes themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.config import SERVED_SUFFIXES
from training.data import tree_members


@dataclass(frozen=True)
class EncodedImages:
    data: list[bytes]
    labels: np.ndarray  # int32 [N], index into class_names
    class_names: tuple[str, ...]
    names: list[str]  # "<tar>:<member>" or the file's path, for messages

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

    The files are `training.data`'s, of the types `serving_default` decodes (no TIFF), and
    classes are numbered by the sorted training class names (a split that lacks a class
    keeps the others' indices).
    """
    members = list(tree_members(Path(source), read=lambda s: s == split))
    found = sorted(
        (name, cls, data)
        for s, cls, name, data in members
        if s == split and Path(name).suffix.lower() in SERVED_SUFFIXES
    )
    if not found:
        raise FileNotFoundError(f"no {split}/<class>/<image> files in {source}")
    training = {cls for s, cls, _, _ in members if s == "train"}
    class_names = tuple(sorted(training or {cls for _, cls, _ in found}))
    unknown = {cls for _, cls, _ in found} - set(class_names)
    if unknown:
        raise ValueError(f"{split} classes {sorted(unknown)} in {source} have no training images")
    index = {c: i for i, c in enumerate(class_names)}
    return EncodedImages(
        [data or b"" for _, _, data in found],
        np.array([index[cls] for _, cls, _ in found], np.int32),
        class_names,
        [name for name, _, _ in found],
    )

"""Whole training state in one file, replaced atomically: `kill -9` never leaves half of one.

The state is a list of named variable groups (model weights, optimizer slots, EMA weights)
plus a JSON blob (epoch, step, history, LR-plateau counters, elapsed time).
"""

from __future__ import annotations

import errno
import json
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

CHECKPOINT_NAME = "checkpoint.npz"


class CheckpointError(Exception):
    """The checkpoint could not be written, or what is on disk is not one."""


def save(run_dir: Path, groups: Mapping[str, Sequence], state: dict) -> Path:
    arrays = {"state": np.array(json.dumps(state))}
    for group, variables in groups.items():
        for i, v in enumerate(variables):
            arrays[f"{group}/{i}"] = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
    path = run_dir / CHECKPOINT_NAME

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())

    write_beside(path, run_dir / f".{CHECKPOINT_NAME}.tmp", write, "the checkpoint")
    return path


def replace_whole(path: Path, partial: Path, write: Callable[[Path], None]) -> None:
    """`write(partial)`, then renamed over `path`: whatever stops it midway (a Ctrl-C, a full
    disk) keeps the previous file whole, and leaves no partial one to fill the disk more."""
    try:
        write(partial)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_beside(path: Path, partial: Path, write: Callable[[Path], None], what: str) -> None:
    """replace_whole, with a failed write told as a CheckpointError: what to do, and that the
    previous file is intact."""
    try:
        replace_whole(path, partial, write)
    except OSError as error:
        kept = "the previous one is intact" if path.exists() else "there is none yet"
        raise CheckpointError(
            f"could not write {what} {path} ({reason(error)}); {kept}: "
            f"{fix_for(error)} and re-run the same command to resume"
        ) from error


def reason(error: OSError) -> str:
    """A failed write's cause in a few words: h5py's OSErrors carry a paragraph of internals
    as their strerror, and the errno, from which the usual sentence is made."""
    return os.strerror(error.errno) if error.errno else (error.strerror or str(error))


def fix_for(error: OSError) -> str:
    """What to do about a failed write, in the error lines of every run output."""
    return "free some space" if error.errno == errno.ENOSPC else "fix that"


def load(
    run_dir: Path, groups: Mapping[str, Sequence], optional: Sequence[str] = ()
) -> tuple[dict, list[str]] | None:
    """Assign saved values into `groups`' variables; return the JSON state and the `optional`
    groups the file holds nothing of (a checkpoint written before they were saved: their
    variables stay as they are), or None when there is no checkpoint."""
    path = run_dir / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        return _load(path, groups, optional)
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"{path} is damaged ({type(error).__name__}: {error}); it cannot be resumed from: "
            "move it away to start this run again from the first step"
        ) from error


def _load(
    path: Path, groups: Mapping[str, Sequence], optional: Sequence[str]
) -> tuple[dict, list[str]]:
    missing = []
    with np.load(path) as z:
        for group, variables in groups.items():
            saved = sorted((k for k in z.files if k.startswith(f"{group}/")), key=_index)
            if not saved and variables and group in optional:
                missing.append(group)
                continue
            if len(saved) != len(variables):
                raise CheckpointError(
                    f"{path}: {group} has {len(saved)} tensors, the model has {len(variables)};"
                    " was it written by a different recipe? Use a new --run-dir."
                )
            for v, key in zip(variables, saved):
                value = z[key]  # each z[key] reads and decompresses the array again
                if tuple(value.shape) != tuple(v.shape):
                    raise CheckpointError(
                        f"{path}: {group} tensor {key} has shape {value.shape}, the model's "
                        f"{tuple(v.shape)}; it was written by another network (a changed "
                        "recipe or code?): use a new --run-dir"
                    )
                v.assign(value)
        return json.loads(str(z["state"])), missing


def _index(key: str) -> int:
    return int(key.rsplit("/", 1)[1])

"""Atomic versioned publishing into a TF Serving base path.

A version is written into ``<base>/.tmp-<pid>-<random>`` (TF Serving only loads children
whose name parses as an integer, so it ignores this one), every file and folder is fsync'ed,
and the folder is then renamed to its number: one ``rename(2)``, so a server polling the base
path sees either no version or a complete one. Pruning renames a version to a hidden name
first, for the same reason, and deletes it afterwards. A lock file serialises concurrent
publishers. Each holds a lock on its own hidden folder while it works there, so the next
publisher can tell what an interrupted one left (kill -9, a stopped container) and delete it.

The next number is above every number already used in the base path, so that a number never
names two different models in clients' pins, logs and metrics: version folders, any other
entry with an integer name (a stray file would make the rename fail), versions rolled back by
renaming them to ``.rollback-<N>`` (docs/DEPLOY.md), and the highest number this module ever
published there, kept in ``.last-version`` (rolled-back folders get deleted in the end).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from modelserver.version_names import parse_version, version_dirs
from training.run_folder import is_finished, is_run_folder, write_whole

LOCK_NAME = ".publish.lock"
KEEP_AT_LEAST_ONE = "--keep must be at least 1: a base path without versions serves nothing"
ROLLBACK_PREFIX = ".rollback-"  # DEPLOY.md's rollback: mv -T 5 .rollback-5
ROLLED_BACK = re.compile(re.escape(ROLLBACK_PREFIX) + r"([0-9]+)")
LAST_VERSION = ".last-version"
# The hidden folders publish() and prune() work in (DEPLOY.md's hand-made ".tmp-6" is not one).
WORK_FOLDER = re.compile(r"\.tmp-[0-9]+-\w+|\.deleting-[0-9]+-[0-9]+")

log = logging.getLogger(__name__)


class VersionExistsError(FileExistsError):
    """The requested version folder already exists: publishing never overwrites one."""


def versions(base_path: str | Path) -> list[int]:
    """The version numbers of a base path's folders, ascending."""
    return list(version_dirs(base_path))


def latest_version_dir(base_path: str | Path) -> Path:
    found = version_dirs(base_path)
    if not found:
        if is_run_folder(Path(base_path)):
            if not is_finished(Path(base_path)):
                raise FileNotFoundError(
                    f"{base_path} is a training run folder that has not finished (see its "
                    "train.log): no model to use yet"
                )
            raise FileNotFoundError(
                f"{base_path} is a training run folder, not a model: export it first "
                f"(python -m export --run-dir {base_path}), then name the base path it wrote"
            )
        if not Path(base_path).exists():
            raise FileNotFoundError(f"{base_path} not found")
        if not Path(base_path).is_dir():
            raise FileNotFoundError(
                f"{base_path} is a file; name a version folder or the base path that holds them"
            )
        raise FileNotFoundError(f"no numbered version folder in {base_path}")
    return found[max(found)]


def check_base_path(path: str | Path) -> None:
    """Refuse, in one line, a --base-path that cannot be a folder of versions: a file, a run
    folder, a version folder (the new version would nest inside the served one) or the folder
    above the base paths (it would start a model beside them). Checked before TensorFlow loads."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--base-path {path} is a file, not a folder of versions")
    if is_run_folder(path):
        raise ValueError(
            f"--base-path {path} is a training run folder; name the folder of model versions "
            "the server reads (models/cifar10)"
        )
    if (path / "saved_model.pb").is_file():
        raise ValueError(
            f"--base-path {path} is a version folder (it holds saved_model.pb); name the folder "
            f"that holds the versions ({path.parent})"
        )
    if not path.is_dir() or version_dirs(path):
        return
    holders = sorted(child.name for child in path.iterdir() if version_dirs(child))
    if holders:
        raise ValueError(
            f"--base-path {path} holds the version folders of {', '.join(holders)}; name one "
            f"of those ({path / holders[0]}), or a new folder for a new model"
        )


def saved_model_dir(path: str | Path) -> Path:
    """A version folder as given, or the newest numbered version under a base path: what the
    command-line tools accept wherever they take a model."""
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    latest = latest_version_dir(path)
    if not (latest / "saved_model.pb").is_file():
        what = "a training run folder" if is_run_folder(latest) else "not an exported model"
        raise FileNotFoundError(
            f"the newest version folder in {path}, {latest.name}, holds no saved_model.pb "
            f"({what}); move it out of the base path, or name a version folder"
        )
    return latest


def publish(
    write: Callable[[Path], object],
    base_path: str | Path,
    version: int | None = None,
    keep: int | None = None,
) -> Path:
    """Run `write(tmp_dir)`, then move tmp_dir into place as `version` (default: next integer).

    Returns the new version folder. Raises VersionExistsError rather than replace a version.
    """
    if keep is not None and keep < 1:
        raise ValueError(KEEP_AT_LEAST_ONE)  # before anything is written, not after the rename
    base = Path(base_path)
    base.mkdir(parents=True, exist_ok=True)
    if version is not None:
        _refuse_existing(base, version)  # fail before the (slow) write, and again under the lock
    with contextlib.ExitStack() as claim:
        with _locked(base):  # made and claimed under the lock: no sweep sees it unclaimed
            _sweep_leftovers(base)
            tmp = base / f".tmp-{os.getpid()}-{secrets.token_hex(4)}"
            tmp.mkdir()  # not mkdtemp: its 0700 would keep a server of another user out
            claim.enter_context(_claimed(tmp))
        try:
            write(tmp)
            _fsync_tree(tmp)
            with _locked(base):
                target = version if version is not None else max(used_numbers(base), default=0) + 1
                _refuse_existing(base, target)
                final = _version_dir(base, target)
                os.rename(tmp, final)
                _record_published(base, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if keep is not None:
        try:
            prune(base, keep)
        except OSError as err:
            log.warning("published %s, but --keep %d could not remove older versions: %s",
                        final, keep, err)  # fmt: skip
    return final


def _record_published(base: Path, target: int) -> None:
    """Once renamed, the version is live and a server may load it: a failure after that (a
    full disk) is a warning. Raised, it told the user the export failed, and exporting again
    published the same weights a second time as the next version."""
    try:
        if target > _last_published(base):
            write_whole(base / LAST_VERSION, f"{target}\n")  # never emptied by a full disk
        _fsync_dir(base)
    except OSError as err:
        log.warning("published %s, but could not record it in %s (%s): a version deleted "
                    "later may have its number used again", _version_dir(base, target),
                    base / LAST_VERSION, err)  # fmt: skip


def publish_copy(source: str | Path, base_path: str | Path, version: int | None = None) -> Path:
    """Publish a copy of a SavedModel folder (another version's, a test model) as `version`,
    as export publishes: written beside the versions, then renamed into place."""
    return publish(lambda tmp: shutil.copytree(source, tmp, dirs_exist_ok=True), base_path, version)


def prune(base_path: str | Path, keep: int) -> list[int]:
    """Remove all but the `keep` highest versions; returns the removed version numbers."""
    if keep < 1:
        raise ValueError(KEEP_AT_LEAST_ONE)
    base = Path(base_path)
    with contextlib.ExitStack() as claims:
        with _locked(base):
            folders = version_dirs(base)
            doomed = list(folders)[:-keep]
            hidden = []
            for v in doomed:
                claims.enter_context(_claimed(folders[v]))  # the lock follows it when renamed
                gone = base / f".deleting-{v}-{os.getpid()}"
                os.rename(folders[v], gone)
                hidden.append(gone)
            _fsync_dir(base)
        for folder in hidden:  # still claimed: a sweep leaves them to us
            shutil.rmtree(folder)
    return doomed


def _sweep_leftovers(base: Path) -> None:
    """Delete the work folders no live publisher claims: what a publish or prune killed
    midway left behind (megabytes each, and never loaded). Called under the base path's lock."""
    for entry in sorted(base.iterdir()):
        if not WORK_FOLDER.fullmatch(entry.name) or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # claimed by a live publisher (or no locks on this file system)
            continue
        else:
            shutil.rmtree(entry, ignore_errors=True)
            if entry.exists():  # another user's, say: say so, and leave it
                log.warning("could not remove %s, left in %s by an interrupted publish",
                            entry.name, base)  # fmt: skip
            else:
                log.warning("removed %s, left in %s by an interrupted publish", entry.name, base)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _claimed(folder: Path) -> Iterator[None]:
    """Holds a lock on `folder` itself (it follows the folder through a rename) while this
    process works in it: the mark that tells a live publisher's folder from a leftover."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # Where a folder cannot be locked (some NFS mounts), the sweep cannot lock one either,
        # so it removes nothing there: unclaimed work is then safe too.
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def used_numbers(base: Path) -> set[int]:
    """Every version number the base path has used: what the next version must be above."""
    return _entry_numbers(base) | set(rolled_back_dirs(base)) | ({_last_published(base)} - {0})


def rollback_dir(version_dir: Path) -> Path:
    """Where DEPLOY.md's rollback moves a version folder: beside it, out of the server's sight."""
    return version_dir.parent / f"{ROLLBACK_PREFIX}{version_dir.name}"


def rolled_back_dirs(base_path: str | Path) -> dict[int, Path]:
    """Version folders taken away by DEPLOY.md's rollback (``.rollback-<N>``), by number."""
    base = Path(base_path)
    if not base.is_dir():
        return {}
    found = {}
    for entry in base.iterdir():
        match = ROLLED_BACK.fullmatch(entry.name)
        if match and entry.is_dir():
            found[int(match.group(1))] = entry
    return found


def _last_published(base: Path) -> int:
    try:
        text = (base / LAST_VERSION).read_text().strip()
    except FileNotFoundError:
        return 0
    return max(parse_version(text) or 0, 0)


def _entry_numbers(base: Path) -> set[int]:
    """The version numbers of every entry, folder or not ("7" and "+7" alike)."""
    return {parse_version(entry.name) for entry in base.iterdir()} - {None}


def _version_dir(base: Path, version: int) -> Path:
    return base / str(version)


def _refuse_existing(base: Path, version: int) -> None:
    if version < 0:
        raise ValueError(f"version must be a non-negative integer, got {version}")
    if version in _entry_numbers(base):  # a folder, a file or a link that TF Serving would see
        raise VersionExistsError(f"version {version} already exists in {base}; not overwriting it")
    if (rolled := rolled_back_dirs(base).get(version)) is not None:
        raise VersionExistsError(
            f"version {version} was rolled back ({rolled}); a new model "
            "under its number would be confused with it: pick another number"
        )


@contextlib.contextmanager
def _locked(base: Path) -> Iterator[None]:
    with open(base / LOCK_NAME, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fsync_tree(root: Path) -> None:
    """Flush every file, then every folder (children before parents), to disk."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

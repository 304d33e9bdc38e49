"""The run folder's bookkeeping: its files, making and claiming it, and its train.log. The
options a run started with, which a re-run must repeat, are training.run_options."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from modelserver.version_names import parse_version
from training.checkpoint import reason, replace_whole

# The files of a run folder, with who writes them (the checkpoint's is CHECKPOINT_NAME).
TRAIN_LOG = "train.log"  # every line the run printed, across its sittings (run_logger)
TF_LOG = "tensorflow.log"  # TensorFlow's own start-up lines (runtime.tf_startup)
RUN_OPTIONS = "run.json"  # the options a run was started with (training.run_options)
BEST_WEIGHTS = "best.weights.h5"  # the vgg recipe's best validation weights (training.trainer)
FINAL_WEIGHTS = "final.weights.h5"  # the weights export serves (training.run_outputs)
MODEL_FILE = "model.keras"  # the whole Keras model, for Keras users (training.run_outputs)
HISTORY = "history.json"  # per-epoch figures (training.run_outputs)
CURVES = "curves.png"  # the training curves (training.run_outputs)
EVALUATION = "evaluation.json"  # python -m training.evaluate's report
CONFUSION = "confusion.png"  # its confusion matrix
BENCH_CEILINGS = "bench-ceilings.json"  # bench.train's ceiling timings, before the run starts
# How a refusal of a run folder ends: the way out, for the CLI and for make alike.
NEW_RUN_DIR = (
    "pick a new --run-dir (make: RUN=runs/<name>; the trainer image: -e RUN_DIR=/runs/<name>)"
)
# What a finished run records: written last, whole or not at all (training.run_outputs), so with
# FINAL_WEIGHTS beside it, it marks the run finished.
META = "meta.json"


def run_logger(run_dir: Path) -> Callable[[str], None]:
    """A log function: each line to the terminal and appended to the run's train.log. A line
    train.log cannot take (a full disk) still reaches the terminal, with one warning: the
    training goes on, and the checkpoint's own write says what to do if the disk stays full."""
    warned = False

    def log(msg: str) -> None:
        nonlocal warned
        try:
            append_to_log(run_dir, msg)  # first: the file outlives a closed terminal
        except OSError as error:
            if not warned:
                show(f"warning: cannot write {run_dir / TRAIN_LOG} ({reason(error)}); "
                     "its lines go to the terminal only until it can")  # fmt: skip
            warned = True
        else:
            warned = False
        show(f"\r\x1b[K{msg}" if sys.stdout.isatty() else msg)  # over a progress line

    return log


def append_to_log(run_dir: Path, msg: str) -> None:
    """A line in train.log only: for what the terminal is told otherwise (an error message).
    Dated, local time: a run's sittings can be days apart, and the log is all that says when."""
    with (run_dir / TRAIN_LOG).open("a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {msg}\n")


def show(text: str, end: str = "\n") -> None:
    """Print, unless the terminal is gone: after a hang-up, writing to it fails (EIO), and
    the training must still save its checkpoint and say so in train.log."""
    # RuntimeError: a signal handler's line that came in the middle of another print.
    with contextlib.suppress(OSError, RuntimeError):
        print(text, end=end, flush=True)


def is_finished(run_dir: Path) -> bool:
    """Whether the folder holds a finished run: a re-run then trains nothing again."""
    return (run_dir / META).is_file() and (run_dir / FINAL_WEIGHTS).is_file()


def read_meta(run_dir: Path) -> dict:
    """A finished run's meta.json: what it trained, how long, and its test accuracies."""
    return json.loads((run_dir / META).read_text())


class RunFolderError(Exception):
    """A run folder that cannot be used as asked (in use, started with other options, not a
    folder): the message says what to do; the command-line tools print it without a traceback."""


class OutputError(Exception):
    """A finished run's outputs could not be written (a full disk, above all)."""


def write_whole(path: Path, text: str) -> None:
    """`text` as `path`, whole or not at all: written beside it, flushed to the disk, then
    renamed over it (a reader, a Ctrl-C, a full disk or a power cut midway never leaves a
    half-written file under that name)."""

    def write(partial: Path) -> None:
        with partial.open("w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    replace_whole(path, path.with_name(f".{path.name}.tmp"), write)


LOCK = ".lock"  # held by the training that writes the folder (claim_run_dir)
_claims: dict[Path, list] = {}  # folders this process holds: [open lock file, depth]


@contextlib.contextmanager
def claim_run_dir(run_dir: Path) -> Iterator[None]:
    """Holds the folder for this process while the block runs (an flock, which the kernel also
    drops when the process dies, kill -9 included): two trainings in one folder would write the
    same checkpoint file and interleave their logs. Re-entrant within a process, so that
    bench.train can claim a folder before it measures and then call train(), which claims it
    too."""
    key = run_dir.resolve()
    if key in _claims:
        _claims[key][1] += 1
    else:
        _claims[key] = [_lock(run_dir), 1]
    try:
        yield
    finally:
        _claims[key][1] -= 1
        if not _claims[key][1]:
            _claims.pop(key)[0].close()


def _lock(run_dir: Path) -> IO:
    try:
        handle = (run_dir / LOCK).open("a+")
    except OSError as error:  # a folder on a read-only mount, or of another user
        raise RunFolderError(
            f"{run_dir}: cannot write in it ({error.strerror}); name a --run-dir you can write"
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise RunFolderError(
            f"{run_dir} is in use by another training (pid {holder}); let it finish or stop "
            f"it (Ctrl-C saves a checkpoint) before resuming here, or {NEW_RUN_DIR}"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def is_run_folder(path: Path) -> bool:
    """A training run's folder (it records its options, its results or its log: a run
    stopped in its first seconds has only the log), which a model base path must not be
    mistaken for, nor the other way round."""
    return any((path / name).is_file() for name in (RUN_OPTIONS, META, TRAIN_LOG))


def make_run_dir(path: str) -> Path:
    """The run folder, made if need be; a sentence, not a traceback, when it cannot be."""
    run_dir = Path(path)
    if run_dir.is_dir() and any(run_dir.glob("*/saved_model.pb")):
        raise RunFolderError(
            f"--run-dir {path} holds exported model versions (a model base path, which `export` "
            "writes); name a training run folder, e.g. runs/<name>"
        )
    if run_dir.is_dir() and (bases := sorted(run_dir.glob("*/*/saved_model.pb"))):
        raise RunFolderError(  # `models`, whose cifar10/ holds the shipped versions
            f"--run-dir {path} holds the model base path {bases[0].parent.parent}; name a "
            "training run folder, e.g. runs/<name>"
        )
    parent = run_dir.absolute().parent
    if parse_version(run_dir.name) is not None and any(parent.glob("*/saved_model.pb")):
        # A numbered folder beside exported versions: the model server would take it for a
        # broken version, and the tools that pick a base path's newest version would pick it.
        raise RunFolderError(
            f"--run-dir {path} is inside the model base path {parent}, beside its exported "
            "versions; name a folder outside it, e.g. runs/<name>"
        )
    if run_dir.is_dir() and not is_run_folder(run_dir):
        _refuse_foreign_files(run_dir, path)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RunFolderError(f"--run-dir {path}: a file is in the way; name a folder") from None
    except OSError as error:  # no permission, a read-only mount, a full disk
        raise RunFolderError(
            f"--run-dir {path}: cannot create it ({error.strerror}); name a --run-dir you can write"
        ) from None
    return run_dir


def _refuse_foreign_files(run_dir: Path, path: str) -> None:
    """A folder of other files (photos, a project) is no run folder: a run wrote its model
    files among them without a word. What a run writes before it records its options is its
    own (bench.train's ceilings: a bench run stopped while measuring resumes), and hidden
    files and a volume root's lost+found are no one's."""
    own = (TF_LOG, BENCH_CEILINGS, "lost+found")
    others = sorted(
        p.name for p in run_dir.iterdir() if not p.name.startswith(".") and p.name not in own
    )
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise RunFolderError(
            f"--run-dir {path} holds other files ({shown}) and is no training run folder; "
            "name a new or empty folder, e.g. runs/<name>"
        )

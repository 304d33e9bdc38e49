"""The run folder's bookkeeping: making it, pinning the options a run started with (so that
a re-run resumes the same run or is refused), and its train.log."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import IO

from modelserver.version_names import parse_version
from training.checkpoint import CHECKPOINT_NAME, fix_for, reason, replace_whole
from training.config import RECIPES, Recipe, RunOptions
from training.data import fingerprint

# The files of a run folder, with who writes them (the checkpoint's is CHECKPOINT_NAME).
TRAIN_LOG = "train.log"  # every line the run printed, across its sittings (run_logger)
TF_LOG = "tensorflow.log"  # TensorFlow's own start-up lines (runtime.tf_startup)
RUN_OPTIONS = "run.json"  # the options a run was started with (pin_run_options)
RECIPE_SETTINGS = "recipe_settings"  # run.json's copy of the recipe as the run began
DATA_FINGERPRINT = "data_fingerprint"  # run.json's: the data wherever it is (data.fingerprint)
DATA_PATH = "data_path"  # run.json's: --data as an absolute path (a relative one names a cwd's)
BEST_WEIGHTS = "best.weights.h5"  # the vgg recipe's best validation weights (training.trainer)
FINAL_WEIGHTS = "final.weights.h5"  # the weights export serves (training.run_outputs)
MODEL_FILE = "model.keras"  # the whole Keras model, for Keras users (training.run_outputs)
HISTORY = "history.json"  # per-epoch figures (training.run_outputs)
CURVES = "curves.png"  # the training curves (training.run_outputs)
EVALUATION = "evaluation.json"  # python -m training.evaluate's report
CONFUSION = "confusion.png"  # its confusion matrix
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


def pin_run_options(run_dir: Path, opts: RunOptions) -> dict:
    """Once a run has trained (it has a checkpoint), a re-run must ask for the same options.

    Before that, nothing is lost by changing them: a first try with a wrong --data path is
    simply run again with the right one. Not compared: the precision and the filter-gradient
    form (`auto` resolves each once, when the run starts, and a resumed run keeps what it
    resolved to: training.run.machine_choices) and the folder's own name (a renamed run
    folder still resumes)."""
    wanted = {k: v for k, v in asdict(opts).items() if k != "checkpoint_every_s"}
    wanted[RECIPE_SETTINGS] = opts.resolve_recipe().to_dict()
    if (run_dir / RUN_OPTIONS).exists() and (run_dir / CHECKPOINT_NAME).exists():
        try:
            before = read_run_options(run_dir)
        except RunFolderError as err:
            raise RunFolderError(
                f"{err}; its checkpoint is intact: write the options the run was started with "
                f"back into it (or delete it to resume with the options given now, unchecked), "
                f"or {NEW_RUN_DIR}"
            ) from None
        # An option not given is the recipe's: as the run recorded it, which a resumed run
        # keeps (recipe_as_started), else as the code has it.
        recipe = before.get(RECIPE_SETTINGS) or _code_recipe(opts.recipe)
        diff = {
            k: (before.get(k), v)
            for k, v in wanted.items()
            if k not in ("precision", "filter_grad", "run_dir", RECIPE_SETTINGS)
            and (
                _data_changed(before, v)
                if k == "data"
                else _as_run(k, before.get(k), recipe) != _as_run(k, v, recipe)
            )
        }
        if diff:
            changes = "; ".join(_change(k, before, now, recipe) for k, (_, now) in diff.items())
            if is_finished(run_dir):
                raise RunFolderError(
                    f"{run_dir} holds a finished run made with other options ({changes}); "
                    f"{NEW_RUN_DIR} to train with these"
                )
            raise RunFolderError(
                f"{run_dir} was started with other options ({changes}); re-run with the options "
                f"it started with to resume (its run.json lists them), or {NEW_RUN_DIR}"
            )
        return {**before, "run_dir": opts.run_dir, "data": opts.data}  # the data where it is now
    return wanted


def options_as_started(opts: RunOptions, pinned: dict) -> RunOptions:
    """A re-run's options with the epochs and batch size its run started with where it left
    them out (pin_run_options took it as the same run): the recipe it goes on with and the
    command meta.json records are then the run's, not the recipe's defaults."""
    given = {k: pinned.get(k) for k in ("epochs", "batch_size") if getattr(opts, k) is None}
    return replace(opts, **given)


def recipe_as_started(pinned: dict, opts: RunOptions) -> tuple[Recipe, str | None]:
    """The recipe's settings as the run started with them, and a line for its log when the
    code's recipe of that name differs now. A resumed run finishes as it began, even when the
    code's recipe has changed meanwhile (a tuned default): else its steps would mix two recipes
    and meta.json would record only the second. A setting the run did not record (older code)
    is the code's; a run that recorded none at all (older still) takes the code's recipe whole,
    and the log says it may differ."""
    current = opts.resolve_recipe()
    started = pinned.get(RECIPE_SETTINGS)
    if started is None:  # only a run.json from before recipes were recorded lacks them
        return current, (
            f"this run recorded no recipe settings when it started (older code): it goes on "
            f"with the code's recipe {opts.recipe} as it is now, which may differ"
        )
    coded = current.to_dict()
    unknown = sorted(set(started) - set(coded))
    if unknown:
        raise RunFolderError(
            f"{opts.run_dir} started with recipe settings this code no longer has "
            f"({', '.join(unknown)}); resume it with the code it started with, or {NEW_RUN_DIR}"
        )
    try:
        recipe = replace(current, **{k: _from_json(v) for k, v in started.items()})
    except ValueError as err:  # a choice the code no longer offers (Recipe.__post_init__)
        raise RunFolderError(
            f"{opts.run_dir} started with recipe settings this code refuses ({err}); resume it "
            f"with the code it started with, or {NEW_RUN_DIR}"
        ) from None
    changes = [
        f"{k} {getattr(recipe, k)!r} then, {v!r} now" if k in started
        else f"{k} not recorded then, {v!r} now"
        for k, v in coded.items()
        if k not in started or getattr(recipe, k) != v
    ]  # fmt: skip
    if not changes:
        return recipe, None
    return recipe, (
        f"recipe {opts.recipe} as this run started it; the code's has changed since: "
        + "; ".join(changes)
    )


def _from_json(value):
    """JSON wrote the recipe's tuples (the widths) as lists."""
    return tuple(value) if isinstance(value, list) else value


def _data_changed(before: dict, data: str | None) -> bool:
    """Whether --data names other data than the run started on. Where the run recorded the
    data's fingerprint, the contents decide wherever the path points: the data moved (or
    mounted elsewhere) resumes the run; a file replaced in place, or a relative path typed
    from another folder, would mix two data sets in one run and is refused. Without one (keras,
    older runs), the paths decide, as the run resolved its own."""
    recorded, found = before.get(DATA_FINGERPRINT), _data_fingerprint(data)
    if recorded is not None and found is not None:
        return found != recorded
    return _data_path_then(before) != _data_path(data)


def _data_path_then(before: dict) -> str | None:
    """The run's --data as it resolved it (older runs recorded only what was typed)."""
    return before.get(DATA_PATH) or _data_path(before.get("data"))


def _change(key: str, before: dict, now, recipe: dict) -> str:
    """One refused option, for the message: both values, or for data at the same path, why."""
    if key == "data":
        return _data_change(before, now)
    then, flag = before.get(key), key.replace("_", "-")
    return f"--{flag} {_shown(key, then, recipe)} then, {_shown(key, now, recipe)} now"


def _data_change(before: dict, now: str | None) -> str:
    """Other data: at another path (shown resolved, where typed relative), or other files at
    the same one; only a folder's fingerprint reads dates, so only there may a copy be the same
    images."""
    then_path, now_path = _data_path_then(before), _data_path(now)
    if then_path != now_path:
        return f"--data {then_path} then, {now_path} now"
    same_images = (
        f" (if they are the same images, copied without their dates, delete {DATA_FINGERPRINT} "
        f"from {RUN_OPTIONS} to resume)"
        if now_path and Path(now_path).is_dir()
        else ""
    )
    return f"--data {now_path} holds other files than when the run started{same_images}"


def _data_fingerprint(data: str | None) -> str | None:
    """data.fingerprint of a --data that names a path here; None for keras or a missing path."""
    path = Path(data).expanduser() if data not in (None, "keras") else None
    return fingerprint(path) if path is not None and path.exists() else None


def _code_recipe(name: str) -> dict:
    """The code's recipe of that name, as run.json records one ({} for an unknown name)."""
    return RECIPES[name].to_dict() if name in RECIPES else {}


def _shown(key: str, value, recipe: dict) -> str:
    """An option's value for a message; one not given is the recipe's, where it has one."""
    if value is None:
        as_run = _as_run(key, value, recipe)
        return "not given" if as_run is None else f"{as_run} (the recipe's)"
    return str(value)


def _as_run(key: str, value, recipe: dict):
    """An option as the run uses it: the recipe's own epochs or batch size when not given.
    (--data is compared by its resolved path and fingerprint elsewhere: _data_change.)"""
    if key in ("epochs", "batch_size") and value is None:
        return recipe.get(key)
    return value


def _data_path(data: str | None) -> str | None:
    """--data as the run uses it: the file or folder itself however its path is spelled."""
    return str(Path(data).expanduser().resolve()) if data not in (None, "keras") else data


def record_run_options(
    run_dir: Path, pinned: dict, precision: str, filter_grad: str = "kernel"
) -> None:
    """What pin_run_options compares a re-run against, written once the data has loaded; with
    the data's fingerprint, so that the data moved elsewhere still resumes the run, and the
    precision and filter-gradient form `auto` resolved to, which a resumed run keeps."""
    record = {**pinned, "resolved_precision": precision, "resolved_filter_grad": filter_grad}
    record.pop(DATA_PATH, None)
    if path := _data_path(record.get("data")):
        record[DATA_PATH] = path
    if found := _data_fingerprint(record.get("data")):
        record[DATA_FINGERPRINT] = found
    try:
        write_whole(run_dir / RUN_OPTIONS, json.dumps(record, indent=2))
    except OSError as error:
        raise RunFolderError(
            f"could not write {run_dir / RUN_OPTIONS} ({reason(error)}); "
            f"{fix_for(error)} and re-run the same command"
        ) from error


def setting_as_started(
    pinned: dict, key: str, flag: str, requested: str, before_it: str | None = None
) -> tuple[str, str]:
    """(value, why) of a setting a resumed run keeps from its start (`key` in run.json);
    `before_it`: the value of runs recorded before the setting was."""
    if key not in pinned:
        value, why = before_it, "as every run before it was recorded"
    else:
        value, why = pinned[key], "fixed when this run started"
    if requested not in ("auto", value):
        why += f"; {flag} {requested} applies to a new run folder only"
    return value, why


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


def read_run_options(run_dir: Path) -> dict:
    """The options a run was started with; {} for a folder that holds none."""
    path = run_dir / RUN_OPTIONS
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as err:  # cut short by older code's in-place write, or edited by hand
        raise RunFolderError(f"{path} cannot be read ({err})") from None


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
    files among them without a word."""
    others = sorted(p.name for p in run_dir.iterdir() if p.name not in (LOCK, TF_LOG))
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise RunFolderError(
            f"--run-dir {path} holds other files ({shown}) and is no training run folder; "
            "name a new or empty folder, e.g. runs/<name>"
        )

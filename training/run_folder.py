"""The run folder's bookkeeping: making it, pinning the options a run started with (so that
a re-run resumes the same run or is refused), and its train.log."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from training.checkpoint import CHECKPOINT_NAME
from training.config import RECIPES, RunOptions


def run_logger(run_dir: Path) -> Callable[[str], None]:
    """A log function: each line to the terminal and appended to the run's train.log."""
    log_file = run_dir / "train.log"

    def log(msg: str) -> None:
        # On a terminal, over the trainer's progress line if one is showing (see _print_inline).
        print(f"\r\x1b[K{msg}" if sys.stdout.isatty() else msg, flush=True)
        with log_file.open("a") as f:
            f.write(msg + "\n")

    return log


RUN_OPTIONS = "run.json"  # the options a run was started with (pin_run_options)
FINAL_WEIGHTS = "final.weights.h5"  # the weights export serves (training.report)
# What a finished run records: written last, whole or not at all (training.report), so with
# FINAL_WEIGHTS beside it, it marks the run finished.
META = "meta.json"


def is_finished(run_dir: Path) -> bool:
    """Whether the folder holds a finished run: a re-run then trains nothing again."""
    return (run_dir / META).is_file() and (run_dir / FINAL_WEIGHTS).is_file()


def read_meta(run_dir: Path) -> dict:
    """A finished run's meta.json: what it trained, how long, and its test accuracies."""
    return json.loads((run_dir / META).read_text())


def pin_run_options(run_dir: Path, opts: RunOptions) -> dict:
    """Once a run has trained (it has a checkpoint), a re-run must ask for the same options.

    Before that, nothing is lost by changing them: a first try with a wrong --data path is
    simply run again with the right one. Not compared: the precision (`auto` resolves once,
    when the run starts) and the folder's own name (a renamed run folder still resumes)."""
    wanted = {k: v for k, v in asdict(opts).items() if k != "checkpoint_every_s"}
    if (run_dir / RUN_OPTIONS).exists() and (run_dir / CHECKPOINT_NAME).exists():
        before = read_run_options(run_dir)
        diff = {
            k: (before.get(k), v)
            for k, v in wanted.items()
            if k not in ("precision", "run_dir")
            and _as_run(k, before.get(k), opts.recipe) != _as_run(k, v, opts.recipe)
        }
        if diff:
            raise SystemExit(
                f"{run_dir} was started with other options {diff} (saved, asked); "
                "re-run with the same options to resume, or pick a new --run-dir"
            )
        return {**before, "run_dir": opts.run_dir}
    return wanted


def _as_run(key: str, value, recipe: str):
    """An option as the run uses it: the recipe's own epochs or batch size when not given, and
    the data file itself however its path is spelled."""
    if key in ("epochs", "batch_size") and value is None and recipe in RECIPES:
        return getattr(RECIPES[recipe], key)
    if key == "data" and value not in (None, "keras"):
        return str(Path(value).expanduser().resolve())
    return value


def record_run_options(run_dir: Path, pinned: dict, precision: str) -> None:
    """What pin_run_options compares a re-run against, written once the data has loaded."""
    record = {**pinned, "resolved_precision": precision}
    (run_dir / RUN_OPTIONS).write_text(json.dumps(record, indent=2))


def read_run_options(run_dir: Path) -> dict:
    """The options a run was started with; {} for a folder that holds none."""
    path = run_dir / RUN_OPTIONS
    return json.loads(path.read_text()) if path.is_file() else {}


def make_run_dir(path: str) -> Path:
    """The run folder, made if need be; a sentence, not a traceback, when it cannot be."""
    run_dir = Path(path)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SystemExit(f"--run-dir {path}: a file is in the way; name a folder") from None
    except PermissionError:
        raise SystemExit(f"--run-dir {path}: no permission to create it here") from None
    return run_dir

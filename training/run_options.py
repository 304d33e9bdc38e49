"""The options a run started with (run.json), and what a re-run may change: a re-run resumes
the same run or is refused, and a resumed run finishes with the recipe and settings it began
with, even when the code's defaults have changed meanwhile."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from training.checkpoint import CHECKPOINT_NAME, fix_for, reason
from training.config import RECIPES, Recipe, RunOptions
from training.data import fingerprint
from training.run_folder import (
    NEW_RUN_DIR,
    RUN_OPTIONS,
    RunFolderError,
    is_finished,
    write_whole,
)

RECIPE_SETTINGS = "recipe_settings"  # run.json's copy of the recipe as the run began
DATA_FINGERPRINT = "data_fingerprint"  # run.json's: the data wherever it is (data.fingerprint)
DATA_PATH = "data_path"  # run.json's: --data as an absolute path (a relative one names a cwd's)


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


def read_run_options(run_dir: Path) -> dict:
    """The options a run was started with; {} for a folder that holds none."""
    path = run_dir / RUN_OPTIONS
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as err:  # cut short by older code's in-place write, or edited by hand
        raise RunFolderError(f"{path} cannot be read ({err})") from None

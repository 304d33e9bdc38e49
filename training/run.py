"""One training run, from its options to a finished run folder: `python -m training.train`
(training/train.py, the command line) and bench.train both run it.

The folder is claimed (one training at a time), its options pinned for a resume, precision and
filter gradients resolved once, the data loaded, the steps run by training.trainer (which
checkpoints and stops cleanly on a signal) and the outputs written by training.run_outputs.
The errors a person fixes come out as one line (`user_errors`), in train.log too.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

from runtime.cpu import cpu_info, describe_cpu
from runtime.tf_startup import import_tensorflow
from training.checkpoint import CheckpointError
from training.config import RunOptions
from training.data import DataError, Dataset, check_source, load_dataset
from training.hardware import choose_filter_grad, choose_precision
from training.run_folder import (
    NEW_RUN_DIR,
    TF_LOG,
    OutputError,
    RunFolderError,
    append_to_log,
    claim_run_dir,
    is_finished,
    make_run_dir,
    run_logger,
)
from training.run_options import (
    options_as_started,
    pin_run_options,
    recipe_as_started,
    record_run_options,
    setting_as_started,
)


def command_line(opts: RunOptions, precision: str, filter_grad: str) -> str:
    """The `training.train` command that repeats this run, whichever program started it
    (`make train`, bench.train), with the precision and filter gradients it resolved to."""
    args = ["--data", opts.data, "--run-dir", opts.run_dir, "--recipe", opts.recipe]
    args += ["--seed", str(opts.seed), "--precision", precision, "--filter-grad", filter_grad]
    for flag, value in (
        ("--epochs", opts.epochs),
        ("--batch-size", opts.batch_size),
        ("--train-subset", opts.train_subset),
        ("--test-subset", opts.test_subset),
    ):
        if value is not None:
            args += [flag, str(value)]
    return "python -m training.train " + shlex.join(args)


# Ctrl-C outside the training steps (which save a checkpoint and stop by themselves): before the
# first step nothing was trained; after the last, the checkpoint holds all of it.
NOTHING_LOST = "Nothing is lost: re-run the same command to go on."


def train(opts: RunOptions) -> Path:
    if opts.data != "keras" and not is_finished(Path(opts.run_dir)):
        check_source(opts.data)  # before seconds of start-up, and a run folder made for nothing
    run_dir = make_run_dir(opts.run_dir)
    with claim_run_dir(run_dir):
        try:
            return _train(opts, run_dir)
        except USER_ERRORS as err:  # user_errors says
            with contextlib.suppress(OSError):  # the disk may be the very thing that is full
                append_to_log(run_dir, f"stopped: {error_line(err)}")
            raise
        except KeyboardInterrupt:  # outside the steps (start-up, the final outputs): main says
            with contextlib.suppress(OSError):
                append_to_log(run_dir, f"interrupted: {NOTHING_LOST}")
            raise


def machine_choices(
    pinned: dict, opts: RunOptions, arch: str
) -> tuple[tuple[str, str], tuple[str, str]]:
    """((precision, why), (filter gradients, why)): `auto` resolves each once, when a run
    starts, and a resumed run keeps both, so that a run is one arithmetic from start to end
    (a run from before --filter-grad trained with TensorFlow's kernel)."""
    if pinned.get("resolved_precision"):
        return (
            setting_as_started(pinned, "resolved_precision", "--precision", opts.precision),
            setting_as_started(
                pinned, "resolved_filter_grad", "--filter-grad", opts.filter_grad, "kernel"
            ),
        )
    precision, why = choose_precision(opts.precision)
    return (precision, why), choose_filter_grad(opts.filter_grad, precision, arch)


def _train(opts: RunOptions, run_dir: Path) -> Path:
    log = run_logger(run_dir)
    pinned = pin_run_options(run_dir, opts)
    opts = options_as_started(opts, pinned)
    if is_finished(run_dir):
        log(f"{run_dir} already holds a finished run; {NEW_RUN_DIR} to train again")
        return run_dir
    started = time.time()
    recipe, changed = recipe_as_started(pinned, opts)
    if changed:
        log(changed)

    import_tensorflow(run_dir / TF_LOG)  # after argument errors had their chance
    import keras

    (precision, why), (filter_grad, grad_why) = machine_choices(pinned, opts, recipe.arch)
    log(f"precision {precision} ({why})")
    log(f"filter gradients of the wide convs: {filter_grad} ({grad_why})")
    keras.mixed_precision.set_global_policy(precision)

    ds = _load_data(opts, log)
    record_run_options(run_dir, pinned, precision, filter_grad)

    from training.flops import forward_flops
    from training.run_outputs import write_run_outputs
    from training.trainer import Interrupted, Trainer

    trainer = Trainer(recipe, ds, run_dir, opts.seed, log=log, filter_grad=filter_grad)
    flops = forward_flops(trainer.model)
    _log_plan(log, opts, trainer, len(ds.train.labels), flops, precision)
    if trainer.resume():
        log(f"resumed from checkpoint at {trainer.position()}")
    try:
        progress = trainer.fit(opts.checkpoint_every_s)
    except Interrupted as stop:
        log(
            f"interrupted: checkpoint saved at {trainer.position()}. "
            "Re-run the same command to resume."
        )
        raise SystemExit(128 + stop.signum) from None  # the shell's code for that signal
    write_run_outputs(
        trainer,
        ds,
        run_dir,
        extra={
            "command": command_line(opts, precision, filter_grad),
            "recipe_name": opts.recipe,
            "recipe": recipe.to_dict(),
            "seed": opts.seed,
            "precision": precision,
            "filter_grad": filter_grad,
            "cpu": cpu_info(),
            "forward_flops_per_image": flops,
            "train_seconds": progress.train_seconds,
            "images_seen": progress.images_seen,
            "images_per_second": progress.images_seen / max(progress.train_seconds, 1e-9),
            "last_invocation_wall_seconds": time.time() - started,
            "resumed_at_steps": progress.resumed_from,
            "total_steps": trainer.total_steps,
        },
        log=log,
    )
    return run_dir


def _load_data(opts: RunOptions, log) -> Dataset:
    """The run's data set, cut to its --train-subset and --test-subset pick, and train.log's
    line about it."""
    started = time.time()
    ds = load_dataset(opts.data, announce=log).subset(
        opts.train_subset, opts.test_subset, seed=opts.seed
    )
    log(
        f"data: {ds.source}: {len(ds.train.labels)} train / {len(ds.test.labels)} test images, "
        f"{len(ds.class_names)} classes, loaded in {time.time() - started:.1f} s"
    )
    if ds.skipped:
        log(f"  skipped {len(ds.skipped)} unreadable files, e.g. {ds.skipped[0]}")
    return ds


def _log_plan(log, opts: RunOptions, trainer, n_train: int, flops: int, precision: str) -> None:
    """What the run is about to do, in train.log's words: the network, the steps, the split."""
    recipe = trainer.recipe
    log(
        f"recipe {opts.recipe} (network {recipe.arch}): {trainer.model.count_params():,} params, "
        f"{flops / 1e6:.1f} MFLOP/image forward, {recipe.epochs} epochs = "
        f"{trainer.total_steps} steps of {trainer.batch_size} ({trainer.steps_per_epoch} "
        "per epoch), "
        f"precision {precision}, seed {opts.seed}"
    )
    if trainer.val is not None:
        log(
            f"  {len(trainer.val.labels)} of the {n_train} training images are held "
            f"out for validation (recipe {opts.recipe}), {len(trainer.train.labels)} train"
        )
    if trainer.batch_size < recipe.batch_size:
        log(f"  the batch is cut to the {trainer.batch_size} training images there are")
    left_out = len(trainer.train.labels) - trainer.steps_per_epoch * trainer.batch_size
    if left_out:
        log(
            f"  each epoch leaves out {left_out} of {len(trainer.train.labels)} images "
            "(the last partial batch), a different set each epoch"
        )
    log(f"cpu: {describe_cpu()}")


# The errors a person fixes; every other one is a defect and keeps its traceback.
USER_ERRORS = (DataError, CheckpointError, OutputError, RunFolderError)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """The errors a person fixes (bad data, a full disk, a busy or mismatched run folder), as
    one line and an exit code instead of a traceback: for every command that trains."""
    try:
        yield
    except USER_ERRORS as err:
        raise SystemExit(error_line(err)) from None


def error_line(err: Exception) -> str:
    """How a person-fixable error is told, on the terminal and in train.log alike."""
    if isinstance(err, DataError):
        return f"data error: {err}"
    if isinstance(err, CheckpointError):
        return f"checkpoint error: {err}"
    if isinstance(err, OutputError):
        return f"output error: {err}"
    return str(err)

"""Train a CIFAR-10 classifier: `python -m training.train --data ... --run-dir runs/x`.

Re-running the same command resumes from the run folder's checkpoint (also after kill -9);
Ctrl-C, SIGTERM or a closed terminal (SIGHUP) saves a checkpoint first. One training at a time
writes a run folder. A finished run folder holds the final model, history, curves, the
normalisation statistics and a log of how it was made (train.log; TensorFlow's own start-up
lines are in tensorflow.log).

This module is the command line only; the run itself is training/run.py.
"""

from __future__ import annotations

import argparse
import sys

from runtime.cli_args import ArgumentParser, non_empty, positive
from runtime.interrupts import Terminated, sigterm_as_ctrl_c
from training.config import DEFAULT_RUN_DIR, RECIPE_HELP, RECIPES, RunOptions, default_data
from training.hardware import FILTER_GRADS, PRECISIONS
from training.run import NOTHING_LOST, train, user_errors


def add_recipe_arguments(ap: argparse.ArgumentParser) -> None:
    """The flags that pick what is trained; bench.train takes the same ones, checked the same."""
    ap.add_argument(
        "--data",
        type=non_empty(),
        default=default_data(),
        help="image-folder tree or .tar(.gz) of one, the CIFAR-10 python archive, or 'keras' "
        "(default: %(default)s)",
    )
    ap.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default="fast",
        help="; ".join(f"{name}: {RECIPE_HELP[name]}" for name in RECIPES),
    )
    ap.add_argument(
        "--epochs", type=positive(float), help="override the recipe's epochs (fractions allowed)"
    )
    ap.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto (default): mixed_bfloat16 with AMX, else float32 or bfloat16, whichever a "
        "short conv timing here finds faster",
    )
    ap.add_argument(
        "--filter-grad",
        default="auto",
        choices=FILTER_GRADS,
        help="how the wide convs' filter gradients are computed: auto (default): as nine "
        "matmuls in bfloat16 on an AMX CPU (about a tenth faster there), else TensorFlow's "
        "kernel",
    )
    # below 2**31: the step's seed is a tf.int32 (trainer.py)
    ap.add_argument(
        "--seed",
        type=positive(int, zero=True, below=2**31),
        default=0,
        help="initial weights, data order and augmentation (default: %(default)s, the one shipped)",
    )


def parse_args(argv: list[str] | None = None) -> RunOptions:
    ap = ArgumentParser(prog="python -m training.train", description=__doc__)
    add_recipe_arguments(ap)
    ap.add_argument(
        "--run-dir",
        type=non_empty(),
        default=DEFAULT_RUN_DIR,
        help="output folder; re-use it to resume. Once it holds a checkpoint, other options "
        "are refused, except that --epochs or --batch-size left out mean the run's own "
        "(default: %(default)s)",
    )
    ap.add_argument("--batch-size", type=positive(int), help="override the recipe's batch size")
    ap.add_argument("--train-subset", type=positive(int), help="use only this many training images")
    ap.add_argument("--test-subset", type=positive(int), help="use only this many test images")
    ap.add_argument(
        "--checkpoint-every",
        type=positive(float),
        default=60.0,
        metavar="SECONDS",
        help="also save the whole state this often (and at every epoch end, and on Ctrl-C; "
        "default: %(default)s)",
    )
    a = ap.parse_args(argv)
    return RunOptions(
        data=a.data,
        run_dir=a.run_dir,
        recipe=a.recipe,
        epochs=a.epochs,
        batch_size=a.batch_size,
        precision=a.precision,
        filter_grad=a.filter_grad,
        seed=a.seed,
        train_subset=a.train_subset,
        test_subset=a.test_subset,
        checkpoint_every_s=a.checkpoint_every,
    )


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    try:
        with user_errors(), sigterm_as_ctrl_c():
            train(opts)
    except KeyboardInterrupt as stop:
        print(f"\ninterrupted. {NOTHING_LOST}", file=sys.stderr)
        raise SystemExit(stop.exit_code if isinstance(stop, Terminated) else 130) from None


if __name__ == "__main__":
    main()

"""`python -m export --run-dir runs/x --base-path models/cifar10`: publish a run as a version."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from export.config import DEFAULT_BASE_PATH, TTA_CHOICES
from export.publish import ROLLBACK_PREFIX, VersionExistsError, check_base_path, versions
from runtime.cli_args import ArgumentParser, non_empty, positive
from runtime.interrupts import stop_on_ctrl_c
from training.config import TTA_NAMES

if TYPE_CHECKING:  # export_run loads TensorFlow: only after the arguments parse
    from export.export_run import ExportResult


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = ArgumentParser(prog="python -m export", description=__doc__)
    ap.add_argument(
        "--run-dir", type=non_empty(), required=True, help="a finished training run folder"
    )
    ap.add_argument(
        "--base-path",
        type=non_empty(),
        default=str(DEFAULT_BASE_PATH),
        help="TF Serving base path (default: %(default)s, the shipped model's folder when run "
        "from the project root; a model server polling it serves the newest version)",
    )
    ap.add_argument(
        "--version",
        type=positive(int, zero=True, below=2**63),  # TF Serving's versions are int64
        help="version number (default: one above every number this base path has used, "
        "rolled-back ones included)",
    )
    ap.add_argument(
        "--keep", type=positive(int), help="after publishing, keep only the N newest versions"
    )
    ap.add_argument(
        "--tta",
        choices=TTA_CHOICES,
        default="auto",
        help="test-time augmentation baked into the graph: 0 none, 1 flip, 2 flip+translate; "
        "auto (default) = a costlier level only when its test accuracy in the run's meta.json "
        "beats the cheaper one by more than two standard errors (10,000 images at 90 %%: 0.6 "
        "points; more at a lower accuracy)",
    )
    ap.add_argument("--tflite", action="store_true", help="also write float32 and int8 .tflite")
    ap.add_argument(
        "--data",
        type=non_empty(),
        help="data for --tflite calibration/accuracy (default: the run's)",
    )
    ap.add_argument(
        "--skip-if-published",
        action="store_true",
        help="publish nothing when a version, served or rolled back, was exported from this "
        "run's final weights (for pipelines that re-run train-then-export: the trainer image)",
    )
    args = ap.parse_args(argv)
    if args.data and not args.tflite:  # it would be ignored without a word
        ap.error("--data is the data --tflite measures with; add --tflite, or leave --data out")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(args.run_dir).is_dir():  # before TensorFlow loads: a typo answers at once
        what = "is a file" if Path(args.run_dir).exists() else "was not found"
        print(f"export: --run-dir {args.run_dir} {what}; name a training run folder (make: "
              "RUN=runs/<name>)", file=sys.stderr)  # fmt: skip
        return 1
    try:
        check_base_path(args.base_path)
    except ValueError as err:
        print(f"export: {err}", file=sys.stderr)
        return 1
    # publish() renames a finished folder into place: a version is whole or absent.
    where = f"a version is published whole or not at all: see {args.base_path}"
    with stop_on_ctrl_c("export", where):
        return _export(args)


def _export(args: argparse.Namespace) -> int:
    from runtime.tf_startup import import_tensorflow

    import_tensorflow()  # only after the arguments parse
    import tensorflow as tf

    from export.export_run import export_run
    from training.data import DataError

    try:
        result = export_run(
            args.run_dir,
            args.base_path,
            version=args.version,
            keep=args.keep,
            tta=args.tta,
            tflite=args.tflite,
            data=args.data,
            skip_if_published=args.skip_if_published,
        )
    except (VersionExistsError, DataError, OSError, ValueError) as err:
        print(f"export: {err}", file=sys.stderr)
        return 1
    except tf.errors.OpError as err:  # TensorFlow's own writes: a full disk, above all
        print(f"export: {err.message}", file=sys.stderr)
        return 1
    return _report(result, args)


def _report(result: ExportResult, args: argparse.Namespace) -> int:
    """What the export did, and every note or warning a user should act on; the exit code."""
    from export.export_run import accuracy_drop_warning

    if not result.published:
        ignored = [f for f, given in (("--version", args.version is not None),
                                      ("--keep", args.keep is not None),
                                      ("--tta", args.tta != "auto"),
                                      ("--tflite", args.tflite)) if given]  # fmt: skip
        if ignored:
            print(f"note: nothing published, so {', '.join(ignored)} did nothing", file=sys.stderr)
        where = result.version_dir
        if where.name.startswith(ROLLBACK_PREFIX):
            print(f"these weights were published and rolled back ({where}); nothing published")
        else:
            print(f"{where} was already exported from these weights; nothing published")
        return 0
    tta = f"TTA {result.tta} = {TTA_NAMES[result.tta]}, in the graph"
    print(f"wrote {result.version_dir} (signatures serving_default, pixels; {tta})")
    print(f"  TTA: {result.tta_reason}")
    if result.copy_of:
        print(
            f"note: {result.copy_of} was already exported from these weights; this version is "
            "a copy (--skip-if-published publishes nothing in that case)",
            file=sys.stderr,
        )
    if result.created_base:
        print(
            f"note: {result.version_dir.parent.resolve()} did not exist and was created; a "
            "model server serves this version only if its base path is that folder",
            file=sys.stderr,
        )
    if not result.version_dir.exists():
        print(
            f"warning: --keep {args.keep} removed {result.version_dir} again: it is not among "
            f"the {args.keep} newest versions",
            file=sys.stderr,
        )
        return 1
    newest = max(versions(result.version_dir.parent))
    if int(result.version_dir.name) < newest:
        print(
            f"note: version {newest} is newer; a model server under the default latest policy "
            f"keeps serving it (pin version {result.version_dir.name} in models.config to serve "
            "this one)",
            file=sys.stderr,
        )
    warning = accuracy_drop_warning(result)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if result.report.get("tflite"):
        print(json.dumps(result.report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Evaluation report for a run folder or a SavedModel: `python -m training.evaluate PATH`.

For a run folder, writes `evaluation.json`, `evaluation.md` and `confusion.png` into it (or
--out): accuracy without and with test-time augmentation, per-class precision and recall, and
the confusion matrix. For a SavedModel (a version folder, or a base path: its newest version),
prints the test accuracy through both serving signatures, and writes it as
evaluation_saved_model.json only with --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from runtime.cli_args import ArgumentParser, non_empty, positive
from runtime.cpu import describe_cpu
from runtime.interrupts import stop_on_ctrl_c
from runtime.tf_startup import import_tensorflow
from training.config import DEFAULT_DATA, TTA_NAMES, default_data
from training.data import DataError, Dataset, Split, has_only_test_split, load_dataset
from training.metrics import share, summarize
from training.run_folder import (
    CONFUSION,
    EVALUATION,
    RunFolderError,
    is_run_folder,
    write_whole,
)
from training.run_options import read_run_options

# --headline: the TTA level the per-class table and matrix show.
HEADLINES = tuple(TTA_NAMES.values())


def evaluate_run(run_dir: Path, data: str | None = None, test_subset: int | None = None) -> dict:
    """By default on the run's own data and test images (its --test-subset pick, if it made
    one), so that the report repeats the figures in its meta.json."""
    from training.inference import predict_every_tta
    from training.run_model import load_for_inference

    model, meta = load_for_inference(run_dir, served=True)
    own_pick = test_subset is None and data is None  # other data: all of its test images
    data = data or _run_data(meta)
    if own_pick:
        try:
            test_subset = read_run_options(run_dir).get("test_subset")
        except RunFolderError as err:  # without it, the run's pick of test images is unknown
            raise RunFolderError(
                f"{err}, so the run's pick of test images is unknown: give --test-subset as "
                "the run was trained with, or --data to score all of a data set's test images"
            ) from None
    full = _test_files(data, meta) if has_only_test_split(data) else load_dataset(data)
    ds = full.subset(test=test_subset, seed=meta.get("seed", 0))  # the run's pick
    if test_subset and test_subset >= len(full.test.labels):
        test_subset = None  # the whole test set: the report must not claim a subset
    if list(ds.class_names) != meta["class_names"]:
        raise DataError(f"{data} has classes {ds.class_names}, the model {meta['class_names']}")
    report = {"model": str(run_dir), "data": ds.source, "test_images": len(ds.test.labels)}
    report["cpu"] = describe_cpu()  # beside `seconds`: figures of one machine
    print(f"evaluating {run_dir} on {len(ds.test.labels):,} test images of {ds.source}")
    if test_subset:
        report["test_subset"] = test_subset
        report["test_subset_of_the_run"] = own_pick
    predicted, report["seconds"] = predict_every_tta(model, ds.test.images)
    for level, name in TTA_NAMES.items():
        report[f"tta_{name}"] = summarize(ds.test.labels, predicted[level], ds.class_names)
        print(f"  TTA {name:15s} accuracy {report[f'tta_{name}']['accuracy']:.2%}", flush=True)
    report["class_names"] = list(ds.class_names)
    return report


def _test_files(data: str, meta: dict) -> Dataset:
    """Your own labelled photos (`<root>/test/<class>/`, no train/ split) as a data set of the
    run's classes: any subset of them, each file decoded as the proxy would send it."""
    from export.encoded import read_encoded
    from export.evaluation import decode_for_model

    try:
        images, labels, _, skipped = decode_for_model(
            read_encoded(data, "test"), meta["class_names"]
        )
    except (ValueError, OSError) as err:  # OSError: no servable files in test/
        raise DataError(str(err)) from None
    _say_skipped(skipped)
    empty = Split(np.zeros((0, *images.shape[1:]), np.uint8), np.zeros((0,), np.int32))
    return Dataset(empty, Split(images, labels), tuple(meta["class_names"]), data, tuple(skipped))


def _say_skipped(lines: list[str]) -> None:
    """The files of your own photos that are not readable images (the first 20)."""
    for line in lines[:20]:
        print(f"skipped, not a readable image: {line}", file=sys.stderr)


def _run_data(meta: dict) -> str:
    """The run's data set as its meta.json names it, if that path is found from here (it is
    as typed: relative to where training ran, or a container's /data/...); else the default."""
    recorded = meta.get("data")
    if recorded and (recorded == "keras" or Path(recorded).expanduser().exists()):
        return recorded
    fallback = default_data()
    if recorded:
        print(f"  the run's data {recorded} is not found from here; using {fallback}")
    return fallback


def write_report(report: dict, out_dir: Path, headline: str = "none") -> None:
    from training.plots import plot_confusion

    out_dir.mkdir(parents=True, exist_ok=True)
    best = report[f"tta_{headline}"]
    plot_confusion(
        np.array(best["confusion_matrix"]),
        report["class_names"],
        out_dir / CONFUSION,
        f"confusion matrix (TTA {headline}), accuracy {best['accuracy']:.2%}",
    )
    mirror = " (the CIFAR-10 JPEG q75 mirror)" if "cifar10-jpeg" in report["data"] else ""
    pick = " (the run's own --test-subset pick)" if report.get("test_subset_of_the_run") else ""
    lines = [
        f"# Evaluation of `{report['model']}`",
        "",
        f"Data: {report['data']}{mirror}, {report['test_images']} test images{pick}.",
        "",
        f"Predicted in {report['seconds']:.1f} s on {report['cpu']}.",
        "",
        "| test-time augmentation | accuracy |",
        "| --- | --- |",
        *[
            f"| {k.removeprefix('tta_')} | {v['accuracy']:.2%} |"
            for k, v in report.items()
            if k.startswith("tta_")
        ],
        "",
        f"Per class ({headline}):",
        "",
        "| class | precision | recall | images |",
        "| --- | --- | --- | --- |",
        *[
            f"| {name} | {share(c['precision'])} | {share(c['recall'])} | {c['support']} |"
            for name, c in best["per_class"].items()
        ],
        "",
        "![confusion matrix](confusion.png)",
        "",
    ]
    (out_dir / "evaluation.md").write_text("\n".join(lines))
    # evaluation.json last: the model card reads it, and a Ctrl-C before this point leaves the
    # report of an earlier evaluation as it was.
    write_whole(out_dir / EVALUATION, json.dumps(report, indent=2))


def main(argv: list[str] | None = None) -> None:
    ap = ArgumentParser(prog="python -m training.evaluate", description=__doc__)
    ap.add_argument("run_dir", type=non_empty(Path), help="a finished run folder, or a SavedModel")
    ap.add_argument(
        "--data",
        type=non_empty(),
        help=f"the data set (default: a run's own, as its meta.json records it; {DEFAULT_DATA} "
        "for a SavedModel)",
    )
    ap.add_argument(
        "--test-subset",
        type=positive(int),
        help="only this many test images, the ones a run's own --test-subset would pick "
        "(default: a run's own --test-subset, if it had one; else all)",
    )
    ap.add_argument(
        "--out",
        type=non_empty(Path),
        help="report folder (default: the run folder; a SavedModel's report is written only "
        "when this is given)",
    )
    ap.add_argument(
        "--headline",
        default="none",
        choices=HEADLINES,
        help="the TTA level of the per-class table and confusion matrix (default: none)",
    )
    args = ap.parse_args(argv)
    if not args.run_dir.exists():
        raise SystemExit(f"evaluate: {args.run_dir} not found")
    run = is_run_folder(args.run_dir)
    if not run and (args.test_subset or args.headline != "none"):
        raise SystemExit(
            "evaluate: --test-subset and --headline apply to a run folder; a SavedModel is "
            "scored on the whole test set, without per-class tables"
        )
    if args.out or run:
        check_out(args.out or args.run_dir)  # before the minutes of work
    with stop_on_ctrl_c("evaluate", "no new evaluation.json written"):
        _evaluate(args, run)


def _evaluate(args: argparse.Namespace, run: bool) -> None:
    import_tensorflow()
    if run:
        from training.run_model import UnfinishedRunError

        try:
            report = evaluate_run(args.run_dir, args.data, args.test_subset)
        except DataError as err:
            raise SystemExit(f"evaluate: data error: {err}") from None
        except (UnfinishedRunError, RunFolderError) as err:  # RunFolderError: a bad run.json
            raise SystemExit(f"evaluate: {err}") from None
    else:
        evaluate_export(args.run_dir, args.data or default_data(), args.out)
        return
    out = args.out or args.run_dir
    write_report(report, out, args.headline)
    print(f"report: {out / 'evaluation.md'}")


def check_out(out: Path) -> None:
    """The report folder, made now and found writable, or a one-line exit: a read-only or
    full disk, or a file in the way, once failed only after every TTA pass was scored."""
    if out.exists() and not out.is_dir():
        raise SystemExit(f"evaluate: --out {out} is a file; name a folder for the report")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise SystemExit(
            f"evaluate: cannot write the report in {out} ({error.strerror}); name a folder you "
            "can write with --out"
        ) from None


def evaluate_export(path: Path, data: str, out: Path | None) -> None:
    """Accuracy of a SavedModel through `pixels` and `serving_default` (original files)."""
    from export.encoded import read_encoded
    from export.evaluation import evaluate_saved_model, evaluate_saved_model_on_files
    from export.publish import saved_model_dir

    try:
        path = saved_model_dir(path)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(
            f"evaluate: cannot evaluate {path}: {err}, and it is no training run folder "
            "(no meta.json) either"
        ) from None
    try:
        if has_only_test_split(data):
            report = evaluate_saved_model_on_files(path, read_encoded(data, "test"))
        else:
            report = evaluate_saved_model(path, load_dataset(data))
    except (DataError, ValueError, OSError) as err:  # OSError: no servable files in test/
        raise SystemExit(f"evaluate: data error: {err}") from None
    _say_skipped(report.get("skipped", []))
    report["cpu"] = describe_cpu()
    print(json.dumps(report, indent=2))
    print(_saved_model_summary(report, data), file=sys.stderr)  # stdout stays JSON for scripts
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluation_saved_model.json").write_text(json.dumps(report, indent=2))


def _saved_model_summary(report: dict, data: str) -> str:
    """The figures a person looks for, in one sentence after the JSON."""
    line = (f"{report['saved_model']} on {report['test_images']:,} test images of {data}: "
            f"{report['pixels_accuracy']:.2%} through pixels")  # fmt: skip
    if report["serving_default_accuracy"] is not None:
        line += f", {report['serving_default_accuracy']:.2%} through serving_default"
    return f"{line} (TTA {report['tta']} in the graph)"


if __name__ == "__main__":
    main()

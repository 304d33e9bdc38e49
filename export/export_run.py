"""Export a finished training run as the next version of a TF Serving base path.

Loads the run's final weights in float32, folds the `fast` model's BatchNorms and input
normalisation into its convs (the same function in fewer ops, faster to serve), bakes in the
TTA level that gave the best test accuracy (unless told otherwise), writes the SavedModel (and
optionally TFLite models with their accuracy beside the SavedModel's) into a hidden temp
folder and publishes it atomically.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from export.config import INFO_ASSET
from export.evaluation import evaluate_saved_model
from export.publish import latest_version_dir, publish, versions
from export.savedmodel import choose_tta, read_info, save_savedmodel
from export.tflite import calibration_sample, export_tflite
from training.data import load_dataset
from training.models import fold_for_serving, load_for_inference

REPORT_FILE = "export_report.json"


@dataclass(frozen=True)
class ExportResult:
    version_dir: Path
    tta: int
    report: dict
    previous: tuple[int, float | None] | None = None  # newest version before, its accuracy
    published: bool = True  # False: the newest version already held these weights (skipped)
    created_base: bool = False  # the base path did not exist: perhaps a mistyped one


def weights_digest(run_dir: Path) -> str:
    """SHA-256 of a run's final weights: what says that a version came from them."""
    digest = hashlib.sha256()
    with (run_dir / "final.weights.h5").open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _newest(base_path: Path) -> Path | None:
    try:
        return latest_version_dir(base_path)
    except FileNotFoundError:
        return None


def expected_accuracy(version_dir: Path) -> float | None:
    """The test accuracy a version's export recorded for itself (assets/model_info.json)."""
    if not (version_dir / INFO_ASSET).is_file():
        return None
    return read_info(version_dir).get("expected_test_accuracy")


def accuracy_drop_warning(result: ExportResult) -> str | None:
    """A sentence when the new version is the newest and scored below the one it displaced:
    the model server moves all traffic to the newest, so a smoke-test run would answer all."""
    if result.previous is None:
        return None
    old_version, old = result.previous
    new = expected_accuracy(result.version_dir)
    if int(result.version_dir.name) < old_version or new is None or old is None or new >= old:
        return None
    base = result.version_dir.parent
    others = [v for v in versions(base) if v != int(result.version_dir.name)]
    if old_version in others:
        rollback = f"To roll back, remove {result.version_dir}, or pin version {old_version} "
        rollback += "(docs/DEPLOY.md)."
    elif others:
        rollback = f"Version {old_version} is gone (--keep); removing {result.version_dir} "
        rollback += f"would serve version {others[-1]}."
    else:
        rollback = f"Version {old_version} is gone (--keep) and no other version is left: "
        rollback += f"removing {result.version_dir} would leave nothing to serve. To roll back, "
        rollback += f"export version {old_version}'s run again."
    return (
        f"version {result.version_dir.name} recorded {new:.2%} test accuracy, below version "
        f"{old_version}'s {old:.2%}, and a model server polling {base} serves the newest "
        f"version. {rollback}"
    )


def export_run(
    run_dir: str | Path,
    base_path: str | Path,
    version: int | None = None,
    keep: int | None = None,
    tta: str = "auto",
    tflite: bool = False,
    data: str | None = None,
    skip_if_published: bool = False,
) -> ExportResult:
    """Publish `run_dir` under `base_path`; with `tflite`, `data` supplies images to measure.

    `skip_if_published` publishes nothing when the newest version was exported from the same
    final weights: a re-run of train-then-export (the trainer image) after its run finished
    would otherwise add an identical version and retire the previous one."""
    model, meta = load_for_inference(run_dir)
    digest = weights_digest(Path(run_dir))
    newest = _newest(Path(base_path))
    newest_info = read_info(newest) if newest and (newest / INFO_ASSET).is_file() else {}
    if skip_if_published and newest_info.get("source_weights_sha256") == digest:
        return ExportResult(newest, newest_info.get("tta", 0), {}, published=False)
    folded = meta["arch"] == "fast"
    if folded:
        model = fold_for_serving(model)
    level = choose_tta(meta, tta)
    extra = {
        "graph": "BatchNorm folded into the convs" if folded else "as trained",
        "source_run": str(run_dir),
        "source_weights_sha256": digest,
        "command": meta.get("command"),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    report: dict = {"tta": level}

    def write(tmp: Path) -> None:
        save_savedmodel(model, meta, tmp, level, extra)
        if tflite:
            report.update(_measure_with_tflite(model, tmp, data or meta["data"]))
            (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")

    previous = (int(newest.name), expected_accuracy(newest)) if newest else None
    created = not Path(base_path).exists()
    version_dir = publish(write, base_path, version, keep)
    return ExportResult(version_dir, level, report, previous, created_base=created)


def _measure_with_tflite(model, saved_model_dir: Path, data: str) -> dict:
    """TFLite float/int8 files plus the test accuracy of all three formats on the same images."""
    dataset = load_dataset(data)
    saved = evaluate_saved_model(saved_model_dir, dataset)
    del saved["saved_model"]  # the temp folder's name, gone once published: the report is in it
    saved["bytes"] = _folder_bytes(saved_model_dir)
    lite = export_tflite(
        model,
        saved_model_dir,
        calibration_sample(dataset.train.images),
        dataset.test.images,
        dataset.test.labels,
    )
    return {"savedmodel": saved, "tflite": lite}


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())

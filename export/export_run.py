"""Export a finished training run as the next version of a TF Serving base path.

Loads the run's final weights in float32, folds the `fast` model's BatchNorms and input
normalisation into its convs (the same function in fewer ops, faster to serve), bakes in the
TTA level whose test accuracy gain is more than noise (unless told otherwise), writes the
SavedModel (and optionally TFLite models with their accuracy beside the SavedModel's) into a
hidden temp folder and publishes it atomically.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from export.evaluation import evaluate_saved_model
from export.info import find_published, info_if_any, weights_digest
from export.publish import latest_version_dir, publish, rollback_dir, versions
from export.savedmodel import save_savedmodel
from export.tflite import calibration_sample, export_tflite
from export.tta import choose_tta, tta_reason
from runtime.cpu import describe_cpu
from training.data import load_dataset
from training.run_folder import FINAL_WEIGHTS
from training.run_model import load_for_inference

REPORT_FILE = "export_report.json"


@dataclass(frozen=True)
class Displaced:
    """The newest version before an export: what traffic moves away from."""

    version: int
    accuracy: float | None  # the test accuracy its export recorded
    source_run: str | None = None  # the run folder it was exported from


@dataclass(frozen=True)
class ExportResult:
    version_dir: Path  # skipped: the folder that already holds these weights
    tta: int
    report: dict
    previous: Displaced | None = None
    published: bool = True  # False: skip_if_published found these weights already published
    created_base: bool = False  # the base path did not exist: perhaps a mistyped one
    copy_of: Path | None = None  # published anyway: a version already exported these weights
    tta_reason: str = ""  # why this TTA level (export.tta.tta_reason)


def _newest(base_path: Path) -> Path | None:
    try:
        return latest_version_dir(base_path)
    except FileNotFoundError:
        return None


def expected_accuracy(version_dir: Path) -> float | None:
    """The test accuracy a version's export recorded for itself (assets/model_info.json)."""
    return info_if_any(version_dir).get("expected_test_accuracy")


def accuracy_drop_warning(result: ExportResult) -> str | None:
    """A sentence when the new version is the newest and scored below the one it displaced:
    the model server moves all traffic to the newest, so a smoke-test run would answer all."""
    if result.previous is None:
        return None
    old_version, old = result.previous.version, result.previous.accuracy
    new = expected_accuracy(result.version_dir)
    if int(result.version_dir.name) < old_version or new is None or old is None or new >= old:
        return None
    base = result.version_dir.parent
    away = f"mv -T {result.version_dir} {rollback_dir(result.version_dir)}"
    others = [v for v in versions(base) if v != int(result.version_dir.name)]
    if old_version in others:
        rollback = f"To roll back, move it away ({away}; docs/DEPLOY.md) or pin version "
        rollback += f"{old_version}."
    elif others:
        rollback = f"Version {old_version} is gone; moving this one away ({away}) would serve "
        rollback += f"version {others[-1]} under the default latest policy."
    else:
        source = result.previous.source_run or f"version {old_version}'s run"
        rollback = f"Version {old_version} is gone and no other version is left: moving this "
        rollback += f"one away would leave nothing to serve. To roll back, export {source} again."
    return (
        f"version {result.version_dir.name} recorded {new:.2%} test accuracy, below version "
        f"{old_version}'s {old:.2%}, and a model server polling {base} serves the newest "
        f"version. {rollback}"
    )


def export_run(
    run_dir: str | Path,
    base_path: str | Path,
    *,
    version: int | None = None,
    keep: int | None = None,
    tta: str = "auto",
    tflite: bool = False,
    data: str | None = None,
    skip_if_published: bool = False,
) -> ExportResult:
    """Publish `run_dir` under `base_path`; with `tflite`, `data` supplies images to measure.

    `skip_if_published` publishes nothing when a version, served or rolled back, was exported
    from the same final weights: a re-run of train-then-export (the trainer image) after its
    run finished would otherwise add an identical version, or bring back a rolled-back one."""
    weights = Path(run_dir) / FINAL_WEIGHTS
    digest = weights_digest(Path(run_dir)) if weights.is_file() else ""
    found = find_published(Path(base_path), digest) if digest else None
    if found and skip_if_published:  # decided before the model loads: it costs a file hash
        return ExportResult(found, info_if_any(found).get("tta", 0), {}, published=False)
    # an unfinished run fails here, with its reason
    model, meta = load_for_inference(run_dir, served=True)
    folded = model.name == "fast_folded"
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

    newest = _newest(Path(base_path))
    previous = None
    if newest:
        info = info_if_any(newest)  # read before --keep can prune it
        previous = Displaced(
            int(newest.name), info.get("expected_test_accuracy"), info.get("source_run")
        )
    created = not Path(base_path).exists()
    version_dir = publish(write, base_path, version, keep)
    return ExportResult(
        version_dir,
        level,
        report,
        previous,
        created_base=created,
        copy_of=found,
        tta_reason=tta_reason(meta, tta, level),
    )


def _measure_with_tflite(model, saved_model_dir: Path, data: str) -> dict:
    """TFLite float/int8 files plus the test accuracy of all three formats on the same images."""
    dataset = load_dataset(data)
    saved = evaluate_saved_model(saved_model_dir, dataset)
    saved["data"] = data  # the card states this figure only for the run's own test images
    del saved["saved_model"]  # the temp folder's name, gone once published: the report is in it
    saved["bytes"] = _folder_bytes(saved_model_dir)
    lite = export_tflite(
        model,
        saved_model_dir,
        calibration_sample(dataset.train.images),
        dataset.test.images,
        dataset.test.labels,
    )
    return {"savedmodel": saved, "tflite": lite, "measured_on": describe_cpu()}


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())

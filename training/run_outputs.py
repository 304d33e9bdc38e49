"""Everything a finished run leaves in its folder (model, stats, history, curves, log).

The test accuracies in meta.json are measured on the float32 rebuild that export serves and
training.evaluate reports, not on the model in its training precision: one figure everywhere.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from training.checkpoint import fix_for, reason
from training.config import TTA_ACCURACY_KEYS, TTA_NAMES, tta_passes
from training.data import Dataset
from training.inference import predict_every_tta, top1_accuracy
from training.plots import plot_curves
from training.run_folder import (
    CURVES,
    FINAL_WEIGHTS,
    HISTORY,
    META,
    MODEL_FILE,
    OutputError,
    write_whole,
)
from training.run_model import build_for_inference, inference_meta

if TYPE_CHECKING:
    from training.trainer import Trainer


def write_run_outputs(
    trainer: Trainer, ds: Dataset, run_dir: Path, extra: dict, log: Callable[[str], None] = print
) -> dict:
    """Writes them all, meta.json last; a failed write is an OutputError that says the
    checkpoint still holds the training, so the same command finishes the run."""
    try:
        return _write_run_outputs(trainer, ds, run_dir, extra, log)
    except OSError as error:
        where = error.filename or run_dir
        raise OutputError(
            f"the run's outputs stopped at {where} ({reason(error)}); the checkpoint "
            f"holds the trained weights: {fix_for(error)} and re-run the same command to finish "
            "the run"
        ) from error


def _write_run_outputs(
    trainer: Trainer, ds: Dataset, run_dir: Path, extra: dict, log: Callable[[str], None]
) -> dict:
    model = trainer.model
    model.save_weights(run_dir / FINAL_WEIGHTS)
    model.save(run_dir / MODEL_FILE)
    recipe = trainer.recipe
    network = (recipe.arch, recipe.widths, recipe.depth)
    meta = {
        **inference_meta(model, *network, ds.class_names, trainer.mean, trainer.std, ds.image_size),
        "data": ds.source,
        "train_images": len(trainer.train.labels),
        "test_images": len(ds.test.labels),
        **extra,
    }
    if trainer.ends_on_ema and trainer.steps_after_last_ema_update:  # before the figures
        log("final weights: the lookahead EMA (the epoch lines measured the raw weights)")
    log(
        f"final evaluation: {len(ds.test.labels)} test images, TTA none, flip, flip+translate "
        f"in one sweep ({tta_passes(max(TTA_NAMES))} passes per image, shared by the levels)"
    )
    started = time.monotonic()
    served = build_for_inference(meta, run_dir / FINAL_WEIGHTS, served=True)
    predicted, seconds = predict_every_tta(served, ds.test.images)
    test_acc = {level: top1_accuracy(p, ds.test.labels) for level, p in predicted.items()}
    for level, name in TTA_NAMES.items():
        log(f"  TTA {name}: accuracy {test_acc[level]:.2%}")
    passes = tta_passes(max(TTA_NAMES))
    log(f"  ({seconds:.0f} s for all {len(TTA_NAMES)} levels, {passes} passes per image)")
    meta.update({TTA_ACCURACY_KEYS[level]: value for level, value in test_acc.items()})
    meta["final_evaluation_seconds"] = time.monotonic() - started
    (run_dir / HISTORY).write_text(json.dumps(trainer.progress.history, indent=2))
    if trainer.progress.history:
        plot_curves(
            trainer.progress.history,
            run_dir / CURVES,
            f"{extra.get('recipe_name', trainer.recipe.arch)} · seed {extra.get('seed')} · "
            f"{extra.get('precision')}",
            label_smoothing=trainer.recipe.label_smoothing,
            final_accuracy=test_acc[0],
        )
    # meta.json last, whole or not at all: with the final weights it marks the run finished
    # (run_folder.is_finished), and a re-run would not write the other outputs again.
    write_whole(run_dir / META, json.dumps(meta, indent=2))
    log(
        f"test accuracy (float32, as exported): {test_acc[0]:.2%} plain · "
        f"{test_acc[1]:.2%} flip TTA · {test_acc[2]:.2%} flip+translate TTA · "
        f"trained {meta['train_seconds']:.0f} s at {meta['images_per_second']:,.0f} img/s · "
        f"outputs in {run_dir}"
    )
    return meta

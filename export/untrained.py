"""A small untrained `fast` model with CIFAR-10's names and statistics.

Tests and the quick benchmark runs need a servable of the real shape and signatures in
seconds; what it predicts does not matter, only that a given seed always predicts the same.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import keras

from training.data import CIFAR10_CLASSES
from training.models import build_model
from training.run_folder import FINAL_WEIGHTS, META
from training.run_model import inference_meta

# CIFAR-10 training statistics (0..255 units), rounded: close enough for an untrained model.
CIFAR_MEAN = [125.3, 123.0, 113.9]
CIFAR_STD = [63.0, 62.1, 66.7]


def untrained_model(seed: int, widths: Sequence[int] = (8, 16, 16)) -> tuple[keras.Model, dict]:
    """The model and the run metadata that export and `load_for_inference` read."""
    keras.utils.set_random_seed(seed)
    model = build_model("fast", len(CIFAR10_CLASSES), CIFAR_MEAN, CIFAR_STD, widths=widths)
    meta = inference_meta(model, "fast", widths, 2, CIFAR10_CLASSES, CIFAR_MEAN, CIFAR_STD, 32)
    return model, {**meta, "seed": seed}


def write_untrained_run(folder: Path) -> tuple[Path, Path]:
    """An untrained model as a finished run folder and as version 1 of a base path: the quick
    benchmark runs serve the one and give the other to a baseline that loads run folders."""
    from export.publish import publish
    from export.savedmodel import save_savedmodel

    model, meta = untrained_model(seed=0)
    run_dir = folder / "run"
    run_dir.mkdir(parents=True)
    model.save_weights(run_dir / FINAL_WEIGHTS)
    (run_dir / META).write_text(json.dumps(meta))
    base = folder / "cifar10"
    publish(lambda tmp: save_savedmodel(model, meta, tmp), base, 1)
    return run_dir, base

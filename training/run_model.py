"""A finished run folder's network, rebuilt for inference from its meta.json and final weights
(what export serves and evaluation measures), and the constants meta.json records for that."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras

from training.fold import fold_for_serving
from training.models import LOGIT_SCALE, build_model, precision_policy
from training.run_folder import FINAL_WEIGHTS, is_finished, is_run_folder, read_meta


class UnfinishedRunError(FileNotFoundError):
    """A run folder without a finished run's outputs (still training, or interrupted)."""


def load_for_inference(run_dir: str | Path, served: bool = False) -> tuple[keras.Model, dict]:
    """Rebuild a run's model in float32 (fast on every CPU) with its final weights; `served`:
    in the form export serves (`build_for_inference`)."""
    run_dir = Path(run_dir)
    if not is_finished(run_dir):
        hint = (
            "its training has not finished: re-run its training command to resume"
            if is_run_folder(run_dir)
            else "it is not a training run folder"
        )
        raise UnfinishedRunError(f"{run_dir} holds no finished run ({hint})")
    meta = read_meta(run_dir)
    return build_for_inference(meta, run_dir / FINAL_WEIGHTS, served), meta


def build_for_inference(meta: dict, weights: Path, served: bool = False) -> keras.Model:
    """The model a run's meta.json describes, in float32, with `weights` loaded. `served`: as
    export serves it and evaluation measures it, a `fast` network with its BatchNorms folded
    into the convs (`training.fold`: the same function to float rounding, in fewer ops)."""
    with precision_policy("float32"):
        model = build_model(
            meta["arch"],
            len(meta["class_names"]),
            meta["mean"],
            meta["std"],
            meta.get("image_size", 32),
            meta.get("widths", (64, 256, 256)),
            meta.get("depth", 2),
            meta.get("logit_scale", LOGIT_SCALE),
        )
    model.load_weights(weights)
    return fold_for_serving(model) if served and meta["arch"] == "fast" else model


def inference_meta(
    model: keras.Model,
    arch: str,
    widths: Sequence[int],
    depth: int,
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    image_size: int,
) -> dict:
    """The part of meta.json that `build_for_inference` reads back (and the parameter count
    beside it): one place for every writer of a run folder, so none leaves a key out."""
    return {
        "arch": arch,
        "widths": list(widths),
        "depth": depth,
        **network_constants(model),
        "class_names": list(class_names),
        "mean": mean,
        "std": std,
        "image_size": image_size,
        "params": model.count_params(),
    }


def network_constants(model: keras.Model) -> dict:
    """The constants meta.json records, beside the recipe's widths and depth, to rebuild `model`
    for inference as it was trained: its logit scale (not a weight)."""
    names = {layer.name for layer in model.layers}
    return (
        {"logit_scale": float(model.get_layer("logit_scale").scale)}
        if "logit_scale" in names
        else {}
    )

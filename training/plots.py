"""Pictures a person would rather look at than read: training curves, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator


def plot_curves(
    history: list[dict],
    path: Path,
    title: str = "",
    label_smoothing: float = 0.0,
    final_accuracy: float | None = None,
) -> Path:
    """Loss and accuracy per epoch, train against the monitored split (val or test), and the
    final weights' test accuracy as a line: with the lookahead EMA they are not the last
    epoch's weights, so the last point and the reported figure differ."""
    epochs = [row["epoch"] for row in history]
    monitor = "val" if "val_loss" in history[0] else "test"
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        # The training loss is the one the optimizer sees: label-smoothed, it cannot reach 0
        # and sits above the monitored split's plain cross-entropy.
        train = "train (augmented)"
        if metric == "loss" and label_smoothing > 0:
            train = f"train (augmented, label smoothing {label_smoothing:g})"
        ax.plot(epochs, [r[f"train_{metric}"] for r in history], "o-", label=train)
        ax.plot(
            epochs,
            [r[f"{monitor}_{metric}"] for r in history],
            "s-",
            label=_checked(history, monitor),
        )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are rows, not a scale
        ax.set_ylabel(metric)
        if metric == "accuracy" and final_accuracy is not None:
            final_line(ax, final_accuracy)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def final_line(ax: plt.Axes, accuracy: float) -> None:
    """The final weights' accuracy as a dashed line, with room above it: above every epoch's
    point (the usual case, the EMA being better), it lay on the axes' frame, out of sight."""
    ax.axhline(accuracy, color="0.3", linestyle="--", linewidth=1,
               label=f"final weights, test: {accuracy:.2%}")  # fmt: skip
    low, high = ax.get_ylim()
    ax.set_ylim(low, max(high, accuracy + 0.08 * (max(high, accuracy) - low)))


def _checked(history: list[dict], monitor: str) -> str:
    """The monitored split's legend, with the images each epoch's check scored: a run resumed
    across the change to a sample of the test has whole-split rows (no count recorded) first."""
    counts = [row.get("checked_images") for row in history]
    if counts[-1] is None:
        return monitor
    if counts[0] == counts[-1]:
        return f"{monitor} ({counts[-1]:,} images a check)"
    first = next(i for i, n in enumerate(counts) if n == counts[-1])
    return f"{monitor} ({counts[-1]:,} images a check from epoch {history[first]['epoch']})"


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix with counts, true class on the rows."""
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * n, 0.8 + 0.65 * n), layout="constrained")
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class (numbers: images)")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            color = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8, color=color)
    ax.set_title(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

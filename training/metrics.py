"""Scores of one set of predictions: accuracy, per-class precision and recall, the confusion
matrix; and how the reports print a share (the run's report, the model card)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def summarize(labels: np.ndarray, predicted: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, per-class precision/recall and the confusion matrix of one set of predictions."""
    matrix = confusion_matrix(labels, predicted, len(class_names))
    tp = np.diag(matrix)
    return {
        "accuracy": float(tp.sum() / max(matrix.sum(), 1)),
        "per_class": {
            name: {"precision": _ratio(t, called), "recall": _ratio(t, s), "support": int(s)}
            for name, t, called, s in zip(class_names, tp, matrix.sum(0), matrix.sum(1))
        },
        "confusion_matrix": matrix.tolist(),
    }


def _ratio(part: int, whole: int) -> float | None:
    """None where undefined: the precision of a class never predicted is 0/0, not 0 %."""
    return float(part / whole) if whole else None


def share(value: float | None, missing: str = "–") -> str:
    """A share (precision, recall, accuracy) as the reports print it; `missing` where there is
    none (a precision of a class never predicted is 0/0)."""
    return missing if value is None else f"{value:.2%}"

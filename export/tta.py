"""Which test-time augmentation to bake into an exported graph (`python -m export --tta auto`).

Plain JSON in, a level out: no TensorFlow, so the rule reads and tests on its own.
"""

from __future__ import annotations

import math

from training.config import TTA_ACCURACY_KEYS


def choose_tta(meta: dict, requested: str = "auto") -> int:
    """The TTA level to bake in. "auto": a costlier level (every request pays its extra
    passes) only when it beats the cheaper one chosen so far by more than two standard errors
    of a test accuracy; a gain inside that is noise of the test set, which picking the best
    of three would also overstate. A run without recorded accuracies gets no TTA."""
    if requested != "auto":
        return int(requested)
    recorded = {level: meta[key] for level, key in TTA_ACCURACY_KEYS.items() if key in meta}
    if not recorded:
        return 0
    chosen = min(recorded)
    for level in sorted(recorded)[1:]:
        if recorded[level] - recorded[chosen] > noise(recorded[chosen], meta.get("test_images")):
            chosen = level
    return chosen


def noise(accuracy: float, images: int | None) -> float:
    """Two standard errors of an accuracy measured on `images` test images (none: no margin)."""
    return 2 * math.sqrt(accuracy * (1 - accuracy) / images) if images else 0.0

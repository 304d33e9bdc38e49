"""Which test-time augmentation to bake into an exported graph (`python -m export --tta auto`).

Plain JSON in, a level out: no TensorFlow, so the rule reads and tests on its own.
"""

from __future__ import annotations

import math

from training.config import TTA_ACCURACY_KEYS, TTA_NAMES


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


def tta_reason(meta: dict, requested: str, level: int) -> str:
    """Why `level` was baked in, and the accuracy it serves: export prints it, since "TTA 0"
    alone reads like a mistake when flip scored higher on a small test set."""
    accuracy = meta.get(TTA_ACCURACY_KEYS[level])
    serves = f"; serves {accuracy:.2%} on the run's test images" if accuracy is not None else ""
    if requested != "auto":
        return f"--tta {requested}{serves}"
    recorded = {lv: meta[key] for lv, key in TTA_ACCURACY_KEYS.items() if key in meta}
    if not recorded:
        return "auto: the run recorded no test accuracies, so no TTA"
    images = meta.get("test_images")
    scores = ", ".join(f"{TTA_NAMES[lv]} {a:.2%}" for lv, a in sorted(recorded.items()))
    rule = (
        f"a costlier level must beat the one chosen before it by more than two standard "
        f"errors on {images:,} test images (about "
        f"{100 * noise(recorded[min(recorded)], images):.2f} points)"
        if images
        else "no test-image count recorded, so the best wins"
    )
    return f"auto chose {TTA_NAMES[level]} ({scores}; {rule}){serves}"


def noise(accuracy: float, images: int | None) -> float:
    """Two standard errors of an accuracy measured on `images` test images (none: no margin)."""
    return 2 * math.sqrt(accuracy * (1 - accuracy) / images) if images else 0.0

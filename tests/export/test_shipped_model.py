"""The shipped model (models/cifar10/<newest>/) reaches the test accuracy its model card states."""

from __future__ import annotations

from pathlib import Path

import pytest

from export.model_card import CARD_NAME, served_accuracy
from export.publish import versions

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "cifar10"
# The card's figure was measured by training (its own precision); the float32 export may
# differ by a few images of the 10,000.
TOLERANCE = 0.001

pytestmark = [pytest.mark.slow, pytest.mark.fulldata]


def test_shipped_model_meets_its_card(cifar_sample):  # cifar_sample: skips without the data
    if not versions(SHIPPED) or not (SHIPPED / CARD_NAME).exists():
        pytest.skip(f"no shipped version with a {CARD_NAME} in {SHIPPED}")
    from export.evaluation import evaluate_saved_model
    from tests.conftest import CIFAR_TAR
    from training.data import load_dataset

    promised = served_accuracy((SHIPPED / CARD_NAME).read_text())
    report = evaluate_saved_model(SHIPPED / str(versions(SHIPPED)[-1]), load_dataset(CIFAR_TAR))
    assert report["test_images"] == 10_000
    assert report["pixels_accuracy"] >= promised - TOLERANCE
    assert report["serving_default_accuracy"] >= promised - TOLERANCE

"""The shipped model (models/cifar10/<newest>/) reaches the test accuracy its model card states."""

from __future__ import annotations

from pathlib import Path

import pytest

from export.model_card import CARD_NAME, served_accuracy
from export.publish import versions

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "cifar10"
# The card's figure is the export's own measurement of the float32 SavedModel
# (expected_test_accuracy in its model_info.json); this evaluation, on another run of the
# same graph, may still differ by a few images of the 10,000.
TOLERANCE = 0.001

pytestmark = [pytest.mark.slow, pytest.mark.fulldata]


def test_shipped_model_meets_its_card(cifar_sample):  # cifar_sample: skips without the data
    if not versions(SHIPPED) or not (SHIPPED / CARD_NAME).exists():
        pytest.skip(f"no shipped version with a {CARD_NAME} in {SHIPPED}")
    from export.evaluation import evaluate_saved_model
    from tests.conftest import CIFAR_TAR
    from training.data import load_dataset

    card = (SHIPPED / CARD_NAME).read_text()
    newest = versions(SHIPPED)[-1]
    # The card must be about the version a model server serves, not an older one.
    stale = f"{CARD_NAME} is not about version {newest}: make evaluate, then make model-card"
    assert card.startswith(f"# Model card: `cifar10` version {newest}\n"), stale
    assert f"Test accuracy of the served model (version {newest}," in card
    promised = served_accuracy(card)
    report = evaluate_saved_model(SHIPPED / str(newest), load_dataset(CIFAR_TAR))
    assert report["test_images"] == 10_000
    assert report["pixels_accuracy"] >= promised - TOLERANCE
    assert report["serving_default_accuracy"] >= promised - TOLERANCE

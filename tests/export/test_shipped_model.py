"""The shipped model (models/cifar10/<newest>/) reaches the test accuracy its model card states."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from export.model_card import CARD_NAME, served_accuracy
from export.publish import versions
from tests.conftest import HOST_LIMIT

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "cifar10"
# The card's figure is the export's own measurement of the float32 SavedModel through
# `pixels` (export_report.json) where the export measured it, else training's figure for the
# same weights (model_info.json's expected_test_accuracy); this evaluation, on another run of
# the same graph, may still differ by a few images of the 10,000.
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


def test_the_model_servers_bfloat16_math_keeps_the_cards_accuracy(cifar_sample):
    """On a CPU with AMX the model server runs float32 ops in oneDNN's bfloat16 math
    (modelserver/cpu_math.py); the card's promise must hold for the model served that way."""
    from modelserver.cpu_math import FPMATH_ENV, choose_fpmath
    from runtime.cpu import cpu_info

    environ = {k: v for k, v in os.environ.items() if k != FPMATH_ENV}
    if choose_fpmath(environ, cpu_info()["flags"])[0] != "BF16":
        pytest.skip(f"{HOST_LIMIT} AMX: the model server keeps float32 math (the test above)")
    if not versions(SHIPPED) or not (SHIPPED / CARD_NAME).exists():
        pytest.skip(f"no shipped version with a {CARD_NAME} in {SHIPPED}")
    from tests.conftest import CIFAR_TAR

    # A process of its own: the mode is read when TensorFlow runs its first op.
    newest = SHIPPED / str(versions(SHIPPED)[-1])
    command = [sys.executable, "-m", "training.evaluate", str(newest), "--data", str(CIFAR_TAR)]
    done = subprocess.run(command, env=environ, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    promised = served_accuracy((SHIPPED / CARD_NAME).read_text())
    assert report["test_images"] == 10_000
    assert report["pixels_accuracy"] >= promised - TOLERANCE
    assert report["serving_default_accuracy"] >= promised - TOLERANCE


def test_the_pages_guess_threshold_says_what_the_shipped_model_does(cifar_sample):
    """The page marks a best class under `unsureBelow` as "Just a guess: answers under 50% were
    right about half the time": that sentence must hold for the shipped model."""
    if not versions(SHIPPED):
        pytest.skip(f"no shipped version in {SHIPPED}")
    import re

    from bench.confidence import split_at
    from export.evaluation import ServedModel
    from tests.conftest import CIFAR_TAR
    from training.data import load_dataset

    script = (ROOT / "proxy" / "static" / "app.js").read_text()
    threshold = float(re.search(r"unsureBelow: ([0-9.]+),", script).group(1))
    assert "under ${Math.round(settings.unsureBelow * 100)}% were right about half" in script
    dataset = load_dataset(CIFAR_TAR)
    served = ServedModel(SHIPPED / str(versions(SHIPPED)[-1]))
    split = split_at(served.pixels(dataset.test.images), dataset.test.labels, threshold)
    assert 0.4 <= split["accuracy_under"] <= 0.65, split  # "about half"
    assert split["accuracy_rest"] >= 0.9, split  # well above: the mark is not on every answer
    assert 0.02 <= split["share"] <= 0.25, split

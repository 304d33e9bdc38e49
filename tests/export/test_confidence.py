"""bench.confidence: the measurement behind the page's "Just a guess" threshold."""

from __future__ import annotations

import math

import numpy as np

from bench.confidence import by_confidence, split_at


def test_split_at_counts_each_side():
    probabilities = np.array([[0.9, 0.1], [0.45, 0.55], [0.3, 0.7], [0.52, 0.48], [0.6, 0.4]])
    labels = np.array([0, 0, 1, 1, 0])
    # best: 0.9 right, 0.55 wrong, 0.7 right, 0.52 wrong, 0.6 right
    split = split_at(probabilities, labels, 0.6)
    assert split["share"] == 0.4  # 0.55 and 0.52
    assert split["accuracy_under"] == 0.0
    assert split["accuracy_rest"] == 1.0
    assert math.isnan(split_at(probabilities, labels, 0.1)["accuracy_under"])


def test_by_confidence_bins_cover_every_image_once():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(10) * 0.3, size=1000)
    probabilities[0] = np.eye(10)[3]  # a top probability of exactly 1 falls in the last bin
    lines = by_confidence(probabilities, rng.integers(0, 10, 1000))
    bins = [line for line in lines if line.startswith("top probability")]
    shares = [float(line.split(": ")[1].split("%")[0]) for line in bins]
    assert len(shares) == 8
    assert abs(sum(shares) - 100) < 0.5  # each share rounded to 0.1

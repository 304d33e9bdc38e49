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


def test_by_confidence_puts_each_image_in_one_bin_a_certain_one_in_the_last():
    tops = [1.0, 0.95, 0.85, 0.75, 0.65, 0.55, 0.45, 0.35, 0.2, 0.2]
    probabilities = np.array([[p] + [(1 - p) / 9] * 9 for p in tops])  # class 0 on top
    labels = np.array([0, 1, 0, 0, 0, 0, 0, 0, 0, 1])  # the 0.95 and the last 0.2 are wrong
    lines = [line for line in by_confidence(probabilities, labels) if line.startswith("top")]
    shares = [line.split(": ")[1].split(" of images")[0].strip() for line in lines]
    assert shares == ["20.0%", "10.0%", "10.0%", "10.0%", "10.0%", "10.0%", "10.0%", "20.0%"]
    assert lines[-1].endswith("right on 50.0%")  # 1.0 right, 0.95 wrong
    assert lines[0].endswith("right on 50.0%")  # the two 0.2s: one right, one wrong

"""REST JSON number formatting: json_tensor.cc WriteDecimal, exactly (reference §3.6)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from modelserver.rest_json import format_decimal


@pytest.mark.parametrize(
    ("value", "float32_text", "float64_text"),
    [
        (0.2, "0.2", "0.2"),  # 6 digits round-trip: no float32 noise digits
        (1.0, "1.0", "1.0"),  # whole numbers get ".0"
        (9000000.0, "9e+06", "9e+06"),  # %g switches to exponent form, no ".0" added
        (3e-05, "3e-05", "3e-05"),
        (0.1234567, "0.123456702", "0.1234567"),  # not round-tripping: max_digits10
        (16777217.0, "16777216.0", "16777217.0"),
        (math.nan, "NaN", "NaN"),
        (math.inf, "Infinity", "Infinity"),
        (-math.inf, "-Infinity", "-Infinity"),
    ],
)
def test_decimals_are_written_like_tf_serving(value, float32_text, float64_text):
    assert format_decimal(float(np.float32(value)), is_float32=True) == float32_text
    assert format_decimal(value, is_float32=False) == float64_text

"""REST JSON number formatting: json_tensor.cc WriteDecimal, exactly (reference §3.6)."""

from __future__ import annotations

import json
import math
import re

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


def _checked_one_by_one(value, dtype: int) -> list | Exception:
    """What the per-value path (`_fill`, TF Serving's FillTensorProto) makes of `value`."""
    from modelserver.rest_json import _dense_shape, _fill

    out: list = []
    try:
        _fill(value, 0, dtype, _dense_shape(value), out)
    except Exception as error:  # noqa: BLE001 - the error itself is the expected result
        return error
    return out


def test_bulk_number_path_takes_a_json_image():
    from tensorflow.core.framework import types_pb2

    from modelserver.rest_json import _dense_shape, _numbers_in_bulk

    image = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3)).tolist()
    flat = _numbers_in_bulk(image, types_pb2.DT_FLOAT, _dense_shape(image))
    assert flat == np.asarray(image).ravel().tolist()


@pytest.mark.parametrize(
    ("value", "dtype_name"),
    [
        ([[1, 2], [3, 4]], "DT_INT32"),
        ([[1, 2.5], [3, 4]], "DT_FLOAT"),
        ([[1, 2], [3, True]], "DT_FLOAT"),  # bool is not a number to TF Serving
        ([[1, 2], [3, True]], "DT_INT64"),
        ([[1, 2], [3, 4.0]], "DT_INT32"),  # 4.0 is not an int
        ([[1, 2], [3, 2**31]], "DT_INT32"),  # out of int32's range
        ([[1, 2], [3, 2**40]], "DT_INT64"),
        ([[1, 2], [3]], "DT_FLOAT"),  # ragged
        ([[1, 2], [3, [4]]], "DT_FLOAT"),  # a list where a number belongs
        ([[1, 2], 3], "DT_FLOAT"),
        ([[1, 2], [3, None]], "DT_FLOAT"),
        ([[1, 2], [3, "4"]], "DT_FLOAT"),
        ([[], []], "DT_FLOAT"),
        (7, "DT_FLOAT"),
        ([[1, 2], [3, 4]], "DT_STRING"),
    ],
)
def test_bulk_number_path_agrees_with_the_per_value_path(value, dtype_name):
    """The fast path declines (None) what `_fill` refuses and returns what `_fill` returns
    for the rest."""
    from tensorflow.core.framework import types_pb2

    from modelserver.rest_json import _dense_shape, _flat_values, _numbers_in_bulk

    dtype = getattr(types_pb2, dtype_name)
    expected = _checked_one_by_one(value, dtype)
    bulk = _numbers_in_bulk(value, dtype, _dense_shape(value))
    if isinstance(expected, Exception):
        assert bulk is None
        with pytest.raises(type(expected), match=re.escape(str(expected))):
            _flat_values(value, dtype, _dense_shape(value))
    else:
        assert bulk == expected  # every valid case here is one the fast path must take
        assert _flat_values(value, dtype, _dense_shape(value)) == expected


def test_numbers_no_double_can_hold_are_parse_errors_as_in_rapidjson():
    """kParseErrorNumberTooBig; before, 1e400 became inf and a 400-digit integer crashed."""
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import meta_graph_pb2

    from modelserver.rest_json import parse_document, predict_inputs
    from modelserver.status import ServingError

    too_big = "JSON Parse error: Number too big to be stored in double."
    with pytest.raises(ServingError, match=re.escape(f"{too_big} at offset: 16")):
        parse_document(b' {"instances": [1e400]}')
    small = parse_document(b'{"instances": [1e-400, 1.5e308, -2.5, NaN, -Infinity]}')
    assert small["instances"][:3] == [0.0, 1.5e308, -2.5]
    assert math.isnan(small["instances"][3]) and small["instances"][4] == -math.inf

    inputs = {"x": meta_graph_pb2.TensorInfo(dtype=types_pb2.DT_FLOAT)}
    document = parse_document(b'{"instances": [1, ' + b"9" * 400 + b"]}")
    with pytest.raises(ServingError, match=re.escape(too_big)) as error:
        predict_inputs(document, inputs)
    assert error.value.code.name == "INVALID_ARGUMENT"


def test_row_format_writes_one_string_value_per_item():
    """A string output of shape [N] (a label; `_bytes` ones in base64), one value per row, as
    MakeRowFormatJsonFromTensors writes it. It was a 500: an item of it is `bytes`, no array."""
    from tensorflow.core.framework import types_pb2

    from modelserver.rest_json import row_response

    outputs = {"label_bytes": np.array([b"ab", b"c"], object), "n": np.array([3, 4], np.int32)}
    dtypes = {"label_bytes": types_pb2.DT_STRING, "n": types_pb2.DT_INT32}
    assert json.loads(row_response(outputs, dtypes)) == {
        "predictions": [
            {"label_bytes": {"b64": "YWI="}, "n": 3},
            {"label_bytes": {"b64": "Yw=="}, "n": 4},
        ]
    }
    alone = row_response({"label": np.array([b"cat"], object)}, {"label": types_pb2.DT_STRING})
    assert json.loads(alone) == {"predictions": ["cat"]}

"""JSON <-> tensors for the REST API, following util/json_tensor.cc rule by rule
(reference §3.6): request parsing with TF Serving's error messages, and responses with its
float formatting (6 significant digits unless that does not round-trip)."""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math
import re
import struct
from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from modelserver.status import ServingError, invalid_argument
from modelserver.tensors import dtype_string, numpy_dtype

_DEBUG_STRING_LIMIT = 256  # kMaxJsonDebugStringBytes
_MAX_RANK = 64  # numpy.ndarray's maximum number of dimensions
# A \uD800-\uDBFF escape not followed by a \uDC00-\uDFFF one (an odd run of backslashes
# before it: an escaped backslash is not an escape). RapidJSON refuses it; Python's json
# accepts it, and the lone surrogate then fails every UTF-8 encoding of the request.
_LONE_HIGH_SURROGATE = re.compile(
    r"(?<!\\)((?:\\\\)*)(\\u[dD][89abAB][0-9a-fA-F]{2})(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
)
# absl::Base64Unescape, which TF Serving decodes "b64" with: whitespace anywhere is skipped
# (line-wrapped base64, as `base64` and MIME encoders write it), "=" or "." pads, and the
# padding is either absent or exactly what the last quantum needs.
_UTF8_BOM = b"\xef\xbb\xbf"
_B64_DATA = re.compile(r"[A-Za-z0-9+/ \t\n\v\f\r]*")
_B64_PADDING = re.compile(r"[=. \t\n\v\f\r]*")
_B64_SPACE = re.compile(r"[ \t\n\v\f\r]+")

# Python's json messages -> RapidJSON's GetParseError_En texts.
_PARSE_ERRORS = {
    "Expecting value": "Invalid value.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid control character at": "Invalid encoding in string.",
}


class _NumberTooBig(Exception):
    """RapidJSON's kParseErrorNumberTooBig: a number literal that no double can hold."""

    def __init__(self, literal: str) -> None:
        super().__init__(literal)
        self.literal = literal


def _rapidjson_float(literal: str) -> float:
    """Python reads 1e400 as inf; RapidJSON refuses it (NaN and Infinity are words, not here)."""
    value = float(literal)
    if math.isinf(value):
        raise _NumberTooBig(literal)
    return value


def _number_too_big(where: str = "") -> ServingError:
    return invalid_argument(f"JSON Parse error: Number too big to be stored in double.{where}")


# Python's json reads any number; RapidJSON refuses those no double can hold. The hook is on
# literals with a fraction or exponent only, and costs 0.6 -> 1.0 ms for 3,072 of them; on
# integers too it made a 3,072-integer image parse 3-4x slower. A too-big integer fails later
# instead, where it is converted (`predict_inputs`); before, it crashed the request there.
_DECODER = json.JSONDecoder(parse_float=_rapidjson_float)


# ----- request ------------------------------------------------------------------------------


def parse_document(body: bytes) -> Any:
    """ParseJson: NaN/Infinity allowed, bytes after the top-level value ignored
    (kParseNanAndInfFlag | kParseStopWhenDoneFlag)."""
    # RapidJSON reads through an EncodedInputStream, which skips a UTF-8 byte-order mark (a
    # file saved by Notepad and sent with curl -d @file starts with one).
    bom = len(_UTF8_BOM) if body.startswith(_UTF8_BOM) else 0  # offsets still count it
    body = body[bom:]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise invalid_argument(
            f"JSON Parse error: Invalid encoding in string. at offset: {error.start + bom}"
        ) from error
    stripped = text.lstrip(" \t\r\n")
    if not stripped:
        raise invalid_argument("JSON Parse error: The document is empty")
    skipped = len(text) - len(stripped) + bom
    if "\\u" in stripped and (lone := _LONE_HIGH_SURROGATE.search(stripped)):
        raise invalid_argument(
            "JSON Parse error: The surrogate pair in string is invalid. "
            f"at offset: {lone.start(2) + skipped}"
        )
    try:
        document, _ = _DECODER.raw_decode(stripped)
    except RecursionError as error:
        raise _too_deep() from error
    except _NumberTooBig as error:
        # The hook sees the literal, not where it was: its first occurrence is the offset,
        # exact unless the same characters also appear earlier, inside a string.
        offset = stripped.find(error.literal) + skipped
        raise _number_too_big(f" at offset: {offset}") from None
    except json.JSONDecodeError as error:
        message = next(
            (v for k, v in _PARSE_ERRORS.items() if error.msg.startswith(k)),
            "Missing a comma or ']' after an array element."
            if "delimiter" in error.msg
            else "Invalid value.",
        )
        offset = error.pos + skipped
        raise invalid_argument(f"JSON Parse error: {message} at offset: {offset}") from error
    except ValueError as error:  # an integer over Python's 4,300-digit limit for int()
        long_int = re.search(r"[0-9]{4301,}", stripped)
        where = f" at offset: {long_int.start() + skipped}" if long_int else ""
        raise _number_too_big(where) from error
    if not isinstance(document, dict):
        raise _format_error(document, "Is not object")
    return document


def signature_name_of(document: dict) -> str:
    """The optional "signature_name" (FillSignature)."""
    name = document.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid_argument(
            f"JSON Value: {debug_string(document)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name


def check_examples(document: dict) -> None:
    """FillClassifyRegressRequestFromJson (util/json_tensor.cc): the optional "context" and each
    of "examples" must read as a tf.Example, checked before the model is looked up (so a bad
    request to an unknown model is a 400, not a 404). Surprise kept: the missing-key message
    says "classify" for :regress too."""
    if "context" in document:
        _check_example(document["context"])
    if "examples" not in document:
        raise _format_error(
            document, "When method is classify, key 'examples' is expected and was not found"
        )
    examples = document["examples"]
    if not isinstance(examples, list):
        raise _format_error(document, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise _format_error(document, "'examples' value is an empty array")
    for example in examples:
        _check_example(example)


_INT64_RANGE = range(-(2**63), 2**63)


def _check_example(value: Any) -> None:
    """MakeExampleFromJsonObject: {feature: value or [values]}, one kind per feature."""
    if not isinstance(value, dict):
        raise invalid_argument(f"Example must be JSON object but got JSON {_json_type(value)}")
    for name, content in value.items():
        kind = None  # "bytes", "float" or "int64", set by the feature's first value
        for element in content if isinstance(content, list) else [content]:
            kind = _feature_kind(name, element, kind)


def _feature_kind(name: str, value: Any, kind: str | None) -> str:
    """AddValueToFeature: the kind `value` adds to feature `name`, or its error."""
    if isinstance(value, bool):
        wanted = "int64"
    elif isinstance(value, int) and not -(2**63) <= value < 2**64:
        wanted = "float"  # outside int64 and uint64 RapidJSON reads a double
    elif isinstance(value, int):
        wanted = "int64"
    elif isinstance(value, float):
        wanted = "float"
    elif isinstance(value, str) or _is_b64_object(value):
        wanted = "bytes"
    else:  # null, an array inside a feature, any other object
        raise invalid_argument(
            f"Feature: {name} has element with unexpected JSON type: {_json_type(value)}"
        )
    if kind not in (None, wanted):
        raise invalid_argument(f"Unexpected element type in feature: {name} expecting type: {kind}")
    if wanted == "int64" and not isinstance(value, bool) and value not in _INT64_RANGE:
        raise invalid_argument(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
    if isinstance(value, dict):
        _decode_b64(value)
    return wanted


def predict_inputs(
    document: dict, inputs: Mapping[str, meta_graph_pb2.TensorInfo]
) -> tuple[dict[str, np.ndarray], bool]:
    """(tensors by input alias, row_format) from "instances" or "inputs".

    RapidJSON parses iteratively; Python's parser and the recursive walk below do not, so a
    deeply nested document must become a 400 here rather than an unanswered request."""
    try:
        return _predict_inputs(document, inputs)
    except RecursionError as error:
        raise _too_deep() from error
    except OverflowError:  # an integer of 309+ digits met float(): no offset known here
        raise _number_too_big() from None


def _too_deep() -> ServingError:
    return invalid_argument("JSON Parse error: the document is nested too deeply")


def _predict_inputs(
    document: dict, inputs: Mapping[str, meta_graph_pb2.TensorInfo]
) -> tuple[dict[str, np.ndarray], bool]:
    if "instances" in document:
        if "inputs" in document:
            raise _format_error(
                document,
                "Not formatted correctly expecting only one of 'inputs' or 'instances' keys "
                "to exist ",
            )
        instances = document["instances"]
        if not isinstance(instances, list):
            raise _format_error(document, "Expecting 'instances' to be an list/array")
        if not instances:
            raise _format_error(document, "No values in 'instances' array")
        return _from_instances(instances, inputs), True
    if "inputs" in document:
        return _from_inputs(document["inputs"], inputs), False
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def _is_b64_object(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _is_element_object(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64_object(value)


def _from_instances(instances: list, inputs: Mapping[str, meta_graph_pb2.TensorInfo]):
    """FillTensorMapFromInstancesList: one element per batch item."""
    if not isinstance(instances[0], dict) and len(inputs) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input "
            "tensors required as per tensorinfo_map"
        )
    objects = _is_element_object(instances[0])
    names = sorted(inputs)
    items: dict[str, list] = {name: [] for name in names}
    shapes: dict[str, list[int]] = {}
    for index, element in enumerate(instances):
        if objects:
            if not _is_element_object(element):
                raise invalid_argument(
                    f"Expecting object but got list at item {index} of input list"
                )
            for key, value in element.items():
                try:
                    flat = _instance_item(value, key, inputs, shapes)
                except ServingError as error:
                    raise invalid_argument(
                        f"Failed to process element: {index} key: {key} of 'instances' list. "
                        f"Error: {_status_string(error)}"
                    ) from error
                items[key].extend(flat)
            if sorted(element) != names:
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{debug_string(element)} keys must be equal to: {','.join(names)}"
                )
        else:
            if _is_element_object(element):
                raise invalid_argument(
                    f"Expecting value/list but got object at item {index} of input list"
                )
            try:
                items[names[0]].extend(_instance_item(element, names[0], inputs, shapes))
            except ServingError as error:
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. "
                    f"Error: {_status_string(error)}"
                ) from error
    return {
        name: _to_array(items[name], [len(instances), *shapes[name]], inputs[name].dtype)
        for name in names
        if name in shapes
    }


def _instance_item(value, name: str, inputs, shapes: dict[str, list[int]]) -> list:
    """AddInstanceItem: every item of one input must have the same shape."""
    if name not in inputs:
        raise invalid_argument(f"JSON object: does not have named input: {name}")
    shape = _dense_shape(value)
    flat = _flat_values(value, inputs[name].dtype, shape)
    if name not in shapes:
        shapes[name] = shape
    elif math.prod(shapes[name]) != len(flat):
        raise invalid_argument(
            f"Expecting tensor size: {math.prod(shapes[name])} but got: {len(flat)}"
        )
    elif shapes[name] != shape:
        raise invalid_argument(
            f"Expecting shape [{','.join(map(str, shapes[name]))}] but got: "
            f"[{','.join(map(str, shape))}]"
        )
    return flat


def _from_inputs(value, inputs: Mapping[str, meta_graph_pb2.TensorInfo]) -> dict[str, np.ndarray]:
    """FillTensorMapFromInputsMap: whole tensors; extra keys are silently ignored."""
    if not isinstance(value, dict) or _is_b64_object(value):
        if len(inputs) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map"
            )
        name = next(iter(inputs))
        return {name: _tensor(value, inputs[name].dtype)}
    tensors = {}
    for name in sorted(inputs):
        if name not in value:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = _tensor(value[name], inputs[name].dtype)
    return tensors


def _tensor(value, dtype: int) -> np.ndarray:
    shape = _dense_shape(value)
    flat = _flat_values(value, dtype, shape)
    return _to_array(flat, shape, dtype)


def _dense_shape(value) -> list[int]:
    """GetDenseTensorShape: sizes along the first element of each level."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _flat_values(value, dtype: int, shape: list[int]) -> list:
    """The leaf values of a nest of lists, checked; the fast path first, then `_fill`."""
    flat = _numbers_in_bulk(value, dtype, shape)
    if flat is None:
        flat = []
        _fill(value, 0, dtype, shape, flat)
    return flat


def _numbers_in_bulk(value, dtype: int, shape: list[int]) -> list | None:
    """A rectangular nest of plain JSON numbers, flattened a level at a time, or None.

    A 32x32x3 image as JSON is 3,072 numbers. Checking each one through `_fill` and `_scalar`
    took about 1 ms; this takes about 0.2 ms, as long as `json.loads` itself. Anything this
    path does not accept (a ragged list, a bool, a float for an int dtype, an int out of
    range) returns None, and `_fill` then raises TF Serving's exact error for it.
    """
    allowed = _FAST_TYPES.get(dtype)
    if allowed is None:
        return None
    items = [value]
    for size in shape:
        if set(map(type, items)) != {list} or set(map(len, items)) != {size}:
            return None
        items = list(itertools.chain.from_iterable(items))
    if not set(map(type, items)) <= allowed:
        return None
    if dtype in _INT_RANGES and items:
        low, high = _INT_RANGES[dtype]
        if min(items) < low or max(items) > high:
            return None
    return items


def _fill(value, level: int, dtype: int, shape: list[int], out: list) -> None:
    """FillTensorProto: a dense, rectangular nest of lists with values at the leaves."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise invalid_argument(
                f"JSON Value: {debug_string(value)} found at incorrect level: {level + 1} in "
                f"the JSON DOM. Expected at level: {rank}"
            )
        if isinstance(value, dict):
            if dtype != types_pb2.DT_STRING:
                raise _type_error(value, dtype)
            out.append(_decode_b64(value))
        else:
            out.append(_scalar(value, dtype))
        return
    if level >= rank:
        raise invalid_argument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} "
            f"expected size: {shape[level]}"
        )
    for item in value:
        _fill(item, level + 1, dtype, shape, out)


_INT_RANGES = {
    types_pb2.DT_INT32: (-(2**31), 2**31 - 1),
    types_pb2.DT_INT16: (-(2**31), 2**31 - 1),  # RapidJSON IsInt(): any int32 is accepted
    types_pb2.DT_INT8: (-(2**31), 2**31 - 1),
    types_pb2.DT_UINT8: (-(2**31), 2**31 - 1),
    types_pb2.DT_INT64: (-(2**63), 2**63 - 1),
    types_pb2.DT_UINT32: (0, 2**32 - 1),
    types_pb2.DT_UINT64: (0, 2**64 - 1),
}

# What `_numbers_in_bulk` takes in bulk: json gives exactly int or float for numbers, and bool
# (a subclass of int) is its own type here, so `True` never passes for a number.
_FAST_TYPES = {
    types_pb2.DT_FLOAT: {int, float},
    types_pb2.DT_DOUBLE: {int, float},
    **{dtype: {int} for dtype in _INT_RANGES},
}


def _scalar(value, dtype: int):
    """AddValueToTensor: JSON type must match the dtype exactly (1.0 is not an int)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
        if not is_number:
            raise _type_error(value, dtype)
        return float(value)
    if dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
            raise _type_error(value, dtype)
        return value
    if dtype == types_pb2.DT_BOOL:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    if dtype == types_pb2.DT_STRING:
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8", "surrogatepass")  # a lone \uDC00: RapidJSON's 3 bytes
    raise ServingError(
        grpc.StatusCode.UNIMPLEMENTED,
        f"Conversion of JSON Value: {debug_string(value)} to type: {dtype_string(dtype)}",
    )


def _decode_b64(value) -> bytes:
    """JsonDecodeBase64Object: exactly {"b64": "<standard base64>"} (URL-safe fails, #1141)."""
    if not _is_b64_object(value):
        raise invalid_argument(
            f"JSON Value: {debug_string(value)} not formatted correctly for base64 data"
        )
    decoded = absl_base64_unescape(value["b64"])
    if decoded is None:
        raise invalid_argument("Unable to base64 decode")
    return decoded


def absl_base64_unescape(text: str) -> bytes | None:
    """absl::Base64Unescape (absl/strings/escaping.cc): the bytes, or None where it fails."""
    data = _B64_DATA.match(text).group()
    padding = text[len(data) :]
    data = _B64_SPACE.sub("", data)
    if not _B64_PADDING.fullmatch(padding) or len(data) % 4 == 1:
        return None
    equals = sum(ch in "=." for ch in padding)
    if equals not in (0, {0: 0, 2: 2, 3: 1}[len(data) % 4]):
        return None
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4))
    except binascii.Error:
        return None


def _to_array(flat: list, shape: list[int], dtype: int) -> np.ndarray:
    if len(shape) > _MAX_RANK:  # numpy's limit (TF's is 254): a 400, not a ValueError
        raise invalid_argument(f"Tensor of rank {len(shape)} exceeds the maximum of {_MAX_RANK}")
    np_dtype = numpy_dtype(dtype)
    if np_dtype.kind == "O":
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(shape)
    # Integers wider than the dtype wrap, as TF's int_val -> uint8 conversion does.
    # Unsigned ones too ([-1] for uint8 is 255): numpy refuses out-of-range Python ints.
    narrow_unsigned = np_dtype.kind == "u" and np_dtype.itemsize < 8
    wide = np.int64 if np_dtype.kind == "i" or narrow_unsigned else None
    return np.asarray(flat, dtype=wide or np_dtype).astype(np_dtype).reshape(shape)


def _type_error(value, dtype: int) -> ServingError:
    return invalid_argument(
        f"JSON Value: {debug_string(value)} Type: {_json_type(value)} is not of expected "
        f"type: {dtype_string(dtype)}"
    )


def _json_type(value) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _format_error(value, message: str) -> ServingError:
    return invalid_argument(f"JSON Value: {debug_string(value)} {message}")


def _status_string(error: ServingError) -> str:
    return f"{error.code.name}: {error.message}"  # absl::Status::ToString()


def debug_string(value) -> str:
    """JsonValueToDebugString: compact JSON cut at 256 bytes."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    except RecursionError:  # error messages must not fail on the values they describe
        return "(nested too deeply to show)"
    return text[:_DEBUG_STRING_LIMIT]


# ----- response -----------------------------------------------------------------------------


def _float32_round_trips(text: str, value: float) -> bool:
    return struct.unpack("f", struct.pack("f", float(text)))[0] == value


def format_decimal(value: float, is_float32: bool) -> str:
    """WriteDecimal: %g (6 digits); max_digits10 when that does not round-trip; whole
    numbers get ".0"; NaN / Infinity / -Infinity for non-finite values."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = f"{value:g}"
    round_trips = _float32_round_trips(text, value) if is_float32 else float(text) == value
    if not round_trips:
        text = ("%.9g" if is_float32 else "%.17g") % value
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _value_writer(dtype: int, as_b64: bool):
    if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
        is_float32 = dtype == types_pb2.DT_FLOAT
        return lambda v: format_decimal(v, is_float32)
    if dtype == types_pb2.DT_BOOL:
        return lambda v: "true" if v else "false"
    if dtype == types_pb2.DT_STRING:
        if as_b64:
            return lambda v: '{"b64": "' + base64.b64encode(v).decode("ascii") + '"}'
        return lambda v: json.dumps(v.decode("utf-8", errors="replace"), ensure_ascii=False)
    if dtype in _INT_RANGES:
        return str
    raise invalid_argument(f"Failed to write JSON value for tensor type: {dtype_string(dtype)}")


def _tensor_text(value: np.ndarray | np.generic | bytes, writer) -> str:
    if np.ndim(value) == 0:  # an item of a [N] string output is plain `bytes`
        return writer(value.item() if isinstance(value, np.ndarray | np.generic) else value)
    if value.ndim == 1:
        return "[" + ", ".join(writer(v) for v in value.tolist()) + "]"
    return "[" + ", ".join(_tensor_text(row, writer) for row in value) + "]"


def _writers(outputs: Mapping[str, np.ndarray], dtypes: Mapping[str, int]):
    # IsNamedTensorBytes: DT_STRING outputs whose alias ends in "_bytes" are base64 objects.
    return {
        alias: _value_writer(dtypes[alias], dtypes[alias] == types_pb2.DT_STRING
                             and alias.endswith("_bytes"))
        for alias in outputs
    }  # fmt: skip


def row_response(outputs: Mapping[str, np.ndarray], dtypes: Mapping[str, int]) -> str:
    """MakeRowFormatJsonFromTensors: {"predictions": [...]}, one entry per batch item."""
    writers = _writers(outputs, dtypes)
    batch = -1
    for alias, value in outputs.items():
        if value.ndim == 0:
            raise invalid_argument(f"Tensor name: {alias} has no shape information ")
        if batch >= 0 and value.shape[0] != batch:
            raise invalid_argument(
                f"Tensor name: {alias} has inconsistent batch size: {value.shape[0]} "
                f"expecting: {batch}"
            )
        batch = value.shape[0]
    items = []
    for index in range(max(batch, 0)):
        if len(outputs) > 1:
            fields = ", ".join(
                f"{json.dumps(alias)}: {_tensor_text(value[index], writers[alias])}"
                for alias, value in outputs.items()
            )
            items.append("{" + fields + "}")
        else:
            alias, value = next(iter(outputs.items()))
            items.append(_tensor_text(value[index], writers[alias]))
    return '{\n    "predictions": [' + ",\n        ".join(items) + "]\n}"


def columnar_response(outputs: Mapping[str, np.ndarray], dtypes: Mapping[str, int]) -> str:
    """MakeColumnarFormatJsonFromTensors: {"outputs": {alias: tensor}} or the bare tensor."""
    writers = _writers(outputs, dtypes)
    if len(outputs) == 1:
        alias, value = next(iter(outputs.items()))
        return '{\n    "outputs": ' + _tensor_text(value, writers[alias]) + "\n}"
    fields = ",\n        ".join(
        f"{json.dumps(alias)}: {_tensor_text(value, writers[alias])}"
        for alias, value in outputs.items()
    )
    return '{\n    "outputs": {\n        ' + fields + "\n    }\n}"


def body_bytes(text: str) -> bytes:
    """A response body as bytes. A lone low surrogate from the request (RapidJSON accepts
    "\\udc00") can reach an answer or an error's "JSON Value: ..." text: its 3 UTF-8 bytes
    go out, as RapidJSON writes them, where strict UTF-8 would raise."""
    return text.encode("utf-8", "surrogatepass")


def error_body(message: str) -> bytes:
    """MakeJsonFromStatus: a pretty-printed {"error": message}."""
    return body_bytes('{\n    "error": ' + json.dumps(message, ensure_ascii=False) + "\n}")

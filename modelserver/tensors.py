"""TensorProto <-> numpy conversion on the request path (gRPC and warm-up records).

Written out instead of tf.make_ndarray / tf.make_tensor_proto because those are slow for small
tensors and make_tensor_proto writes `tensor_content`, while TF Serving answers with the typed
`*_val` fields unless --enable_serialization_as_tensor_content (reference §4).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from modelserver.status import invalid_argument

# DataType -> the repeated field holding its values when tensor_content is empty.
_VALUE_FIELD = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_BFLOAT16: "half_val",
}


# The numpy type of each repeated field, as the proto declares it.
_FIELD_DTYPE = {
    "float_val": np.float32, "double_val": np.float64, "int_val": np.int32,
    "int64_val": np.int64, "uint32_val": np.uint32, "uint64_val": np.uint64,
    "bool_val": np.bool_, "half_val": np.int32,
}  # fmt: skip
_MAX_FILLED_BYTES = 2**31


def dtype_string(dtype: int) -> str:
    """TensorFlow's DataTypeString(): "float", "uint8", "string" (as TF errors print them)."""
    name = tf.dtypes.as_dtype(dtype).name
    return {"float32": "float", "float64": "double", "float16": "half"}.get(name, name)


def numpy_dtype(dtype: int) -> np.dtype:
    if dtype == types_pb2.DT_STRING:
        return np.dtype(object)
    return np.dtype(tf.dtypes.as_dtype(dtype).as_numpy_dtype)


def proto_to_ndarray(proto: tensor_pb2.TensorProto, alias: str) -> np.ndarray:
    """Decodes request input `alias` as TensorFlow's Tensor::FromProto does: `tensor_content`
    must hold exactly the tensor's bytes; typed values may be fewer (the last one repeats),
    none (zeros) or more (the rest ignored). What it refuses is INVALID_ARGUMENT "tensor
    parsing error: <alias>" (tensorflow/cc/saved_model/util.cc GetInputValues)."""
    shape = [dim.size for dim in proto.tensor_shape.dim]
    if any(size < 0 for size in shape):
        raise _parsing_error(alias)
    count = int(np.prod(shape, dtype=np.int64))
    dtype = proto.dtype
    if dtype in (types_pb2.DT_HALF, types_pb2.DT_BFLOAT16) or dtype not in _VALUE_FIELD:
        try:
            return tf.make_ndarray(proto)
        except (TypeError, ValueError) as error:
            raise _parsing_error(alias) from error
    np_dtype = numpy_dtype(dtype)
    if proto.tensor_content:
        if dtype == types_pb2.DT_STRING or len(proto.tensor_content) != count * np_dtype.itemsize:
            raise _parsing_error(alias)
        return np.frombuffer(proto.tensor_content, dtype=np_dtype).reshape(shape)
    field = _VALUE_FIELD[dtype]
    values = getattr(proto, field)
    if dtype == types_pb2.DT_STRING:
        flat = np.empty(len(values), dtype=object)
        flat[:] = list(values)
    else:
        # Read as the proto field's own type, then cast as C++ does: int_val 300 for a uint8
        # is 44, -1 is 255 (numpy refuses to convert them directly).
        flat = np.asarray(values, dtype=_FIELD_DTYPE[field]).astype(np_dtype)
    if flat.size >= count:
        return flat[:count].reshape(shape)
    # Zeros or the last value repeated: a few bytes can ask for any size. Past what a proto
    # could carry (2 GiB), or what this machine can hold, it is a parsing error as in TF.
    if count * np_dtype.itemsize > _MAX_FILLED_BYTES:
        raise _parsing_error(alias)
    fill = flat[-1] if flat.size else (b"" if dtype == types_pb2.DT_STRING else 0)
    try:
        return np.concatenate([flat, np.full(count - flat.size, fill, np_dtype)]).reshape(shape)
    except (MemoryError, ValueError) as error:
        raise _parsing_error(alias) from error


def _parsing_error(alias: str):
    return invalid_argument(f"tensor parsing error: {alias}")


def ndarray_to_proto(array: np.ndarray, dtype: int) -> tensor_pb2.TensorProto:
    """Encodes a response tensor with typed `*_val` fields, as TF Serving does by default."""
    proto = tensor_pb2.TensorProto(
        dtype=dtype,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape]
        ),
    )
    field = _VALUE_FIELD.get(dtype)
    if field is None:
        proto.CopyFrom(tf.make_tensor_proto(array))
        return proto
    if dtype in (types_pb2.DT_HALF, types_pb2.DT_BFLOAT16):
        # half_val holds each value's 16 bits (framework/tensor.cc's ProtoHelper), as TF
        # Serving writes them; make_tensor_proto would fill tensor_content instead.
        array = np.ascontiguousarray(array).view(np.uint16)
    getattr(proto, field).extend(array.ravel().tolist())
    return proto

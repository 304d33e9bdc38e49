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
    values = getattr(proto, _VALUE_FIELD[dtype])
    if dtype == types_pb2.DT_STRING:
        flat = np.empty(len(values), dtype=object)
        flat[:] = list(values)
    else:
        flat = np.asarray(values, dtype=np_dtype)
    if flat.size >= count:
        return flat[:count].reshape(shape)
    if flat.size == 0:
        return np.full(shape, b"" if dtype == types_pb2.DT_STRING else 0, dtype=np_dtype)
    return np.concatenate([flat, np.full(count - flat.size, flat[-1], np_dtype)]).reshape(shape)


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
    if field is None or dtype in (types_pb2.DT_HALF, types_pb2.DT_BFLOAT16):
        proto.CopyFrom(tf.make_tensor_proto(array))
        return proto
    getattr(proto, field).extend(array.ravel().tolist())
    return proto

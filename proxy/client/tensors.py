"""numpy <-> tensorflow.TensorProto without TensorFlow (only the dtypes the proxy uses)."""

from __future__ import annotations

import math

import numpy as np

from proxy.protos_gen import tensorflow_subset_pb2 as tf_pb2

_NUMPY_TO_DTYPE = {np.dtype(np.uint8): tf_pb2.DT_UINT8, np.dtype(np.float32): tf_pb2.DT_FLOAT}
_DTYPE_TO_NUMPY = {v: k for k, v in _NUMPY_TO_DTYPE.items()}


def to_tensor_proto(array: np.ndarray) -> tf_pb2.TensorProto:
    """Pack a numeric array as raw `tensor_content` bytes (what tf.make_tensor_proto does)."""
    proto = tf_pb2.TensorProto(dtype=_NUMPY_TO_DTYPE[array.dtype])
    proto.tensor_shape.dim.extend(tf_pb2.TensorShapeProto.Dim(size=n) for n in array.shape)
    proto.tensor_content = np.ascontiguousarray(array).tobytes()
    return proto


def to_numpy(proto: tf_pb2.TensorProto) -> np.ndarray:
    """Unpack float or string tensors from typed `*_val` fields or `tensor_content`."""
    shape = [d.size for d in proto.tensor_shape.dim]
    if proto.dtype == tf_pb2.DT_STRING:
        values = np.array([s.decode("utf-8") for s in proto.string_val], dtype=object)
    elif proto.dtype in _DTYPE_TO_NUMPY:
        dtype = _DTYPE_TO_NUMPY[proto.dtype]
        if proto.tensor_content:
            values = np.frombuffer(proto.tensor_content, dtype=dtype)
        else:
            field = proto.float_val if dtype == np.float32 else proto.int_val
            values = np.asarray(field, dtype=dtype)
    else:
        raise ValueError(f"unsupported tensor dtype {tf_pb2.DataType.Name(proto.dtype)}")
    size = math.prod(shape)
    if values.size == 1 and size != 1:  # TF may store a constant tensor as one value
        values = np.full(size, values[0], dtype=values.dtype)
    return values.reshape(shape)

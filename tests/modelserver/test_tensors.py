"""Response tensors as TF Serving writes them by default: typed `*_val` fields (reference §4)."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tensorflow.core.framework import types_pb2  # noqa: E402

from modelserver.tensors import ndarray_to_proto  # noqa: E402


@pytest.mark.parametrize(
    ("dtype", "enum"),
    [(np.float16, types_pb2.DT_HALF), (tf.bfloat16.as_numpy_dtype, types_pb2.DT_BFLOAT16)],
)
def test_half_precision_outputs_fill_half_val_with_their_bits(dtype, enum):
    """They came back in tensor_content, which a client reading half_val found empty."""
    array = np.array([[0.5, 2.0], [-1.0, 3.25]], dtype)
    proto = ndarray_to_proto(array, enum)
    assert proto.tensor_content == b""
    assert list(proto.half_val) == array.view(np.uint16).ravel().tolist()
    assert [d.size for d in proto.tensor_shape.dim] == [2, 2]
    np.testing.assert_array_equal(tf.make_ndarray(proto), array)  # as a client decodes it

"""Our hand-written protos are byte-compatible with TensorFlow Serving's real ones.

The real `tensorflow_serving.apis` modules (they import TensorFlow) are the reference: a
request we serialize must parse there with the same values, and a response the real server
would send must parse with ours. Both live in one process here, which also proves our
private descriptor pool does not clash with TensorFlow's.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from proxy.client.base import ModelTarget
from proxy.client.grpc_client import _model_spec
from proxy.client.tensors import to_numpy, to_tensor_proto
from proxy.protos_gen import serving_subset_pb2 as ours

tf_serving = pytest.importorskip("tensorflow_serving.apis.predict_pb2")


def test_predict_request_parses_with_the_real_proto() -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    request = ours.PredictRequest(model_spec=_model_spec(ModelTarget("cifar10", 7), "pixels"))
    request.inputs["images"].CopyFrom(to_tensor_proto(pixels))
    request.output_filter.extend(["classes", "scores"])

    real = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert real.model_spec.name == "cifar10"
    assert real.model_spec.version.value == 7
    assert real.model_spec.signature_name == "pixels"
    assert list(real.output_filter) == ["classes", "scores"]
    assert np.array_equal(tf.make_ndarray(real.inputs["images"]), pixels)


def test_label_goes_in_the_version_label_field() -> None:
    from tensorflow_serving.apis import model_pb2

    spec = _model_spec(ModelTarget("cifar10", label="canary"))
    real = model_pb2.ModelSpec.FromString(spec.SerializeToString())
    assert real.WhichOneof("version_choice") == "version_label"
    assert real.version_label == "canary"


def test_real_predict_response_parses_with_ours() -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    real = predict_pb2.PredictResponse()
    real.model_spec.name = "cifar10"
    real.model_spec.version.value = 3
    real.outputs["classes"].CopyFrom(tf.make_tensor_proto([["cat", "dog"]]))
    scores = np.array([[0.75, 0.25]], dtype=np.float32)
    real.outputs["scores"].CopyFrom(tf.make_tensor_proto(scores))
    # TF Serving answers with typed float_val fields unless told otherwise (reference §4).
    typed = tf.make_tensor_proto(scores)
    typed.ClearField("tensor_content")
    typed.float_val.extend(scores.ravel().tolist())
    real.outputs["probabilities"].CopyFrom(typed)

    parsed = ours.PredictResponse.FromString(real.SerializeToString())
    assert parsed.model_spec.version.value == 3
    assert to_numpy(parsed.outputs["classes"]).tolist() == [["cat", "dog"]]
    assert np.array_equal(to_numpy(parsed.outputs["scores"]), scores)
    assert np.array_equal(to_numpy(parsed.outputs["probabilities"]), scores)


def test_model_status_response_parses_with_ours() -> None:
    from tensorflow_serving.apis import get_model_status_pb2

    real = get_model_status_pb2.GetModelStatusResponse()
    row = real.model_version_status.add(version=2, state=30)
    row.status.error_message = ""
    real.model_version_status.add(version=1, state=50).status.error_message = "unloaded"
    parsed = ours.GetModelStatusResponse.FromString(real.SerializeToString())
    states = [ours.ModelVersionStatus.State.Name(r.state) for r in parsed.model_version_status]
    assert [r.version for r in parsed.model_version_status] == [2, 1]
    assert states == ["AVAILABLE", "END"]
    assert parsed.model_version_status[1].status.error_message == "unloaded"


def test_method_paths_match_tf_serving() -> None:
    from tensorflow_serving.apis import model_service_pb2, prediction_service_pb2

    real_services = {
        s.full_name: {m.name for m in s.methods}
        for s in (
            prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"],
            model_service_pb2.DESCRIPTOR.services_by_name["ModelService"],
        )
    }
    for service in ours.DESCRIPTOR.services_by_name.values():
        assert service.full_name in real_services
        assert {m.name for m in service.methods} <= real_services[service.full_name]


def test_constant_tensor_is_broadcast() -> None:
    from proxy.protos_gen import tensorflow_subset_pb2 as tf_pb2

    proto = tf_pb2.TensorProto(dtype=tf_pb2.DT_FLOAT, float_val=[0.5])
    proto.tensor_shape.dim.add(size=2)
    proto.tensor_shape.dim.add(size=3)
    assert to_numpy(proto).tolist() == [[0.5] * 3] * 2


def test_the_proxy_never_imports_tensorflow() -> None:
    """Importing and building the app must not pull in TensorFlow (memory, start-up)."""
    code = (
        "import sys; from proxy.app import create_app; create_app();"
        "import proxy.client.grpc_client, proxy.client.rest_client;"
        "heavy = ('tensorflow', 'tensorflow_serving', 'keras');"
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

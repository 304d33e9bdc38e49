"""gRPC PredictionService and ModelService over a real channel (reference §4)."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from image_files import random_image
from modelserver_harness import MODEL, bytes_request, metric, pixels_request

tf = pytest.importorskip("tensorflow")
from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from modelserver.flags import channel_arguments  # noqa: E402
from modelserver.grpc_api import start_grpc_server  # noqa: E402

IMAGES = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value


def test_predict_pixels_fills_model_spec_and_typed_outputs(api_server):
    response = api_server.prediction_stub().Predict(pixels_request(IMAGES), timeout=30)
    assert response.model_spec.name == MODEL
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "pixels"
    assert set(response.outputs) == {"probabilities", "classes", "scores"}
    scores = response.outputs["scores"]
    assert scores.tensor_content == b"" and len(scores.float_val) == 30  # typed *_val fields
    assert [d.size for d in scores.tensor_shape.dim] == [3, 10]
    probabilities = tf.make_ndarray(response.outputs["probabilities"])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    assert len(response.outputs["classes"].string_val) == 30


def test_default_signature_decodes_image_bytes(api_server):
    request = bytes_request(random_image("PNG"), random_image("JPEG", (64, 48)))
    response = api_server.prediction_stub().Predict(request, timeout=30)
    assert response.model_spec.signature_name == "serving_default"
    assert [d.size for d in response.outputs["classes"].tensor_shape.dim] == [2, 10]


def test_rest_and_grpc_give_the_same_answer(api_server):
    import requests

    grpc_scores = tf.make_ndarray(
        api_server.prediction_stub().Predict(pixels_request(IMAGES), timeout=30).outputs["scores"]
    )
    body = {"signature_name": "pixels", "inputs": IMAGES.tolist()}
    rest = requests.post(f"{api_server.rest}/v1/models/{MODEL}:predict", json=body, timeout=30)
    np.testing.assert_allclose(np.array(rest.json()["outputs"]["scores"]), grpc_scores, rtol=1e-6)


def test_output_filter_limits_outputs(api_server):
    request = pixels_request(IMAGES)
    request.output_filter.append("scores")
    response = api_server.prediction_stub().Predict(request, timeout=30)
    assert set(response.outputs) == {"scores"}


def _with_filter(*aliases: str) -> predict_pb2.PredictRequest:
    request = pixels_request(IMAGES)
    request.output_filter.extend(aliases)
    return request


def _extra_input() -> predict_pb2.PredictRequest:
    request = pixels_request(IMAGES)
    request.inputs["extra"].CopyFrom(tf.make_tensor_proto([1]))
    return request


def _renamed_input() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "pixels"
    request.inputs["pictures"].CopyFrom(tf.make_tensor_proto(IMAGES))
    return request


def _no_spec() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(IMAGES))
    return request


def _content_cut_short() -> predict_pb2.PredictRequest:
    """tensor_content one byte short of its shape (np.frombuffer raised: UNKNOWN, uncounted)."""
    request = pixels_request(IMAGES)
    request.inputs["images"].tensor_content = IMAGES.tobytes()[:-1]
    return request


def _huge_fill() -> predict_pb2.PredictRequest:
    """A few bytes asking for 300 GB of zero-filled pixels."""
    request = _typed_values([])
    request.inputs["images"].tensor_shape.dim[0].size = 10**8
    return request


def _typed_values(values: list[int], extra_input: bool = False) -> predict_pb2.PredictRequest:
    """One image [1,32,32,3] whose pixels come as `values` in int_val, however many."""
    request = pixels_request(IMAGES[:1])
    tensor = request.inputs["images"]
    tensor.ClearField("tensor_content")
    tensor.int_val.extend(values)
    if extra_input:
        request.inputs["extra"].CopyFrom(tf.make_tensor_proto([1]))
    return request


PREDICT_ERRORS = [
    # (request factory, gRPC code, message fragment) - reference §4 table
    (_no_spec, grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
    (lambda: pixels_request(IMAGES, name=""), grpc.StatusCode.INVALID_ARGUMENT,
     "ModelSpec has no name specified."),
    (lambda: pixels_request(IMAGES, name="nope"), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Latest(nope)"),
    (lambda: pixels_request(IMAGES, version=9), grpc.StatusCode.NOT_FOUND,
     f"Servable not found for request: Specific({MODEL}, 9)"),
    (lambda: pixels_request(IMAGES, label="nope"), grpc.StatusCode.INVALID_ARGUMENT,
     "Unrecognized servable version label: nope"),
    (lambda: pixels_request(IMAGES, signature="nope"), grpc.StatusCode.FAILED_PRECONDITION,
     'Serving signature key "nope" not found.'),
    (_extra_input, grpc.StatusCode.INVALID_ARGUMENT,
     "input size does not match signature: 2!=1 len({extra,images}) != len({images}). "
     "Sent extra: {extra}. Missing but required: {}."),
    (_renamed_input, grpc.StatusCode.INVALID_ARGUMENT, "Signature input alias: images"),
    (lambda: pixels_request(IMAGES.astype(np.float32)), grpc.StatusCode.INVALID_ARGUMENT,
     "Expects arg[0] to be uint8 but float is provided"),
    (lambda: pixels_request(IMAGES[0]), grpc.StatusCode.INVALID_ARGUMENT,
     "Input images has shape [32,32,3]"),
    (lambda: bytes_request(b"not an image"), grpc.StatusCode.INVALID_ARGUMENT,
     "Unknown image file format"),
    (_content_cut_short, grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: images"),
    (_huge_fill, grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: images"),
    # The names are checked before a tensor is parsed (VerifyRequestInputsSize first).
    (lambda: _typed_values([], extra_input=True), grpc.StatusCode.INVALID_ARGUMENT,
     "input size does not match signature: 2!=1"),
    (lambda: _with_filter("nope"), grpc.StatusCode.INVALID_ARGUMENT,
     "output tensor alias not found in signature: nope"),
    (lambda: _with_filter("scores", "scores"), grpc.StatusCode.INVALID_ARGUMENT,
     "duplicate output tensor alias: scores"),
    (lambda: pixels_request(np.zeros((700, 32, 32, 3), np.uint8)),  # over --max_request_bytes
     grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "code", "message"), PREDICT_ERRORS)
def test_predict_errors_have_tf_serving_codes(api_server, make, code, message):
    error = rpc_error(api_server.prediction_stub().Predict, make())
    assert error.code() == code
    assert message in error.details()


def test_typed_values_fill_the_shape_as_tensorflow_does(api_server):
    """Tensor::FromProto: no values are zeros, too few repeat the last one, too many are cut
    (they were refused)."""
    stub = api_server.prediction_stub()

    def scores(request) -> np.ndarray:
        return tf.make_ndarray(stub.Predict(request, timeout=30).outputs["probabilities"])

    full = IMAGES[:1].ravel().tolist()
    padded = np.array([7, 9] + [9] * (len(full) - 2), np.uint8).reshape(1, 32, 32, 3)
    np.testing.assert_array_equal(scores(_typed_values([])), scores(pixels_request(0 * IMAGES[:1])))
    np.testing.assert_array_equal(scores(_typed_values([7, 9])), scores(pixels_request(padded)))
    np.testing.assert_array_equal(scores(_typed_values([*full, 1, 2])), scores(_typed_values(full)))
    # Out of uint8's range, cast as C++ casts (numpy refused: an INTERNAL error).
    wrapped = np.array([44] + [255] * (len(full) - 1), np.uint8).reshape(1, 32, 32, 3)
    np.testing.assert_array_equal(scores(_typed_values([300, -1])), scores(pixels_request(wrapped)))


def test_metadata_packs_a_signature_def_map(api_server):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    request.metadata_field.append("signature_def")
    response = api_server.prediction_stub().GetModelMetadata(request, timeout=30)
    assert (response.model_spec.name, response.model_spec.version.value) == (MODEL, 1)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    assert {"serving_default", "pixels"} <= set(signature_map.signature_def)
    pixels = signature_map.signature_def["pixels"]
    assert pixels.inputs["images"].dtype == tf.uint8.as_datatype_enum


@pytest.mark.parametrize(
    ("fields", "message"),
    [([], "GetModelMetadataRequest must specify at least one metadata_field"),
     (["signature_def", "foo"], "Metadata field foo is not supported")],
)  # fmt: skip
def test_metadata_field_is_checked(api_server, fields, message):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    request.metadata_field.extend(fields)
    error = rpc_error(api_server.prediction_stub().GetModelMetadata, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_model_status_over_grpc(api_server):
    stub = api_server.model_stub()
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    (status,) = stub.GetModelStatus(request, timeout=30).model_version_status
    assert (status.version, status.state) == (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    assert status.status.error_code == 0
    request.model_spec.version.value = 7
    error = rpc_error(stub.GetModelStatus, request)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.NOT_FOUND, f"Could not find version 7 of model {MODEL}"
    )  # fmt: skip
    missing = rpc_error(stub.GetModelStatus, get_model_status_pb2.GetModelStatusRequest())
    assert (missing.code(), missing.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Missing ModelSpec",
    )


CLASSIFY = "tensorflow/serving/classify"


def test_classify_regress_and_multi_inference_check_like_tf_serving(api_server):
    """Our signatures are predict-style, so TF Serving's own checks answer before the (not
    implemented) call would run (reference §4 table, classifier.cc / regressor.cc,
    multi_inference.cc)."""
    stub = api_server.prediction_stub()

    def request(kind, model: str = MODEL, signature: str = ""):
        message = kind()
        message.model_spec.name = model
        message.model_spec.signature_name = signature
        return message

    classify, regress = classification_pb2.ClassificationRequest, regression_pb2.RegressionRequest

    def multi(*tasks: tuple[str, str, str]) -> inference_pb2.MultiInferenceRequest:
        message = inference_pb2.MultiInferenceRequest()
        for model, signature, method in tasks:
            task = message.tasks.add(method_name=method)
            task.model_spec.name, task.model_spec.signature_name = model, signature
        return message

    cases = [
        (stub.Classify, request(classify), grpc.StatusCode.INVALID_ARGUMENT,
         "Expected one or two output Tensors, found 3"),
        (stub.Regress, request(regress), grpc.StatusCode.INVALID_ARGUMENT,
         "Expected one output Tensor."),
        (stub.Classify, request(classify, signature="nope"), grpc.StatusCode.INVALID_ARGUMENT,
         "No signature was found with the name: nope"),
        (stub.Regress, request(regress, model="nope"), grpc.StatusCode.NOT_FOUND,
         "Servable not found for request: Latest(nope)"),
        (stub.Classify, classify(), grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
        (stub.MultiInference, inference_pb2.MultiInferenceRequest(),
         grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
        (stub.MultiInference, multi(("nope", "", CLASSIFY)), grpc.StatusCode.NOT_FOUND,
         "Servable not found for request: Latest(nope)"),
        (stub.MultiInference, multi((MODEL, "", CLASSIFY)), grpc.StatusCode.INVALID_ARGUMENT,
         "Expected one or two output Tensors, found 3"),
        (stub.MultiInference, multi((MODEL, "pixels", "tensorflow/serving/predict")),
         grpc.StatusCode.UNIMPLEMENTED,
         "Unsupported signature method_name: tensorflow/serving/predict"),
        # (A second task's checks, duplicate signature or another model, come after the
        # first task's, which no signature of ours passes.)
        (stub.MultiInference, multi((MODEL, "nope", CLASSIFY)), grpc.StatusCode.INVALID_ARGUMENT,
         "Requested signature not found in model graph: nope"),
    ]  # fmt: skip
    for call, message, code, details in cases:
        error = rpc_error(call, message)
        assert (error.code(), error.details()) == (code, details)


def test_reload_config_rejects_invalid_configs_and_keeps_serving(api_server):
    stub = api_server.model_stub()
    empty = model_management_pb2.ReloadConfigRequest()
    error = rpc_error(stub.HandleReloadConfigRequest, empty)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Only ModelConfigList is currently supported" in error.details()
    relative = model_management_pb2.ReloadConfigRequest()
    relative.config.model_config_list.config.add(
        name=MODEL, base_path="models/cifar10", model_platform="tensorflow"
    )
    error = rpc_error(stub.HandleReloadConfigRequest, relative)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "to have an absolute path" in error.details()
    assert api_server.prediction_stub().Predict(pixels_request(IMAGES), timeout=30).outputs


def test_grpc_requests_are_counted_in_metrics(api_server):
    # Counted from a page read first: the shared server has answered other tests already.
    counts = [
        ("request_latency_count", 'model_name="cifar10",API="Predict",entrypoint="GRPC"'),
        ("request_count", 'model_name="nope",status="NOT_FOUND"'),
    ]
    before = api_server.metrics()
    api_server.prediction_stub().Predict(pixels_request(IMAGES), timeout=30)
    rpc_error(api_server.prediction_stub().Predict, pixels_request(IMAGES, name="nope"))
    for name, labels in counts:
        api_server.wait_metric(name, labels, metric(before, name, labels) + 1)


def test_a_model_name_with_a_newline_leaves_the_metrics_page_readable(api_server):
    """A request for model "evil\\nname" wrote a raw newline into a label value, and the
    Prometheus parser then refused the whole page (the scraper lost every metric)."""
    from prometheus_client.parser import text_string_to_metric_families

    rpc_error(api_server.prediction_stub().Predict, pixels_request(IMAGES, name="evil\nname"))
    labels = 'model_name="evil\\nname",status="NOT_FOUND"'
    page = api_server.wait_metric("request_count", labels, 1)
    names = {sample.labels.get("model_name") for family in text_string_to_metric_families(page)
             for sample in family.samples}  # fmt: skip
    assert "evil\nname" in names


def test_health_service_reports_serving_under_tf_servings_service_names(api_server):
    """--enable_grpc_healthcheck_service (off by default): the server ("") and the services
    model_servers/server.cc names, unqualified, are SERVING once the port is open."""
    stub = health_pb2_grpc.HealthStub(api_server.channel())
    for service in ("", "ModelService", "PredictionService"):
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
        assert response.status == health_pb2.HealthCheckResponse.SERVING, service
    unknown = health_pb2.HealthCheckRequest(service="tensorflow.serving.PredictionService")
    assert rpc_error(stub.Check, unknown).code() == grpc.StatusCode.NOT_FOUND


class _PeerRecorder(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Answers Predict with nothing and notes the client's address and port."""

    def __init__(self) -> None:
        self.peers: set[str] = set()

    def Predict(self, request, context):
        self.peers.add(context.peer())
        return predict_pb2.PredictResponse()


def test_channel_arguments_reach_the_grpc_server():
    """k8s/tfserving.yaml ages out gRPC connections so that clients move off a draining pod.
    With a 200 ms age the client's connection is replaced (a new client port) again and again,
    and no call fails. In-process, since only the server sees its peers' ports."""
    from tensorflow_serving.apis import model_service_pb2_grpc

    from stack.processes import free_port

    def peers_seen(arguments: str, enough: int, seconds: float) -> set[str]:
        """Calls for `seconds`, or until `enough` peers were seen."""
        recorder, address = _PeerRecorder(), f"127.0.0.1:{free_port()}"
        server = start_grpc_server(address, recorder,
                                   model_service_pb2_grpc.ModelServiceServicer(), 4, 1 << 20,
                                   channel_arguments=channel_arguments(arguments))  # fmt: skip
        try:
            with grpc.insecure_channel(address) as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline and len(recorder.peers) < enough:
                    stub.Predict(predict_pb2.PredictRequest(), timeout=10)  # raises on failure
        finally:
            server.stop(None)
        return recorder.peers

    assert len(peers_seen("", enough=2, seconds=2)) == 1
    aged = "grpc.max_connection_age_ms=200,grpc.max_connection_age_grace_ms=2000"
    assert len(peers_seen(aged, enough=3, seconds=30)) >= 3


def test_the_proxy_client_loses_no_request_to_connections_aged_out(start_server, tiny_model_base):
    """The same ageing on the real server, through its flag: the proxy's own client on one
    channel sees its connection replaced again and again, and loses no request."""
    from proxy.client.base import ModelTarget
    from proxy.client.grpc_client import GrpcClient

    server = start_server(
        f"--model_name={MODEL}", f"--model_base_path={tiny_model_base}",
        "--grpc_channel_arguments=grpc.max_connection_age_ms=200,"
        "grpc.max_connection_age_grace_ms=2000",
    )  # fmt: skip
    client = GrpcClient(f"127.0.0.1:{server.grpc_port}", timeout_s=30)
    connections: set[int] = set()  # the client's local ports, one per connection
    deadline = time.monotonic() + 30
    while len(connections) < 3:  # the flag reached the server: its connections age out
        assert time.monotonic() < deadline, f"connections seen: {connections}"
        client.predict(IMAGES, ModelTarget(MODEL))  # raises on any failure
        connections |= _client_ports(server.grpc_port)


def _client_ports(server_port: int) -> set[int]:
    """Local ports of the established TCP connections to `server_port` (gRPC's sockets are
    IPv6 ones, with IPv4 addresses mapped, so both tables are read)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, remote, state = line.split()[1:4]
            if state == "01" and int(remote.split(":")[1], 16) == server_port:  # ESTABLISHED
                ports.add(int(local.split(":")[1], 16))
    return ports


def test_channel_arguments_are_key_value_pairs_typed_as_server_cc_types_them():
    assert channel_arguments("") == []
    assert channel_arguments("grpc.max_connection_age_ms=20000,grpc.lb_policy_name=x") == [
        ("grpc.max_connection_age_ms", 20000),
        ("grpc.lb_policy_name", "x"),
    ]
    assert channel_arguments("a=4294967296") == [("a", "4294967296")]  # no int32: a string
    assert channel_arguments("a=1_000,b=x=y") == [("a", "1_000"), ("b", "x")]  # as server.cc
    for bad in ("a=1,", "novalue", "=1"):
        with pytest.raises(ValueError, match="is not key=value"):
            channel_arguments(bad)


class _Buggy:
    """Stands in for the version manager and the predictor, raising where they would answer:
    a bug cannot be provoked in the real ones, and the handlers' edge is what is tested. Its
    metrics are the real ones: Predict's bookkeeping runs around the handler."""

    def __init__(self) -> None:
        from modelserver.metrics import Metrics

        self.metrics = Metrics()

    def status(self, *args):
        raise KeyError("a bug")

    servable = reload = status


def test_a_bug_in_any_handler_answers_internal_not_unknown():
    """grpcio alone answers an exception UNKNOWN "Exception calling application", a code TF
    Serving never sends; each method answers INTERNAL with the exception's words instead."""
    from tensorflow_serving.apis import model_service_pb2_grpc

    from modelserver.grpc_api import ModelService, PredictionService
    from stack.processes import free_port

    buggy, address = _Buggy(), f"127.0.0.1:{free_port()}"
    server = start_grpc_server(address, PredictionService(buggy),
                               ModelService(buggy, buggy.reload), 4, 1 << 20)  # fmt: skip
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    status = get_model_status_pb2.GetModelStatusRequest()
    reload = model_management_pb2.ReloadConfigRequest()
    predict, classify = predict_pb2.PredictRequest(), classification_pb2.ClassificationRequest()
    for request in (metadata, status, predict, classify):
        request.model_spec.name = MODEL
    reload.config.model_config_list.config.add(name=MODEL, base_path="/models/x")
    try:
        with grpc.insecure_channel(address) as channel:
            prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            model = model_service_pb2_grpc.ModelServiceStub(channel)
            calls = [
                (prediction.Predict, predict),
                (prediction.Classify, classify),
                (prediction.GetModelMetadata, metadata),
                (model.GetModelStatus, status),
                (model.HandleReloadConfigRequest, reload),
            ]
            for call, request in calls:
                error = rpc_error(call, request)
                assert error.code() == grpc.StatusCode.INTERNAL, call
                assert error.details() == "KeyError: 'a bug'"
        # Counted as TF Serving counts them (request_count by model and status).
        lines = buggy.metrics.request_count.render()
        assert any('status="INTERNAL"' in line and line.endswith(" 2") for line in lines), lines
    finally:
        server.stop(None)

"""TF Serving's gRPC API through stubs compiled from proxy/protos (no TensorFlow import).

This is `resnet_client_grpc.py` from tensorflow/serving, minus TensorFlow: the request is
built from our own copies of predict.proto & co., which are byte-compatible with the real
ones. Predict answers carry `model_spec.version`, so no extra call is needed to know which
version ran.
"""

from __future__ import annotations

import grpc
import numpy as np
from google.protobuf.message import Message

from proxy.client.base import (
    OUTPUTS,
    PIXELS_INPUT,
    PIXELS_SIGNATURE,
    UNKNOWN_LABEL,
    ModelClient,
    ModelNotFound,
    ModelServerError,
    ModelServerTimeout,
    ModelServerUnavailable,
    ModelTarget,
    Prediction,
    VersionStatus,
    overloaded,
)
from proxy.client.tensors import to_numpy, to_tensor_proto
from proxy.protos_gen import serving_subset_pb2 as pb2
from proxy.protos_gen import serving_subset_pb2_grpc as pb2_grpc

# Reconnect quickly once the model server is back (gRPC's default backoff grows to 120 s).
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class GrpcClient(ModelClient):
    """Model server client over gRPC (`tensorflow.serving.PredictionService`, `ModelService`)."""

    def __init__(self, address: str, timeout_s: float) -> None:
        self._timeout = timeout_s
        self._channel = grpc.insecure_channel(address, options=_CHANNEL_OPTIONS)
        self._predict = pb2_grpc.PredictionServiceStub(self._channel)
        self._models = pb2_grpc.ModelServiceStub(self._channel)

    def predict(self, pixels: np.ndarray, target: ModelTarget) -> Prediction:
        request = pb2.PredictRequest(model_spec=_model_spec(target, PIXELS_SIGNATURE))
        request.inputs[PIXELS_INPUT].CopyFrom(to_tensor_proto(pixels))
        request.output_filter.extend(OUTPUTS)
        response = self._call(self._predict.Predict, request, target)
        outputs = {key: to_numpy(response.outputs[key]) for key in OUTPUTS}
        return Prediction(
            name=response.model_spec.name or target.name,
            version=response.model_spec.version.value,
            classes=outputs["classes"].tolist(),
            scores=outputs["scores"],
            probabilities=outputs["probabilities"],
        )

    def status(self, name: str) -> list[VersionStatus]:
        target = ModelTarget(name)
        request = pb2.GetModelStatusRequest(model_spec=_model_spec(target))
        response = self._call(self._models.GetModelStatus, request, target)
        return [
            VersionStatus(
                version=row.version,
                state=pb2.ModelVersionStatus.State.Name(row.state),
                error=row.status.error_message,
            )
            for row in response.model_version_status
        ]

    def resolve_version(self, target: ModelTarget) -> int:
        if target.version is not None:
            return target.version
        request = pb2.GetModelMetadataRequest(
            model_spec=_model_spec(target), metadata_field=["signature_def"]
        )
        return self._call(self._predict.GetModelMetadata, request, target).model_spec.version.value

    def close(self) -> None:
        self._channel.close()

    def _call(
        self, method: grpc.UnaryUnaryMultiCallable, request: Message, target: ModelTarget
    ) -> Message:
        """One RPC; every failure becomes a ModelServerError subclass."""
        try:
            return method(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise _error_from_rpc(exc, target) from exc


def _model_spec(target: ModelTarget, signature: str = "") -> pb2.ModelSpec:
    spec = pb2.ModelSpec(name=target.name, signature_name=signature)
    if target.version is not None:
        spec.version.value = target.version
    elif target.label:
        spec.version_label = target.label
    return spec


def _error_from_rpc(exc: grpc.RpcError, target: ModelTarget) -> ModelServerError:
    """Map gRPC codes (tfserving-behaviour.md §4) to our errors."""
    code, details = exc.code(), exc.details() or ""
    busy_codes = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
    if code in busy_codes and (busy := overloaded(details)):
        return busy
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ModelServerTimeout("the model server did not answer in time")
    if code == grpc.StatusCode.UNAVAILABLE:
        return ModelServerUnavailable("the model server cannot be reached")
    if code == grpc.StatusCode.NOT_FOUND or UNKNOWN_LABEL in details:
        return ModelNotFound(details or f"{target.describe()} is not being served")
    return ModelServerError(details or code.name)

"""gRPC front end: tensorflow.serving.PredictionService and ModelService (reference §4)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    status_pb2,
)

from modelserver import deadlines
from modelserver.deadlines import Deadline
from modelserver.predict import Predictor
from modelserver.servable import (
    DEFAULT_SIGNATURE,
    classify_or_regress_unimplemented,
    request_inputs,
)
from modelserver.status import (
    ServingError,
    failed_precondition,
    handler_error,
    invalid_argument,
)
from modelserver.tensors import ndarray_to_proto
from modelserver.versions import VersionManager

log = logging.getLogger(__name__)

SIGNATURE_DEF_FIELD = "signature_def"  # GetModelMetadataImpl::kSignatureDef
# A MultiInference task's method_name -> classify_or_regress_unimplemented's (signature_constants)
TASK_METHODS = {"tensorflow/serving/classify": "classify", "tensorflow/serving/regress": "regress"}
# Services named in the health service, as model_servers/server.cc names them (not qualified).
HEALTH_SERVICES = ("ModelService", "PredictionService")
_NO_DEADLINE_S = 1e9  # gRPC reports ~2**63 s remaining when the client set no deadline


def client_deadline(context: grpc.ServicerContext) -> Deadline:
    """The client's deadline, which TF Serving makes the run's timeout (prediction_service_impl.cc
    DeadlineToTimeoutMillis); None when the client set none."""
    remaining = context.time_remaining()
    if remaining is None or remaining > _NO_DEADLINE_S:
        return None
    return deadlines.after(remaining)


def answer(
    context: grpc.ServicerContext,
    api: str,
    handler: Callable[[], object],
    on_error: Callable[[str], None] = lambda code: None,
):
    """`handler`'s response, or the call aborted with the status its exception answers
    (status.handler_error: INTERNAL for a bug here). `on_error` gets the status code's name
    (for request_count)."""
    try:
        return handler()
    except Exception as caught:  # noqa: BLE001 - handler_error logs a bug's traceback
        error = handler_error(caught, log, api)
        on_error(error.code.name)
        context.abort(error.code, error.grpc_message)


def model_spec_target(spec) -> tuple[str, int | None, str | None]:
    """(name, version, label) of a ModelSpec; label and version are a oneof."""
    choice = spec.WhichOneof("version_choice")
    version = spec.version.value if choice == "version" else None
    label = spec.version_label if choice == "version_label" else None
    return spec.name, version, label


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, predictor: Predictor) -> None:
        self._predictor = predictor
        self._metrics = predictor.metrics

    def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        deadline = client_deadline(context)
        return self._call(request, context, "Predict", lambda req: self._predict(req, deadline))

    def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.ServicerContext
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        return answer(context, "GetModelMetadata", lambda: self._metadata(request))

    def Classify(self, request, context: grpc.ServicerContext) -> NoReturn:  # always aborts
        return self._call(request, context, "Classify", self._classify_or_regress("classify"))

    def Regress(self, request, context: grpc.ServicerContext) -> NoReturn:  # always aborts
        return self._call(request, context, "Regress", self._classify_or_regress("regress"))

    def MultiInference(self, request, context: grpc.ServicerContext) -> NoReturn:  # aborts
        name = request.tasks[0].model_spec.name if request.tasks else ""
        return self._call(request, context, "MultiInference", self._multi_inference, name)

    def _call(
        self,
        request,
        context: grpc.ServicerContext,
        api: str,
        handler: Callable,
        name: str | None = None,
    ):
        """Runs `handler` with TF Serving's request_count / request_latency bookkeeping
        (model_servers/prediction_service_impl.cc); `name`: the model, when the request has
        no model_spec of its own."""
        started = time.perf_counter()
        name = request.model_spec.name if name is None else name
        count = self._metrics.request_count
        response = answer(
            context, api, lambda: handler(request), lambda code: count.inc(name, code)
        )
        self._metrics.request_latency.observe(
            (time.perf_counter() - started) * 1e6, name, api, "GRPC"
        )
        count.inc(name, "OK")
        return response

    def _predict(self, request, deadline: Deadline) -> predict_pb2.PredictResponse:
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        servable = self._predictor.servable(*model_spec_target(request.model_spec))
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature = servable.signature(signature_name)
        if signature is None:
            raise failed_precondition(f'Serving signature key "{signature_name}" not found.')
        inputs = request_inputs(signature, request.inputs)
        result = self._predictor.predict(
            servable, signature, inputs, request.output_filter, deadline
        )
        response = predict_pb2.PredictResponse()
        # MakeModelSpec (servables/tensorflow/util.cc): name, version used, resolved signature.
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature_name
        for alias, value in result.outputs.items():
            response.outputs[alias].CopyFrom(ndarray_to_proto(value, signature.output_dtype(alias)))
        return response

    def _metadata(self, request) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        if not request.metadata_field:
            raise invalid_argument(
                "GetModelMetadataRequest must specify at least one metadata_field"
            )
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise invalid_argument(f"Metadata field {field} is not supported")
        servable = self._predictor.servable(*model_spec_target(request.model_spec))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.signature_def_map())
        return response

    def _multi_inference(self, request) -> None:
        """TF Serving's checks (multi_inference_helper.cc: the first task's model; then
        multi_inference.cc, task by task); its tasks are classify / regress calls, which this
        server does not implement, so a request that passes them gets UNIMPLEMENTED."""
        first = request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()
        servable = self._predictor.servable(*model_spec_target(first))
        seen: set[str] = set()
        for task in request.tasks:
            if not task.model_spec.name:
                raise invalid_argument("Found ModelSpec with an empty model name.")
            if task.model_spec.name != first.name:
                raise invalid_argument(
                    "All ModelSpecs in a MultiInferenceRequest must access the same model name."
                )
            name = task.model_spec.signature_name or DEFAULT_SIGNATURE
            if name in seen:
                raise invalid_argument(f"Duplicate evaluation of signature: {name}")
            seen.add(name)
            if servable.signature(name) is None:
                raise invalid_argument(f"Requested signature not found in model graph: {name}")
            method = TASK_METHODS.get(task.method_name)
            if method is None:
                raise ServingError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"Unsupported signature method_name: {task.method_name}",
                )
            classify_or_regress_unimplemented(servable, name, method)  # raises a failed check
        raise ServingError(
            grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not implemented by this server"
        )

    def _classify_or_regress(self, method: str) -> Callable:
        """TF Serving's checks up to the call (unknown model NOT_FOUND, a predict-style
        signature INVALID_ARGUMENT); the call itself is not implemented here: UNIMPLEMENTED."""

        def handler(request):
            if not request.HasField("model_spec"):
                raise invalid_argument("Missing ModelSpec")
            servable = self._predictor.servable(*model_spec_target(request.model_spec))
            name = request.model_spec.signature_name or DEFAULT_SIGNATURE
            raise classify_or_regress_unimplemented(servable, name, method)

        return handler


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: VersionManager, reload_config: Callable) -> None:
        self._manager = manager
        self._reload_config = reload_config

    def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.ServicerContext
    ) -> get_model_status_pb2.GetModelStatusResponse:
        return answer(
            context, "GetModelStatus", lambda: model_status_response(self._manager, request)
        )

    def HandleReloadConfigRequest(
        self, request: model_management_pb2.ReloadConfigRequest, context: grpc.ServicerContext
    ) -> model_management_pb2.ReloadConfigResponse:
        """Replaces the whole model config; blocks until newly added models are loaded."""
        try:
            if request.config.WhichOneof("config") != "model_config_list":
                raise invalid_argument(
                    "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                    "Only ModelConfigList is currently supported"
                )
            self._reload_config(request.config)
        except ServingError as error:
            log.error("ReloadConfig failed: %s", error.message)
            return reload_failed(context, error)
        except Exception as caught:  # noqa: BLE001 - a bug here: INTERNAL, as in `answer`
            return reload_failed(context, handler_error(caught, log, "ReloadConfig"))
        return model_management_pb2.ReloadConfigResponse(status=status_pb2.StatusProto())


def reload_failed(
    context: grpc.ServicerContext, error: ServingError
) -> model_management_pb2.ReloadConfigResponse:
    """TF Serving answers a failed reload with the status both in the response and the call."""
    context.set_code(error.code)
    context.set_details(error.grpc_message)
    return model_management_pb2.ReloadConfigResponse(status=status_proto(error))


def status_proto(error: ServingError | None) -> status_pb2.StatusProto:
    if error is None:
        return status_pb2.StatusProto()
    return status_pb2.StatusProto(error_code=error.code.value[0], error_message=error.message)


def model_status_response(
    manager: VersionManager, request
) -> get_model_status_pb2.GetModelStatusResponse:
    """model_servers/get_model_status_impl.cc: a label in the spec is ignored (reference §3.4)."""
    if not request.HasField("model_spec"):
        raise invalid_argument("Missing ModelSpec")
    spec = request.model_spec
    version = spec.version.value if spec.WhichOneof("version_choice") == "version" else None
    response = get_model_status_pb2.GetModelStatusResponse()
    for number, status in manager.status(spec.name, version):
        entry = response.model_version_status.add()
        entry.version = number
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(status.state)
        entry.status.CopyFrom(status_proto(status.error))
    return response


def health_servicer() -> health.HealthServicer:
    """grpc.health.v1.Health as `--enable_grpc_healthcheck_service` sets it up
    (model_servers/server.cc): the server ("") and both services SERVING. The port opens only
    once the models are loaded, so SERVING here means ready, like TF Serving's."""
    servicer = health.HealthServicer()
    for service in HEALTH_SERVICES:
        servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return servicer


def start_grpc_server(
    address: str,
    prediction: PredictionService,
    model: ModelService,
    max_threads: int,
    max_message_bytes: int,
    health_service: health.HealthServicer | None = None,
    channel_arguments: Sequence[tuple[str, int | str]] = (),
) -> grpc.Server:
    """A thread-pool gRPC server; threads block in the batcher, so keep many of them.
    `channel_arguments` (--grpc_channel_arguments) come after ours, as server.cc adds them."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
            *channel_arguments,
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(model, server)
    if health_service is not None:
        health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    # model_servers/server.cc: a port that cannot be bound fails the start with
    # INVALID_ARGUMENT "Failed to BuildAndStart gRPC server"; the cause is ours to add.
    try:
        bound, cause = server.add_insecure_port(address), ""
    except RuntimeError as error:  # recent grpcio raises where older versions returned 0
        bound, cause = 0, f": {error}"
    if bound == 0:
        raise invalid_argument(
            f"Failed to BuildAndStart gRPC server: cannot listen on {address}{cause} "
            "(a port already in use? choose another with --port)"
        )
    server.start()
    return server

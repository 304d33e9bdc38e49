"""One loaded model version: its SavedModel, its SignatureDefs and a direct call into them.

Requests call the loaded concrete signature functions directly (no Keras, no tf.function
retracing), and metadata is served from the SignatureDefs as stored in saved_model.pb, tensor
names and `__saved_model_init_op` included, like TF Serving's GetModelMetadata.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, prediction_log_pb2

from modelserver import deadlines
from modelserver.deadlines import Deadline
from modelserver.status import ServingError, from_exception, invalid_argument, not_found
from modelserver.tensors import dtype_string, numpy_dtype, proto_to_ndarray

log = logging.getLogger(__name__)

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
# A request that names no signature gets this one (tensorflow's kDefaultServingSignatureDefKey).
DEFAULT_SIGNATURE = "serving_default"
MAX_WARMUP_RECORDS = 1000  # servables/tensorflow/saved_model_warmup_util.cc kMaxNumRecords


@dataclass(frozen=True)
class Signature:
    """A SignatureDef with its callable; input/output aliases in TF Serving's (sorted) order."""

    name: str
    definition: meta_graph_pb2.SignatureDef
    function: object | None  # ConcreteFunction; None for __saved_model_init_op

    @property
    def input_names(self) -> list[str]:
        return sorted(self.definition.inputs)

    @property
    def output_names(self) -> list[str]:
        return sorted(self.definition.outputs)

    def output_dtype(self, alias: str) -> int:
        return self.definition.outputs[alias].dtype


class Servable:
    """A SavedModel version loaded into memory and ready to run."""

    def __init__(self, name: str, version: int, path: Path, tags: Sequence[str]) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.signature_defs = _read_signature_defs(path, tags)
        self._loaded = tf.saved_model.load(str(path), tags=list(tags))
        self.signatures = {
            key: Signature(key, definition, self._loaded.signatures.get(key))
            for key, definition in self.signature_defs.items()
        }
        self.batcher = None  # set by the server when --enable_batching (modelserver.batching)

    def close(self) -> None:
        """Called on unload: lets the batcher finish queued work, then stop its threads."""
        if self.batcher is not None:
            self.batcher.stop()

    def signature_def_map(self) -> get_model_metadata_pb2.SignatureDefMap:
        """GetModelMetadata's signature_def field (gRPC and REST)."""
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, definition in self.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(definition)
        return signature_map

    def signature(self, name: str) -> Signature | None:
        """The named signature ("" = serving_default), or None when absent or not callable."""
        signature = self.signatures.get(name or DEFAULT_SIGNATURE)
        return signature if signature is not None and signature.function is not None else None

    def run(
        self,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        deadline: Deadline = None,
    ) -> dict[str, np.ndarray]:
        """Runs the graph on validated inputs, cancelled at `deadline` like a session run with
        RunOptions.timeout_in_ms; kernel errors come back as ServingError."""
        try:
            with deadlines.enforced(deadline):
                outputs = signature.function(**{k: tf.constant(v) for k, v in inputs.items()})
                return {alias: tensor.numpy() for alias, tensor in outputs.items()}
        except Exception as error:
            raise from_exception(error) from error

    def warm_up(self, iterations: int) -> int:
        """Replays assets.extra/tf_serving_warmup_requests; returns the number of records."""
        path = self.path / WARMUP_FILE
        if not path.exists():
            return 0
        records = 0
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            records += 1
            if records > MAX_WARMUP_RECORDS:
                raise invalid_argument(
                    f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}"
                )
            entry = prediction_log_pb2.PredictionLog.FromString(raw)
            if entry.WhichOneof("log_type") != "predict_log":
                raise ServingError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    "Only predict_log warm-up records are supported by this server",
                )
            request = entry.predict_log.request
            signature = self.signature(request.model_spec.signature_name)
            if signature is None:
                raise invalid_argument(
                    f"Warm-up record names unknown signature {request.model_spec.signature_name!r}"
                )
            inputs = request_inputs(signature, request.inputs)
            validate_inputs(signature, inputs)
            for _ in range(max(iterations, 1)):
                self.run(signature, inputs)
        return records


def _read_signature_defs(path: Path, tags: Sequence[str]) -> dict[str, meta_graph_pb2.SignatureDef]:
    pb = path / "saved_model.pb"
    if not pb.exists():
        raise not_found(
            f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}"
        )
    saved_model = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == set(tags):
            return dict(meta_graph.signature_def)
    raise not_found(
        f"Could not find meta graph def matching supplied tags: {{ {', '.join(tags)} }}. "
        f"To inspect available tag-sets in the SavedModel, please use the SavedModel CLI: "
        f"`saved_model_cli`"
    )


def validate_inputs(signature: Signature, inputs: Mapping[str, np.ndarray]) -> None:
    """Input checks of servables/tensorflow/predict_util.cc and saved_model/util.cc, with the
    messages TF Serving gives (reference §4 table); and one of this server's own: the shape.

    TF Serving checks no shapes here: its session run fails on a shape the graph's kernels
    cannot take, with the kernel's INVALID_ARGUMENT text (the same status, other words). A
    concrete function refuses any shape off its signature, even one the graph would take, with
    a Python error that names no input; so this server refuses it first, naming the input."""
    check_input_names(signature, list(inputs))
    for index, alias in enumerate(signature.input_names):
        _check_tensor(index, alias, signature.definition.inputs[alias], inputs[alias])


def request_inputs(signature: Signature, tensors: Mapping[str, tensor_pb2.TensorProto]):
    """A request's TensorProtos as arrays, its input names checked first, as TF Serving
    checks them before it parses a tensor (VerifyRequestInputsSize, then GetInputValues)."""
    check_input_names(signature, list(tensors))
    return {alias: proto_to_ndarray(tensor, alias) for alias, tensor in tensors.items()}


def check_input_names(signature: Signature, aliases: list[str]) -> None:
    expected = signature.input_names
    sent = sorted(aliases)
    if len(sent) != len(expected):
        extra = sorted(set(sent) - set(expected))
        missing = sorted(set(expected) - set(sent))
        raise invalid_argument(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{','.join(sent)}}}) != len({{{','.join(expected)}}}). "
            f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}."
        )
    for alias in expected:
        if alias not in sent:
            info = signature.definition.inputs[alias]
            raise invalid_argument(
                f"Signature input alias: {alias}({info.name}) not found in request"
            )


def classify_or_regress_unimplemented(servable: Servable, name: str, method: str) -> ServingError:
    """TF Serving's checks before a Classify or Regress call, then UNIMPLEMENTED for the call
    itself (gRPC and REST alike). The checks: GetClassificationSignature /
    GetRegressionSignature find the signature, then PreProcessClassification /
    PreProcessRegression (servables/tensorflow/classifier.cc, regressor.cc) refuse
    predict-style signatures like ours with INVALID_ARGUMENT (reference §3.7, §4). `method` is
    "classify" or "regress"; a failed check is raised, the UNIMPLEMENTED error returned."""
    signature = servable.signature(name)
    if signature is None:  # classifier.cc / regressor.cc's own wording
        raise invalid_argument(f"No signature was found with the name: {name}")
    definition = signature.definition
    if len(definition.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    outputs = len(definition.outputs)
    if method == "classify" and outputs not in (1, 2):
        raise invalid_argument(f"Expected one or two output Tensors, found {outputs}")
    if method == "regress" and outputs != 1:
        raise invalid_argument("Expected one output Tensor.")
    return ServingError(
        grpc.StatusCode.UNIMPLEMENTED,
        f"{method} is not implemented by this server; use predict instead",
    )


def _check_tensor(index: int, alias: str, info: meta_graph_pb2.TensorInfo, value: np.ndarray):
    want = numpy_dtype(info.dtype)
    got_string = value.dtype.kind == "O"
    if (want.kind == "O") != got_string or (not got_string and value.dtype != want):
        got = (
            "string"
            if got_string
            else dtype_string(tf.dtypes.as_dtype(value.dtype).as_datatype_enum)
        )
        raise invalid_argument(
            f"Expects arg[{index}] to be {dtype_string(info.dtype)} but {got} is provided"
        )
    shape = info.tensor_shape
    if shape.unknown_rank:
        return
    dims = [dim.size for dim in shape.dim]
    compatible = len(dims) == value.ndim and all(
        want_dim < 0 or want_dim == got_dim
        for want_dim, got_dim in zip(dims, value.shape, strict=True)
    )
    if not compatible:
        raise invalid_argument(
            f"Input {alias} has shape [{','.join(map(str, value.shape))}] but the signature "
            f"expects [{','.join(map(str, dims))}] (-1 = any size)"
        )

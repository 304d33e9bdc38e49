"""Helpers for the model-server tests: start `python -m modelserver` as a real subprocess on
free loopback ports, talk to it, write model configs, make images. (A module with its own name,
not conftest, so that `from ... import` works whichever test areas run together.)"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import requests
from polling import eventually

from export.config import MODEL_NAME
from modelserver.config_files import models_config_text
from stack import processes

if TYPE_CHECKING:
    from tensorflow_serving.config.model_server_config_pb2 import ModelConfig

MODEL = MODEL_NAME
EXIT_TIMEOUT_S = 120  # for a server expected to exit (a bad flag): generous on two shared cores
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


class ServerProcess(processes.ModelServer):
    """A started `python -m modelserver` (behind the tests' own work on two shared cores), with
    clients for it and waits on its state."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        super().__init__(args, log_path, nice=True, own_session=False)
        self.start()
        self._channel = None

    @property
    def rest(self) -> str:
        return self.rest_url

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self, model: str = MODEL) -> ServerProcess:
        """Until REST answers for `model` (ports open only once its newest version loaded)."""
        try:
            super().wait_ready(lambda port: bool(processes.model_states(port, model, timeout=10)))
        except RuntimeError as error:
            raise AssertionError(f"{error}\n(whole log: {self.log_path})") from None
        return self

    def wait_exit(self, timeout: float = EXIT_TIMEOUT_S) -> int:
        return self.process.wait(timeout=timeout)

    def channel(self):
        import grpc

        if self._channel is None:
            self._channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        return self._channel

    def prediction_stub(self):
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        return prediction_service_pb2_grpc.PredictionServiceStub(self.channel())

    def model_stub(self):
        from tensorflow_serving.apis import model_service_pb2_grpc

        return model_service_pb2_grpc.ModelServiceStub(self.channel())

    def states(self, model: str = MODEL) -> dict[int, str]:
        """{version: state} from REST model status (a generous timeout: a busy machine)."""
        return processes.model_states(self.rest_port, model, timeout=10)

    def wait_states(self, expected: dict[int, str], model: str = MODEL, timeout: float = 90):
        """Until every version in `expected` has that state (others may exist)."""

        def read() -> dict[int, str]:
            assert self.process.poll() is None, self.log()
            return self.states(model)

        def reached(states: dict[int, str]) -> bool:
            return all(states.get(v) == s for v, s in expected.items())

        return eventually(read, reached, timeout, f"states {expected}")

    def metrics(self) -> str:
        return requests.get(f"{self.rest}{PROMETHEUS_PATH}", timeout=10).text

    def wait_metric(self, name: str, labels: str, at_least: float, timeout: float = 30) -> str:
        """Until metric `name{labels}` reaches `at_least` (the server records an answer just
        after sending it); returns that metrics page."""

        def reached(page: str) -> bool:
            return metric(page, name, labels) >= at_least

        return eventually(self.metrics, reached, timeout, f"{name}{{{labels}}} >= {at_least}")

    def stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
        super().stop()


@contextlib.contextmanager
def running_server(args: list[str], log_path: Path, model: str = MODEL) -> Iterator[ServerProcess]:
    """A started server, ready to serve `model`, that is stopped on exit."""
    server = ServerProcess(args, log_path)
    try:
        yield server.wait_ready(model)
    finally:
        server.stop()


def metric(page: str, name: str, labels: str = "") -> float:
    """One sample of a Prometheus page, by name without the `:tensorflow:serving:` prefix."""
    match = re.search(rf"^:tensorflow:serving:{name}\{{{re.escape(labels)}\}} (\S+)$", page, re.M)
    return float(match.group(1)) if match else 0.0


def pixels_request(
    images, *, signature: str = "pixels", name: str = MODEL, version: int | None = None,
    label: str | None = None,
):  # fmt: skip
    """A gRPC PredictRequest for uint8 images [N,32,32,3] through `signature`."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    return request


def bytes_request(*blobs: bytes, name: str = MODEL):
    """A gRPC PredictRequest for encoded images through `serving_default` (its default)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(list(blobs), dtype=tf.string))
    return request


def monitoring_flag(folder: Path) -> str:
    """`--monitoring_config_file=...` for a file in `folder` that turns the Prometheus page on."""
    path = folder / "monitoring.config"
    path.write_text(f'prometheus_config {{ enable: true path: "{PROMETHEUS_PATH}" }}')
    return f"--monitoring_config_file={path}"


def write_models_config(path: Path, *models: ModelConfig) -> Path:
    """A models.config file serving `models` (entries from `config_files.model_config`)."""
    path.write_text(models_config_text(*models))
    return path

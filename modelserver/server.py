"""Wires the pieces together: config -> version manager -> gRPC + REST front ends.

Start-up follows tensorflow_model_server: the ports open only after each configured model's
newest aspired version is AVAILABLE (or failed: then start-up fails), reference §0.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import grpc
import tensorflow as tf
from tensorflow_serving.config import model_server_config_pb2

from modelserver.batching import Batcher
from modelserver.config_files import (
    BasePathMap,
    load_batching_options,
    load_model_server_config,
    load_prometheus_path,
    read_text_proto,
    version_batching_options,
)
from modelserver.flags import ServerOptions, channel_arguments
from modelserver.grpc_api import (
    ModelService,
    PredictionService,
    health_servicer,
    start_grpc_server,
)
from modelserver.metrics import Metrics
from modelserver.predict import Predictor
from modelserver.rest_api import RestApi, start_rest_server
from modelserver.servable import Servable
from modelserver.status import ServingError, from_load_exception, invalid_argument
from modelserver.versions import ManagerOptions, VersionManager

log = logging.getLogger(__name__)
STOP_GRACE_S = 2.0  # requests being answered at a stop get this long, over gRPC and REST


def configure_tensorflow(options: ServerOptions) -> None:
    """Thread pools must be sized before TensorFlow runs its first op (0 = TF's choice)."""
    tf.config.threading.set_intra_op_parallelism_threads(options.tensorflow_intra_op_parallelism)
    tf.config.threading.set_inter_op_parallelism_threads(options.tensorflow_inter_op_parallelism)


class ModelServer:
    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.metrics = Metrics()
        self.batching = load_batching_options(options)
        self.prometheus_path = load_prometheus_path(options)
        self.manager = VersionManager(
            loader=self._load_servable,
            options=ManagerOptions(
                file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
                max_num_load_retries=options.max_num_load_retries,
                load_retry_interval_seconds=options.load_retry_interval_micros / 1e6,
                allow_version_labels_for_unavailable_models=(
                    options.allow_version_labels_for_unavailable_models
                ),
            ),
            map_base_path=BasePathMap(options.model_base_path_prefix_map),
        )
        self.predictor = Predictor(self.manager, self.metrics)
        self._grpc: grpc.Server | None = None
        self._health = health_servicer() if options.enable_grpc_healthcheck_service else None
        self._rest = None
        self._stopped = threading.Event()
        self._finished = threading.Event()  # stop() has closed the ports and unloaded
        self._closing = threading.Lock()

    def _load_servable(self, name: str, version: int, path: Path) -> Servable:
        """Load, warm up (assets.extra/tf_serving_warmup_requests), attach the batcher."""
        try:
            batching = version_batching_options(
                self.batching, self.options.enable_per_model_batching_parameters, path
            )
            tags = [tag.strip() for tag in self.options.saved_model_tags.split(",") if tag.strip()]
            servable = Servable(name, version, path, tags)
            if self.options.enable_model_warmup:
                records = servable.warm_up(self.options.num_request_iterations_for_warmup)
                if records:
                    log.info("Finished reading %d warmup records for %s version %d",
                             records, name, version)  # fmt: skip
        except Exception as error:
            raise from_load_exception(error) from error
        if batching is not None:
            servable.batcher = Batcher(servable.run, batching, self.metrics, name)
        if self.batching is not None and self.options.enable_per_model_batching_parameters:
            log.info("%s version %d: %s", name, version,
                     "batching by its batching_params.pbtxt" if batching else
                     "no batching_params.pbtxt, so no batching")  # fmt: skip
        runnable = sorted(k for k, sig in servable.signatures.items() if sig.function is not None)
        log.info("Signatures of %s version %d: %s", name, version, runnable)
        return servable

    def start(self) -> None:
        """Loads the models, then opens the ports. Raises ServingError on a bad start."""
        if self.options.port == 0:  # model_servers/server.cc BuildAndStart: nowhere to listen
            raise invalid_argument(
                "At least one of server_options.grpc_port or server_options.grpc_socket_path "
                "must be set."
            )
        config = load_model_server_config(self.options)
        self.manager.apply_config(config, wait=True)  # a stop() (SIGTERM) ends the wait too
        if self._stopped.is_set():
            return
        self._start_grpc()
        self._start_rest()
        if self._stopped.is_set():  # the stop came while they opened: close what it missed
            self._close_ports()
            return
        if self.options.model_config_file and self.options.model_config_file_poll_wait_seconds > 0:
            threading.Thread(
                target=self._poll_config_file, name="config-poller", daemon=True
            ).start()

    def _start_grpc(self) -> None:
        address = f"{self.options.host}:{self.options.port}"
        self._grpc = start_grpc_server(
            address,
            PredictionService(self.predictor),
            ModelService(self.manager, self.reload_config),
            self.options.grpc_max_threads,
            self.options.max_request_bytes,
            self._health,
            channel_arguments(self.options.grpc_channel_arguments),
        )
        log.info("Running gRPC ModelServer at %s ...", address)

    def _start_rest(self) -> None:
        port = self.options.rest_api_port
        if port == 0:
            return
        if port == self.options.port:
            # model_servers/server.cc: same port for both -> REST skipped with an error log.
            log.error("--rest_api_port cannot be the same as --port. Please use a different "
                      "port for HTTP/REST API. Skipped exporting HTTP/REST API.")  # fmt: skip
            return
        timeout_ms = self.options.rest_api_timeout_in_ms
        api = RestApi(self.predictor, self.metrics, self.prometheus_path,
                      self.options.rest_api_enable_cors_support,
                      timeout_ms / 1000 if timeout_ms > 0 else None)  # fmt: skip
        try:
            rest = start_rest_server(
                self.options.host, port, api, self.options.max_request_bytes,
                self.options.rest_idle_timeout_seconds or None,
            )  # fmt: skip
        except OSError as error:
            # model_servers/server.cc logs "Failed to start HTTP Server" and goes on serving
            # gRPC alone (a surprise, but the real server's behaviour); we add the cause.
            log.error("Failed to start HTTP Server at %s:%d (%s); serving gRPC only. Choose "
                      "another --rest_api_port.", self.options.host, port,
                      error.strerror or error)  # fmt: skip
            return
        threading.Thread(target=rest.serve_forever, name="rest", daemon=True).start()
        self._rest = rest  # only now: shutdown() before serve_forever() runs would block
        log.info("Exporting HTTP/REST API at:%s:%d ...", self.options.host, port)
        if self.prometheus_path:
            log.info("Prometheus metrics at http://%s:%d%s", self.options.host, port,
                     self.prometheus_path)  # fmt: skip

    def reload_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """HandleReloadConfigRequest and the config-file poller end here."""
        log.info("Reloading model config: %s", [m.name for m in config.model_config_list.config])
        self.manager.apply_config(config, wait=True)

    def _poll_config_file(self) -> None:
        """Re-reads --model_config_file and applies it whenever it differs from the config in
        force. Like tensorflow_model_server, this also undoes a different config installed by
        HandleReloadConfigRequest in the meantime: the file wins."""
        interval = self.options.model_config_file_poll_wait_seconds
        while not self._stopped.wait(interval):
            try:
                config = read_text_proto(
                    self.options.model_config_file, model_server_config_pb2.ModelServerConfig()
                )
                if config != self.manager.current_config:
                    self.reload_config(config)
            except ServingError as error:
                log.error("Config file reload failed: %s", error.message)
            except Exception:  # anything else must not end the polling either
                log.exception("Config file reload failed")

    def wait(self) -> None:
        """Until a stop() has finished (it may run on another thread: __main__'s signals)."""
        self._finished.wait()

    def stop(self) -> None:
        """Stops accepting requests, lets in-flight ones finish briefly, unloads. Work still
        running after the grace is abandoned: `python -m modelserver` then exits without
        waiting for it (tensorflow_model_server, which has no SIGTERM handler, is killed)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("Shutting down: no new requests; those being answered get %g s; then the "
                 "models unload", STOP_GRACE_S)  # fmt: skip
        self._close_ports()
        self.manager.stop()
        self._finished.set()

    def _close_ports(self) -> None:
        """Both listeners close at once (new connections are refused); the requests being
        answered on either API share one grace period. A stop on another thread and start()'s
        own check may both get here: one at a time."""
        with self._closing:
            if self._health is not None:  # as grpc::Server::Shutdown does: NOT_SERVING first
                self._health.enter_graceful_shutdown()
            grpc_stopped = self._grpc.stop(grace=STOP_GRACE_S) if self._grpc is not None else None
            if self._rest is not None and not self._rest.close(STOP_GRACE_S):
                log.warning("REST requests still running after %g s are abandoned", STOP_GRACE_S)
            if grpc_stopped is not None:
                grpc_stopped.wait()

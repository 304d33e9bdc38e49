"""The text-format config files the flags point at (`--model_config_file`,
`--batching_parameters_file`, `--monitoring_config_file`), read and checked into protos and
dataclasses; the same files the real TF Serving reads (serving_config/).

Text protos are parsed with real protos: `ModelServerConfig` from tensorflow-serving-api, and
`BatchingParameters` / `MonitoringConfig` from copies of TF Serving's .proto files in
modelserver/protos (same package, names and field numbers; PyPI does not ship them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from modelserver.flags import ServerOptions
from modelserver.protos_gen import tfs_batching_parameters_pb2, tfs_monitoring_config_pb2
from modelserver.status import invalid_argument

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath
TENSORFLOW_PLATFORM = "tensorflow"


@dataclass(frozen=True)
class BatchingOptions:
    """Resolved `BatchingParameters`; defaults are TF Serving's (SharedBatchScheduler)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    thread_pool_name: str = "model_server_batch_threads"
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int = 1000


def read_text_proto(path: str, message):
    """Parses a text-format proto file into `message`; errors name the file."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise invalid_argument(f"Could not read {path}: {error}") from error
    except UnicodeDecodeError as error:
        raise invalid_argument(f"Could not read {path}: not UTF-8 text ({error})") from error
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise invalid_argument(
            f"Could not parse {path} as {message.DESCRIPTOR.name}: {error}"
        ) from error


def load_model_server_config(options: ServerOptions) -> model_server_config_pb2.ModelServerConfig:
    """The ModelServerConfig the server starts with (`--model_config_file` wins over
    `--model_name/--model_base_path`, as in main.cc)."""
    if options.model_config_file:
        return read_text_proto(
            options.model_config_file, model_server_config_pb2.ModelServerConfig()
        )
    if not options.model_base_path:
        raise invalid_argument(
            "Both server_options.model_base_path and server_options.model_config_file are empty!"
        )
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = options.model_name
    model.base_path = options.model_base_path
    model.model_platform = TENSORFLOW_PLATFORM
    return config


def model_config(
    name: str, base_path: str | Path, *, policy: str = "", labels: Mapping[str, int] | None = None
) -> model_server_config_pb2.ModelConfig:
    """One model's entry of a models.config; `policy` is a ModelVersionPolicy in text format
    ("all {}", "specific { versions: 1 }"), empty for TF Serving's default (the latest one).
    For the tools and tests that write a config file: built as a proto, so both servers read it."""
    config = model_server_config_pb2.ModelConfig(
        name=name, base_path=str(base_path), model_platform=TENSORFLOW_PLATFORM
    )
    if policy:
        text_format.Parse(policy, config.model_version_policy)
    config.version_labels.update(labels or {})
    return config


def models_config_text(*models: model_server_config_pb2.ModelConfig) -> str:
    """The ModelServerConfig serving `models`, as text for a `--model_config_file`."""
    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.config.extend(models)
    return text_format.MessageToString(config)


def _is_relative(path: str) -> bool:
    return "://" not in path and not path.startswith("/")


def validate_model_config_list(config: model_server_config_pb2.ModelConfigList) -> None:
    """The checks server_core.cc makes before accepting a config (reference §1)."""
    names: set[str] = set()
    for model in config.config:
        if model.name in names:
            raise invalid_argument(
                f"Illegal to list model {model.name} multiple times in config list"
            )
        names.add(model.name)
    for model in config.config:
        if _is_relative(model.base_path):
            raise invalid_argument(
                f"Expected model {model.name} to have an absolute path or URI; "
                f"got base_path()={model.base_path}"
            )
    for model in config.config:
        platform = model.model_platform
        if model.model_type and platform:
            raise invalid_argument(
                "Illegal setting both ModelServerConfig::model_type (deprecated) and "
                f"ModelServerConfig::model_platform, model name is {model.name}"
            )
        # server_core.cc GetPlatform, then CreateStoragePathRoutes.
        if model.model_type == model_server_config_pb2.TENSORFLOW:
            platform = TENSORFLOW_PLATFORM
        elif model.model_type:
            raise invalid_argument(
                f"ModelServerConfig::model_type choice {model.model_type} not supported."
            )
        if not platform:
            raise invalid_argument(
                "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
                f"ModelServerConfig::model_platform, model name is {model.name}"
            )
        if platform != TENSORFLOW_PLATFORM:
            raise invalid_argument(f"Model {model.name} requests unsupported platform {platform}")


class BasePathMap:
    """LOCAL EXTENSION: maps container paths (/models/...) to folders on this machine."""

    def __init__(self, spec: str, cwd: Path | None = None) -> None:
        self._pairs: list[tuple[str, Path]] = []
        cwd = cwd or Path.cwd()
        for item in filter(None, (part.strip() for part in spec.split(","))):
            source, sep, target = item.partition("=")
            if not sep or not source.startswith("/"):
                raise invalid_argument(
                    f"--model_base_path_prefix_map entry {item!r} must look like /models=./models"
                )
            self._pairs.append((source.rstrip("/"), (cwd / target).resolve()))

    def __call__(self, base_path: str) -> str:
        for source, target in self._pairs:
            if base_path == source or base_path.startswith(source + "/"):
                return str(target) + base_path[len(source) :]
        return base_path


def load_batching_options(options: ServerOptions) -> BatchingOptions | None:
    """None when batching is off. Same start-up errors as server.cc / bundle_factory_util.cc."""
    if not options.enable_batching:
        if options.batching_parameters_file:
            raise invalid_argument(
                "server_options.batching_parameters_file is set without setting "
                "server_options.enable_batching to true."
            )
        return None
    if not options.batching_parameters_file:
        return BatchingOptions()
    return read_batching_options(options.batching_parameters_file)


# The per-model batching file in a version folder (bundle_factory_util.cc kBatchingParamsFilename).
PER_MODEL_BATCHING_FILE = "batching_params.pbtxt"


def version_batching_options(
    batching: BatchingOptions | None, per_model: bool, version_dir: Path
) -> BatchingOptions | None:
    """GetPerModelBatchingParams (bundle_factory_util.cc): with per-model parameters on, a
    version batches only if its folder holds batching_params.pbtxt, and by those parameters;
    a file that does not parse fails the version's load. TF Serving runs every model's queue
    on one scheduler built from the server's file; here each loaded version starts its own
    batch threads (batching.py), so during a rollout two versions' threads run side by side."""
    if batching is None or not per_model:
        return batching
    path = version_dir / PER_MODEL_BATCHING_FILE
    if not path.exists():
        return None
    own = read_batching_options(str(path))
    return replace(
        own,
        num_batch_threads=batching.num_batch_threads,
        thread_pool_name=batching.thread_pool_name,
    )


def read_batching_options(path: str) -> BatchingOptions:
    """A text `BatchingParameters` file, resolved against TF Serving's defaults and checked."""
    params = read_text_proto(path, tfs_batching_parameters_pb2.BatchingParameters())
    defaults = BatchingOptions()

    def wrapped(name: str, default):
        return getattr(params, name).value if params.HasField(name) else default

    resolved = BatchingOptions(
        max_batch_size=wrapped("max_batch_size", defaults.max_batch_size),
        batch_timeout_micros=wrapped("batch_timeout_micros", defaults.batch_timeout_micros),
        max_enqueued_batches=wrapped("max_enqueued_batches", defaults.max_enqueued_batches),
        num_batch_threads=wrapped("num_batch_threads", defaults.num_batch_threads),
        thread_pool_name=wrapped("thread_pool_name", defaults.thread_pool_name),
        allowed_batch_sizes=tuple(params.allowed_batch_sizes),
        pad_variable_length_inputs=params.pad_variable_length_inputs,
        enable_large_batch_splitting=wrapped("enable_large_batch_splitting", False),
        # Unset, it is max_batch_size (bundle_factory_util.h), not the proto's 1000.
        max_execution_batch_size=wrapped(
            "max_execution_batch_size",
            wrapped("max_batch_size", defaults.max_batch_size),
        ),
    )
    _validate_batching(resolved)
    return resolved


def _validate_batching(batching: BatchingOptions) -> None:
    if batching.max_batch_size < 1 or batching.num_batch_threads < 1:
        raise invalid_argument("max_batch_size and num_batch_threads must be >= 1")
    if batching.max_enqueued_batches < 1 or batching.batch_timeout_micros < 0:
        raise invalid_argument("max_enqueued_batches must be >= 1, batch_timeout_micros >= 0")
    if batching.enable_large_batch_splitting:
        if batching.max_execution_batch_size < 1:
            raise invalid_argument("max_execution_batch_size must be >= 1")
        if batching.max_execution_batch_size > batching.max_batch_size:
            # shared_batch_scheduler.h: the input limit bounds the execution size
            raise invalid_argument(
                "max_batch_size (input_batch_size_limit) must be greater than or equal to "
                f"max_execution_batch_size; got {batching.max_batch_size} and "
                f"{batching.max_execution_batch_size}"
            )
    sizes = batching.allowed_batch_sizes
    # The model server's check (reference §6; servables/tensorflow/bundle_factory_util.cc
    # WrapSessionForBatching), with large-batch splitting on or off, and no check of the order.
    # batching_session.cc's stricter checks under splitting belong to CreateBasicBatchingSession,
    # which the model server does not call: a file they refuse still loads in TF Serving.
    if sizes and sizes[-1] != batching.max_batch_size:
        raise invalid_argument(
            "Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
            f"{sizes[-1]}; expected {batching.max_batch_size}"
        )


def load_prometheus_path(options: ServerOptions) -> str | None:
    """The metrics path when `--monitoring_config_file` enables Prometheus, else None."""
    if not options.monitoring_config_file:
        return None
    config = read_text_proto(
        options.monitoring_config_file, tfs_monitoring_config_pb2.MonitoringConfig()
    )
    if not config.prometheus_config.enable:
        return None
    return config.prometheus_config.path or DEFAULT_PROMETHEUS_PATH

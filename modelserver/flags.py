"""The command line: every flag of tensorflow_model_server this server takes (its names), parsed
once into ServerOptions at start-up."""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

PREFIX_MAP_ENV = "MODELSERVER_BASE_PATH_PREFIX_MAP"


@dataclass
class ServerOptions:
    """Every flag. Names match tensorflow_model_server (model_servers/main.cc) except the
    ones marked as local extensions."""

    port: int = 8500
    # The binary's default is 0 (REST off); the tensorflow/serving image always passes 8501,
    # and this server stands in for that image, so 8501 it is. 0 still turns REST off.
    rest_api_port: int = 8501
    rest_api_num_threads: int = 64
    rest_api_timeout_in_ms: int = 30000
    rest_api_enable_cors_support: bool = False
    enable_batching: bool = False
    batching_parameters_file: str = ""
    enable_per_model_batching_parameters: bool = False
    model_config_file: str = ""
    # Both poll intervals accept fractions here (TF Serving: whole seconds), for fast tests.
    model_config_file_poll_wait_seconds: float = 0.0
    model_name: str = "default"
    model_base_path: str = ""
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    file_system_poll_wait_seconds: float = 1.0
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    grpc_max_threads: int = 64
    grpc_channel_arguments: str = ""
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 1
    monitoring_config_file: str = ""
    allow_version_labels_for_unavailable_models: bool = False
    saved_model_tags: str = "serve"
    enable_grpc_healthcheck_service: bool = False
    # Local extensions (not in tensorflow_model_server):
    model_base_path_prefix_map: str = ""
    max_request_bytes: int = 64 * 1024 * 1024
    host: str = "0.0.0.0"
    rest_idle_timeout_seconds: float = 50.0


# The other flags of tensorflow_model_server (model_servers/main.cc): accepted, so that a
# command line written for the real server runs here too, but without effect (GPUs, TFLite,
# TLS, TPUs, thread pools...); a warning names each one given.
INERT_FLAGS: dict[str, type] = {
    "grpc_socket_path": str, "ssl_config_file": str,
    "use_alts_credentials": bool, "num_load_threads": int, "num_unload_threads": int,
    "flush_filesystem_caches": bool, "tensorflow_session_parallelism": int,
    "tensorflow_session_config_file": str, "platform_config_file": str,
    "per_process_gpu_memory_fraction": float, "remove_unused_fields_from_bundle_metagraph": bool,
    "prefer_tflite_model": bool, "num_tflite_pools": int, "num_tflite_interpreters_per_pool": int,
    "enable_signature_method_name_check": bool, "xla_cpu_compilation_enabled": bool,
    "xla_gpu_compilation_enabled": bool, "enable_profiler": bool,
    "thread_pool_factory_config_file": str, "mixed_precision": str, "skip_initialize_tpu": bool,
    "enable_serialization_as_tensor_content": bool,
}  # fmt: skip


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


_LOCAL_HELP = {
    "model_base_path_prefix_map": (
        "LOCAL EXTENSION. Comma-separated FROM=TO pairs: a base_path starting with FROM is "
        "read from TO instead, e.g. /models=./models so serving_config/models.config (written "
        "for the container, base_path /models/cifar10) works on a laptop. Absolute-path "
        f"validation still applies to the path as written. Env: {PREFIX_MAP_ENV}."
    ),
    "max_request_bytes": (
        "LOCAL EXTENSION. Largest request body (REST) / message (gRPC). Default: "
        f"{ServerOptions.max_request_bytes} ({ServerOptions.max_request_bytes >> 20} MiB)."
    ),
    "host": (
        f"LOCAL EXTENSION. Address to bind both ports to. Default: {ServerOptions.host}, all "
        "interfaces, as tensorflow_model_server; make serve passes 127.0.0.1."
    ),
    "rest_idle_timeout_seconds": (
        "LOCAL EXTENSION. A REST connection whose client sends nothing for this long (an idle "
        "keep-alive connection, or a request or body stalled half-way) is closed without an "
        "answer; 0 = never. Each connection holds a thread here (the real server's event loop "
        "holds only a socket, and sets no such timeout). Default: 50."
    ),
    "rest_api_port": (
        "REST port; 0 turns REST off. Default 8501, what the tensorflow/serving image's "
        "entrypoint passes (the bare tensorflow_model_server binary defaults to 0)."
    ),
    "rest_api_num_threads": "Accepted for compatibility; REST uses a thread per connection.",
    "rest_api_timeout_in_ms": (
        "Timeout for HTTP/REST API calls: a predict still running after this many ms is "
        "cancelled and answered 504. 0 = no limit. Default: 30000."
    ),
    "enable_per_model_batching_parameters": (
        "With --enable_batching: a version batches only if its folder holds "
        "batching_params.pbtxt (text BatchingParameters), and by those. Default: false."
    ),
    "enable_grpc_healthcheck_service": (
        "Enable the standard gRPC health service (grpc.health.v1.Health). Default: false."
    ),
    "grpc_channel_arguments": (
        "Comma-separated key=value gRPC server channel arguments, e.g. "
        "grpc.max_connection_age_ms=20000 (k8s/tfserving.yaml); a value that reads as a "
        "32-bit integer is passed as one, any other as a string. Default: none."
    ),
}


def channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """`--grpc_channel_arguments` as gRPC options, typed as model_servers/server.cc types them.
    (The real server crashes on an element without '='; this one refuses it at start-up.)"""
    pairs: list[tuple[str, int | str]] = []
    for item in text.split(",") if text else []:
        parts = item.split("=")  # as server.cc: "a=b=c" is key a, value b
        if len(parts) < 2 or not parts[0]:
            raise ValueError(f"--grpc_channel_arguments: {item!r} is not key=value")
        key, value = parts[0], parts[1]
        # absl::SimpleAtoi to int32: optional sign and spaces, digits only ("1_000" is text)
        number = int(value) if re.fullmatch(r"\s*[+-]?\d+\s*", value) else None
        fits = number is not None and -(2**31) <= number < 2**31
        pairs.append((key, number if fits else value))
    return pairs


def build_arg_parser() -> argparse.ArgumentParser:
    """One argparse flag per ServerOptions field; `--flag=value` and `--flag value` both work,
    and a bare boolean `--flag` means true (as with TF's flag parser)."""
    parser = argparse.ArgumentParser(
        prog="python -m modelserver",
        description="TF-Serving-compatible model server (gRPC + REST) for SavedModels.",
        epilog="Accepted for command lines written for tensorflow_model_server, without effect "
        "here (a warning names them): " + ", ".join(f"--{name}" for name in INERT_FLAGS) + ".",
        allow_abbrev=False,  # the real binary knows only whole flag names
    )
    for name, default in vars(ServerOptions()).items():
        help_text = _LOCAL_HELP.get(name, f"default: {default!r}")
        if isinstance(default, bool):
            parser.add_argument(
                f"--{name}", type=_bool, nargs="?", const=True, default=default, help=help_text
            )
        else:
            parser.add_argument(f"--{name}", type=type(default), default=default, help=help_text)
    for name, kind in INERT_FLAGS.items():
        extra = {"nargs": "?", "const": True} if kind is bool else {}
        parser.add_argument(
            f"--{name}",
            type=_bool if kind is bool else kind,
            default=None,
            help=argparse.SUPPRESS,  # listed once, in the epilog
            **extra,
        )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def parse_flags(argv: Sequence[str] | None = None) -> ServerOptions:
    parser = build_arg_parser()
    args = vars(parser.parse_args(argv))
    try:
        channel_arguments(args["grpc_channel_arguments"])
    except ValueError as error:
        parser.error(str(error))
    timeout = args["rest_idle_timeout_seconds"]
    if not 0 <= timeout < 1e9:  # also NaN; settimeout() refused these in every connection
        parser.error(f"--rest_idle_timeout_seconds must be 0 (no limit) or positive, not {timeout}")
    args.pop("version")
    for name in INERT_FLAGS:
        if args.pop(name) is not None:
            logging.getLogger(__name__).warning(
                "--%s is a tensorflow_model_server flag with no effect on this server; ignored",
                name,
            )
    options = ServerOptions(**args)
    if not options.model_base_path_prefix_map:
        options.model_base_path_prefix_map = os.environ.get(PREFIX_MAP_ENV, "")
    return options

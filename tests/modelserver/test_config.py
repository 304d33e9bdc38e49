"""Flags, config files and version-folder rules, checked in-process (no server needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow_serving")

import grpc
from google.protobuf import text_format
from tensorflow_serving.config import (
    file_system_storage_path_source_pb2,
    model_server_config_pb2,
)

from modelserver.config_files import (
    BasePathMap,
    load_batching_options,
    load_model_server_config,
    load_prometheus_path,
    validate_model_config_list,
)
from modelserver.flags import INERT_FLAGS, ServerOptions, build_arg_parser, parse_flags
from modelserver.status import ServingError
from modelserver.version_names import index_versions, parse_version, version_dirs
from modelserver.versions import aspired_versions

ROOT = Path(__file__).resolve().parents[2]
SERVING_CONFIG = ROOT / "serving_config"


def test_flags_use_tensorflow_model_server_names_and_forms():
    options = parse_flags(
        ["--port=9000", "--rest_api_port", "9001", "--enable_batching", "--model_name=m",
         "--model_base_path=/models/m", "--file_system_poll_wait_seconds=0",
         "--enable_model_warmup=false"]
    )  # fmt: skip
    assert (options.port, options.rest_api_port) == (9000, 9001)
    assert options.enable_batching is True and options.enable_model_warmup is False
    assert options.file_system_poll_wait_seconds == 0
    assert ServerOptions().port == 8500 and ServerOptions().rest_api_port == 8501


def test_help_and_flag_errors_come_before_tensorflow_loads():
    """`--help` took 3.5 s and printed TensorFlow's start-up lines before the usage text."""
    script = (
        "import sys\nfrom modelserver.__main__ import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as done:\n"
        "    print('exit', done.code, 'tensorflow' in sys.modules, file=sys.stderr)\n"
    )
    for args, code in ((["--help"], 0), (["--no_such_flag"], 2)):
        done = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.stderr.splitlines()[-1] == f"exit {code} False", done.stderr
    assert "--model_config_file" in subprocess.run(
        [sys.executable, "-m", "modelserver", "--help"], cwd=ROOT, capture_output=True,
        text=True, timeout=60).stdout  # fmt: skip


# Every flag of tensorflow_model_server (model_servers/main.cc at the reference's commit).
_MAIN_CC_FLAGS = """
allow_version_labels_for_unavailable_models batching_parameters_file enable_batching
enable_grpc_healthcheck_service enable_model_warmup enable_per_model_batching_parameters
enable_profiler enable_serialization_as_tensor_content enable_signature_method_name_check
file_system_poll_wait_seconds flush_filesystem_caches grpc_channel_arguments grpc_max_threads
grpc_socket_path load_retry_interval_micros max_num_load_retries mixed_precision
model_base_path model_config_file model_config_file_poll_wait_seconds model_name
monitoring_config_file num_load_threads num_request_iterations_for_warmup
num_tflite_interpreters_per_pool num_tflite_pools num_unload_threads
per_process_gpu_memory_fraction platform_config_file port prefer_tflite_model
remove_unused_fields_from_bundle_metagraph rest_api_enable_cors_support rest_api_num_threads
rest_api_port rest_api_timeout_in_ms saved_model_tags skip_initialize_tpu ssl_config_file
tensorflow_inter_op_parallelism tensorflow_intra_op_parallelism tensorflow_session_config_file
tensorflow_session_parallelism thread_pool_factory_config_file use_alts_credentials version
xla_cpu_compilation_enabled xla_gpu_compilation_enabled
"""
REAL_FLAGS = set(_MAIN_CC_FLAGS.split())


def test_every_flag_of_the_real_binary_is_accepted(caplog):
    """A command line written for tensorflow_model_server runs here; the flags that change
    nothing here (GPU, TLS, TFLite...) are named in a warning, not refused."""
    local = {"model_base_path_prefix_map", "max_request_bytes", "host", "rest_idle_timeout_seconds"}
    parser_flags = {a.dest for a in build_arg_parser()._actions if a.dest != "help"}
    assert parser_flags - local == REAL_FLAGS
    with caplog.at_level("WARNING"):
        options = parse_flags(
            ["--port=9000", "--enable_serialization_as_tensor_content",
             "--per_process_gpu_memory_fraction=0.5", "--grpc_socket_path=/tmp/s"]
        )  # fmt: skip
    assert options.port == 9000
    ignored = {name for name in INERT_FLAGS if f"--{name} is a" in caplog.text}
    assert ignored == {
        "enable_serialization_as_tensor_content", "per_process_gpu_memory_fraction",
        "grpc_socket_path",
    }  # fmt: skip


def test_a_channel_argument_without_a_value_is_refused_at_start_up(capsys):
    with pytest.raises(SystemExit):
        parse_flags(["--grpc_channel_arguments=grpc.max_connection_age_ms=1000,"])
    assert "is not key=value" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_an_idle_timeout_sockets_refuse_is_refused_at_start_up(capsys, value):
    """They passed, and every REST connection then died in settimeout() with a traceback."""
    with pytest.raises(SystemExit):
        parse_flags([f"--rest_idle_timeout_seconds={value}"])
    assert "must be 0 (no limit) or positive" in capsys.readouterr().err
    assert parse_flags(["--rest_idle_timeout_seconds=0"]).rest_idle_timeout_seconds == 0


def test_shortened_flag_names_are_refused_as_by_the_real_binary():
    with pytest.raises(SystemExit):
        parse_flags(["--model_nam=m"])  # argparse would take it for --model_name


def test_timeout_and_health_flags_have_tf_servings_defaults():
    defaults = ServerOptions()
    assert defaults.rest_api_timeout_in_ms == 30000  # model_servers/server.h
    assert defaults.enable_grpc_healthcheck_service is False
    options = parse_flags(["--rest_api_timeout_in_ms=0", "--enable_grpc_healthcheck_service"])
    assert options.rest_api_timeout_in_ms == 0 and options.enable_grpc_healthcheck_service


def test_shipped_serving_config_files_parse_with_the_real_protos():
    options = ServerOptions(
        model_config_file=str(SERVING_CONFIG / "models.config"),
        enable_batching=True,
        batching_parameters_file=str(SERVING_CONFIG / "batching.config"),
        monitoring_config_file=str(SERVING_CONFIG / "monitoring.config"),
    )
    config = load_model_server_config(options)
    validate_model_config_list(config.model_config_list)
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path) == ("cifar10", "/models/cifar10")
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    batching = load_batching_options(options)
    # Requests of up to 256 images, run as batches of at most 32.
    assert (batching.max_batch_size, batching.max_execution_batch_size) == (256, 32)
    assert batching.enable_large_batch_splitting and batching.num_batch_threads >= 1
    assert load_prometheus_path(options) == "/monitoring/prometheus/metrics"


def _config(text: str) -> model_server_config_pb2.ModelConfigList:
    return text_format.Parse(text, model_server_config_pb2.ModelConfigList())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('config { name: "m" base_path: "models/m" model_platform: "tensorflow" }',
         "Expected model m to have an absolute path or URI; got base_path()=models/m"),
        ('config { name: "m" base_path: "/a" model_platform: "tensorflow" } '
         'config { name: "m" base_path: "/b" model_platform: "tensorflow" }',
         "Illegal to list model m multiple times in config list"),
        ('config { name: "m" base_path: "/a" }',
         "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
         "ModelServerConfig::model_platform, model name is m"),
        ('config { name: "m" base_path: "/a" model_platform: "pytorch" }',
         "Model m requests unsupported platform pytorch"),
        ('config { name: "m" base_path: "/a" model_type: OTHER }',
         "ModelServerConfig::model_type choice 2 not supported."),
    ],
)  # fmt: skip
def test_invalid_model_config_lists_are_rejected_like_server_core(text, message):
    with pytest.raises(ServingError) as caught:
        validate_model_config_list(_config(text))
    assert caught.value.message == message
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_base_path_map_is_a_prefix_replacement(tmp_path):
    mapped = BasePathMap(f"/models={tmp_path}/m,/other=rel", cwd=tmp_path)
    assert mapped("/models/cifar10") == f"{tmp_path}/m/cifar10"
    assert mapped("/models") == f"{tmp_path}/m"
    assert mapped("/modelsX/a") == "/modelsX/a"
    assert mapped("/other/x") == f"{tmp_path}/rel/x"
    with pytest.raises(ServingError):
        BasePathMap("models=./models")


def test_batching_file_without_enable_batching_is_a_startup_error(tmp_path):
    path = tmp_path / "b.config"
    path.write_text("max_batch_size { value: 8 }")
    with pytest.raises(ServingError, match="batching_parameters_file is set without"):
        load_batching_options(ServerOptions(batching_parameters_file=str(path)))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_batch_size { value: 8 } allowed_batch_sizes: 4",
         "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 4; "
         "expected 8"),
        ("max_batch_size: 8", "Could not parse"),
        # Splitting on, the model server still wants max_batch_size last (reference §6).
        ("max_batch_size { value: 64 } enable_large_batch_splitting { value: true } "
         "max_execution_batch_size { value: 16 } allowed_batch_sizes: [8, 16]",
         "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 16; "
         "expected 64"),
        ("max_batch_size { value: 64 } enable_large_batch_splitting { value: true } "
         "max_execution_batch_size { value: 32 } allowed_batch_sizes: 128",
         "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 128; "
         "expected 64"),
        ("max_batch_size { value: 64 } enable_large_batch_splitting { value: true } "
         "max_execution_batch_size { value: 128 }",
         "must be greater than or equal to max_execution_batch_size; got 64 and 128"),
    ],
)  # fmt: skip
def test_bad_batching_files_are_rejected(tmp_path, text, message):
    path = tmp_path / "b.config"
    path.write_text(text)
    options = ServerOptions(enable_batching=True, batching_parameters_file=str(path))
    with pytest.raises(ServingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_batching_options(options)


def test_split_batches_may_be_padded_to_sizes_that_end_at_max_batch_size(tmp_path):
    """What TF Serving's model server loads (bundle_factory_util.cc): the last allowed size is
    max_batch_size, even where split batches run at most max_execution_batch_size rows."""
    path = tmp_path / "b.config"
    path.write_text(
        "max_batch_size { value: 64 } enable_large_batch_splitting { value: true } "
        "max_execution_batch_size { value: 16 } allowed_batch_sizes: [4, 16, 64]"
    )
    options = ServerOptions(enable_batching=True, batching_parameters_file=str(path))
    assert load_batching_options(options).allowed_batch_sizes == (4, 16, 64)


def test_an_unset_execution_batch_size_is_the_max_batch_size(tmp_path):
    """bundle_factory_util.h: with splitting on and max_execution_batch_size unset, batches run
    up to max_batch_size (the proto's own default, 1000, would let 1000-row batches run)."""
    path = tmp_path / "b.config"
    path.write_text("max_batch_size { value: 32 } enable_large_batch_splitting { value: true }")
    options = ServerOptions(enable_batching=True, batching_parameters_file=str(path))
    assert load_batching_options(options).max_execution_batch_size == 32


def test_version_folder_names_parse_like_simple_atoi():
    assert [parse_version(n) for n in ["1", "0007", " 3 ", "+4"]] == [1, 7, 3, 4]
    assert [
        parse_version(n)
        for n in ["1.tmp", ".tmp-3", "tmp", "", "1_0", "99999999999999999999", "٣", "²"]
    ] == [None] * 8


def test_two_names_for_one_version_keep_the_last_in_sorted_order(tmp_path):
    """The server, the exporter and make serve's preflight index a base path alike: "007"
    sorts before "7", so "7" is version 7 and "007" is reported as ignored (this server kept
    the first, TF Serving the last); a file with a version name is a version to the server
    (TF Serving does not check) but not a folder."""
    names = ["7", "007", "tmp", "3", ".tmp-9-x", "+3"]
    # The last in sorted order wins, as in TF Serving (a std::set of the names, then a map
    # whose entry each later name overwrites).
    assert index_versions(names) == ({3: "3", 7: "7"}, [(3, "3", "+3"), (7, "7", "007")])
    for name in ("7", "007", "2"):
        (tmp_path / name).mkdir()
    (tmp_path / "5").write_text("not a model")
    assert version_dirs(tmp_path) == {2: tmp_path / "2", 7: tmp_path / "7"}
    assert version_dirs(tmp_path / "missing") == {}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("", {5}),
        ("latest { num_versions: 2 }", {5, 3}),
        ("all {}", {1, 3, 5}),
        ("specific { versions: 1 versions: 4 }", {1}),
    ],
)
def test_version_policies_choose_aspired_versions(policy, expected):
    policy_type = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig
    proto = text_format.Parse(policy, policy_type.ServableVersionPolicy())
    assert aspired_versions(proto, [1, 3, 5], "m") == expected

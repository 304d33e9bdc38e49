"""Version rollout, rollback, broken versions, policies, labels and config reload, with a real
server watching a real base path (reference §1, §2)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from modelserver_harness import MODEL, pixels_request, write_models_config
from polling import eventually

from modelserver.config_files import model_config
from modelserver.servable import WARMUP_FILE

tf = pytest.importorskip("tensorflow")
from tensorflow_serving.apis import (  # noqa: E402
    get_model_status_pb2,
    model_management_pb2,
)
from tensorflow_serving.config import model_server_config_pb2  # noqa: E402
from tensorflow_serving.config.model_server_config_pb2 import ModelConfig  # noqa: E402

FAST_POLL = "--file_system_poll_wait_seconds=0.2"
IMAGES = np.random.default_rng(1).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)


def served_version(stub, **spec) -> int:
    """The version that answers a Predict for `spec` (version=, label=, or none: latest)."""
    return stub.Predict(pixels_request(IMAGES, **spec), timeout=30).model_spec.version.value


class Load:
    """Clients sending Predicts without pause (gRPC and REST) until stopped."""

    def __init__(self, server, grpc_clients: int = 3, rest_clients: int = 2) -> None:
        self.versions: Counter[int] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        stub = server.prediction_stub()
        url = f"{server.rest}/v1/models/{MODEL}:predict"
        self._threads = [
            threading.Thread(target=self._grpc, args=(stub,)) for _ in range(grpc_clients)
        ]
        self._threads += [
            threading.Thread(target=self._rest, args=(url,)) for _ in range(rest_clients)
        ]

    def _record(self, version: int | None, error: str | None) -> None:
        with self._lock:
            if error is not None:
                self.errors.append(error)
            else:
                self.versions[version] += 1

    def _grpc(self, stub) -> None:
        request = pixels_request(IMAGES)
        while not self._stop.is_set():
            try:
                self._record(stub.Predict(request, timeout=30).model_spec.version.value, None)
            except grpc.RpcError as error:
                self._record(None, f"gRPC {error.code()}: {error.details()}")

    def _rest(self, url: str) -> None:
        body = {"signature_name": "pixels", "inputs": IMAGES.tolist()}
        with requests.Session() as session:
            while not self._stop.is_set():
                try:
                    response = session.post(url, json=body, timeout=30)
                except requests.RequestException as failure:  # a dropped connection counts
                    self._record(None, f"REST {type(failure).__name__}: {failure}")
                    continue
                error = None if response.status_code == 200 else f"REST {response.text}"
                self._record(0 if error is None else None, error)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def remove_version(base: Path, version: int) -> None:
    """Like export's pruning: rename out of sight first, then delete."""
    hidden = base / f".removed-{version}"
    os.rename(base / str(version), hidden)
    shutil.rmtree(hidden)


def test_rollout_and_rollback_under_load_lose_no_request(start_server, tiny_model_base,
                                                         add_model_version):  # fmt: skip
    server = start_server(
        f"--model_name={MODEL}", f"--model_base_path={tiny_model_base}", FAST_POLL
    )
    with Load(server) as load:
        add_model_version(tiny_model_base, 2)
        server.wait_states({2: "AVAILABLE", 1: "END"})
        # Unversioned requests move to version 2 once it is AVAILABLE.
        assert served_version(server.prediction_stub()) == 2
        remove_version(tiny_model_base, 2)
        # Rollback: version 1 is re-loaded from disk before version 2 is unloaded.
        server.wait_states({1: "AVAILABLE", 2: "END"})
        seen_during_rollback = sum(load.versions.values())
    assert load.errors == []
    assert load.versions[1] > 0 and load.versions[2] > 0 and load.versions[0] > 0
    assert sum(load.versions.values()) > seen_during_rollback > 0
    status = requests.get(f"{server.rest}/v1/models/{MODEL}", timeout=10).json()
    assert [s["version"] for s in status["model_version_status"]] == ["2", "1"]  # newest first
    assert served_version(server.prediction_stub()) == 1
    log = server.log()
    assert "Successfully loaded servable version {name: cifar10 version: 2}" in log
    assert "Unloaded servable version {name: cifar10 version: 2}" in log
    # Why it went, for an operator: its folder, not the policy.
    assert f"Version 2 of model cifar10: its folder is gone from {tiny_model_base}" in log


def _publish_broken(base: Path, version: int, source: Path, damage) -> None:
    temp = base / f".tmp-broken-{version}"
    shutil.copytree(source, temp)
    damage(temp)
    os.rename(temp, base / str(version))


def _truncate_graph(folder: Path) -> None:
    graph = folder / "saved_model.pb"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])


def _drop_variables(folder: Path) -> None:
    shutil.rmtree(folder / "variables")


def _truncate_variables_data(folder: Path) -> None:
    (shard,) = (folder / "variables").glob("variables.data-*")
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])


def test_broken_versions_are_reported_and_the_old_one_keeps_serving(
    start_server, tiny_model_base, tiny_savedmodel, add_model_version
):
    server = start_server(
        f"--model_name={MODEL}", f"--model_base_path={tiny_model_base}", FAST_POLL,
        "--max_num_load_retries=1", "--load_retry_interval_micros=200000",
    )  # fmt: skip
    for name in (".tmp-7", "abc", "8.tmp"):  # not versions: ignored
        shutil.copytree(tiny_savedmodel(1), tiny_model_base / name)
    with Load(server, grpc_clients=2, rest_clients=1) as load:
        damages = ((2, _truncate_graph), (3, _drop_variables), (5, _truncate_variables_data))
        for version, damage in damages:
            _publish_broken(tiny_model_base, version, tiny_savedmodel(1), damage)
            server.wait_states({version: "END", 1: "AVAILABLE"})
        add_model_version(tiny_model_base, 6)
        server.wait_states({6: "AVAILABLE", 1: "END"})
    assert load.errors == [] and load.versions[1] > 0
    status = requests.get(f"{server.rest}/v1/models/{MODEL}", timeout=10).json()
    by_version = {int(s["version"]): s for s in status["model_version_status"]}
    assert set(by_version) == {1, 2, 3, 5, 6}
    for version in (2, 3, 5):
        assert by_version[version]["state"] == "END"
        assert by_version[version]["status"]["error_code"] != "OK"
        assert by_version[version]["status"]["error_message"]
    # TensorFlow's codes, as its own loader reports them (was UNKNOWN for the last one).
    assert by_version[2]["status"]["error_code"] == "DATA_LOSS"
    assert by_version[3]["status"]["error_code"] == "NOT_FOUND"
    assert by_version[5]["status"]["error_code"] == "OUT_OF_RANGE"
    # The missing variables are named without tf.saved_model's advice about distributed
    # devices, which sent operators the wrong way.
    assert "variables" in by_version[3]["status"]["error_message"]
    assert "device" not in by_version[3]["status"]["error_message"]
    assert by_version[6]["status"] == {"error_code": "OK", "error_message": ""}
    log = server.log()
    assert "Retrying load of {name: cifar10 version: 2} (attempt 2 of 2)" in log
    assert "Loading servable: {name: cifar10 version: 2}" in log and "failed" in log
    # The end of the retries is said, and what is served instead (it used to fall silent).
    assert (
        "Gave up loading servable {name: cifar10 version: 2} after 2 attempt(s); "
        "serving version(s) 1"
    ) in log


def test_python_errors_of_a_load_map_to_the_codes_tensorflow_would_report():
    from modelserver.status import from_exception, from_load_exception

    cases = {
        PermissionError(13, "Permission denied", "/m/7"): grpc.StatusCode.PERMISSION_DENIED,
        IndexError("Read less bytes than requested"): grpc.StatusCode.OUT_OF_RANGE,
        FileNotFoundError(2, "No such file or directory", "/m/7"): grpc.StatusCode.NOT_FOUND,
        RuntimeError("something else"): grpc.StatusCode.UNKNOWN,
    }
    assert {error: from_load_exception(error).code for error in cases} == cases
    # At request time a Python IndexError is the server's bug, not the client's range error.
    assert from_exception(IndexError("list index out of range")).code == grpc.StatusCode.UNKNOWN


def _reload(server, *models: ModelConfig) -> model_management_pb2.ReloadConfigResponse:
    request = model_management_pb2.ReloadConfigRequest()
    request.config.model_config_list.config.extend(models)
    return server.model_stub().HandleReloadConfigRequest(request, timeout=120)


def test_reload_config_policies_labels_and_removal(start_server, tmp_path, tiny_model_base,
                                                    add_model_version):  # fmt: skip
    add_model_version(tiny_model_base, 2)
    config = write_models_config(tmp_path / "models.config",
                                 model_config(MODEL, tiny_model_base, policy="all {}"))  # fmt: skip
    server = start_server(f"--model_config_file={config}", FAST_POLL)
    server.wait_states({1: "AVAILABLE", 2: "AVAILABLE"})
    stub = server.prediction_stub()

    _reload(
        server,
        model_config(MODEL, tiny_model_base, policy="all {}", labels={"stable": 1, "canary": 2}),
    )
    assert served_version(stub, label="stable") == 1
    assert served_version(stub, label="canary") == 2
    rest = requests.post(
        f"{server.rest}/v1/models/{MODEL}/labels/stable:predict",
        json={"signature_name": "pixels", "inputs": IMAGES.tolist()},
        timeout=30,
    )
    assert rest.status_code == 200  # fmt: skip

    with pytest.raises(grpc.RpcError) as caught:
        _reload(server, model_config(MODEL, tiny_model_base, policy="all {}", labels={"stable": 9}))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details() == (
        "Request to assign label to version 9 of model cifar10, which is not currently "
        "available for inference"
    )
    assert served_version(stub, label="stable") == 1

    response = _reload(
        server, model_config(MODEL, tiny_model_base, policy="specific { versions: 1 }")
    )
    assert response.status.error_code == 0
    server.wait_states({1: "AVAILABLE", 2: "END"})
    with pytest.raises(grpc.RpcError) as caught:  # labels were replaced with the config
        stub.Predict(pixels_request(IMAGES, label="canary"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    other = tmp_path / "other"
    add_model_version(other, 3)
    _reload(server, model_config("other", other))  # blocks until "other" loaded
    assert server.states("other") == {3: "AVAILABLE"}
    server.wait_states({1: "END"})  # cifar10 left the config: unloaded, still listed
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(pixels_request(IMAGES), timeout=30)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    # A later reload says nothing more of cifar10: it was logged as removed at every one.
    _reload(server, model_config("other", other, policy="all {}"))
    assert server.log().count(f"Model {MODEL} removed from the config") == 1


def test_config_file_poll_applies_changes_without_restart(start_server, tmp_path, tiny_model_base,
                                                           add_model_version):  # fmt: skip
    add_model_version(tiny_model_base, 2)
    config = write_models_config(tmp_path / "models.config", model_config(MODEL, tiny_model_base))
    server = start_server(f"--model_config_file={config}", FAST_POLL,
                          "--model_config_file_poll_wait_seconds=0.5")  # fmt: skip
    assert server.states() == {2: "AVAILABLE"}  # latest policy: only the newest
    write_models_config(
        config, model_config(MODEL, tiny_model_base, policy="latest { num_versions: 2 }")
    )
    server.wait_states({1: "AVAILABLE", 2: "AVAILABLE"})
    assert (
        requests.get(f"{server.rest}/monitoring/prometheus/metrics", timeout=10).status_code == 404
    )


def test_config_files_and_base_paths_that_cannot_be_read_do_not_stop_the_polling(
    start_server, tmp_path, tiny_model_base, add_model_version
):
    """A config file that is not UTF-8 text, and a base path with a NUL byte (os.listdir raises
    ValueError, not OSError), each ended a poller thread for good: later config edits and new
    version folders were never seen. Now both are logged errors, and polling goes on."""
    config = write_models_config(tmp_path / "models.config", model_config(MODEL, tiny_model_base))
    server = start_server(f"--model_config_file={config}", FAST_POLL,
                          "--model_config_file_poll_wait_seconds=0.3")  # fmt: skip
    config.write_bytes(b"model_config_list {\xff\xfe garbage")
    eventually(server.log, lambda log: "not UTF-8 text" in log)
    write_models_config(
        config, model_config(MODEL, tiny_model_base), model_config("other", "/tmp/x\x00y")
    )
    eventually(server.log, lambda log: "Unable to list base path /tmp/x" in log)
    add_model_version(tiny_model_base, 2)  # both pollers still run: the new version is served
    server.wait_states({2: "AVAILABLE", 1: "END"})
    assert "Traceback" not in server.log()


def test_bad_startup_configs_exit_with_the_tf_serving_error(
    start_server, tmp_path, tiny_model_base
):
    labelled = write_models_config(
        tmp_path / "labels.config", model_config(MODEL, tiny_model_base, labels={"stable": 1})
    )
    batching = tmp_path / "batching.config"
    batching.write_text("max_batch_size { value: 8 } allowed_batch_sizes: 4")
    # (The same checks in-process, with every message: test_config.py.)
    cases = [
        ([f"--model_config_file={labelled}"], "Request to assign label to version 1"),
        ([f"--model_name={MODEL}", f"--model_base_path={tiny_model_base}", "--enable_batching",
          f"--batching_parameters_file={batching}"], "Last entry in allowed_batch_sizes"),
        # model_servers/server.cc: gRPC needs a port (the last --port given wins)
        ([f"--model_name={MODEL}", f"--model_base_path={tiny_model_base}", "--port=0"],
         "INVALID_ARGUMENT: At least one of server_options.grpc_port or "
         "server_options.grpc_socket_path must be set."),
    ]  # fmt: skip
    servers = [(start_server(*args, ready=False), message) for args, message in cases]
    allowed = start_server(
        f"--model_config_file={labelled}",
        "--allow_version_labels_for_unavailable_models",
        ready=False,
    )
    for server, message in servers:
        assert server.wait_exit() == 1
        assert message in server.log()
    allowed.wait_ready()
    response = allowed.prediction_stub().Predict(pixels_request(IMAGES, label="stable"), timeout=30)
    assert response.model_spec.version.value == 1


def test_aspired_versions_are_listed_as_start_before_their_turn(tiny_model_base, add_model_version):
    """TF Serving lists every aspired version as START once it is aspired, not when its load
    begins (reference §3.4). In-process, so that the first load can be held at a gate: the
    loader is the real SavedModel loader behind an Event."""
    from modelserver.servable import Servable
    from modelserver.versions import ManagerOptions, VersionManager

    for version in (2, 3):
        add_model_version(tiny_model_base, version)
    gate = threading.Event()

    def gated_loader(name: str, version: int, path: Path) -> Servable:
        gate.wait(60)
        return Servable(name, version, path, ["serve"])

    manager = VersionManager(gated_loader, ManagerOptions(file_system_poll_wait_seconds=0))
    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.config.append(model_config(MODEL, tiny_model_base, policy="all {}"))
    try:
        manager.apply_config(config, wait=False)
        states = eventually(lambda: {v: s.state for v, s in manager.status(MODEL)},
                           lambda states: states.get(3) == "LOADING")  # fmt: skip
        assert states == {3: "LOADING", 2: "START", 1: "START"}  # newest first, one at a time
        gate.set()
        eventually(lambda: {s.state for _, s in manager.status(MODEL)},
                  lambda states: states == {"AVAILABLE"})  # fmt: skip
    finally:
        gate.set()
        manager.stop()


def test_the_log_names_what_loaded_and_sigterm_stops_the_server_cleanly(
    start_server, tiny_model_base
):
    server = start_server(f"--model_name={MODEL}", f"--model_base_path={tiny_model_base}")
    log = server.log()
    assert "Successfully loaded servable version {name: cifar10 version: 1}" in log
    # The version's warm-up records were replayed before it served (TF Serving's log line).
    records = sum(1 for _ in tf.data.TFRecordDataset(str(tiny_model_base / "1" / WARMUP_FILE)))
    assert records > 0
    assert f"Finished reading {records} warmup records for {MODEL} version 1" in log
    # The callable signatures only: the init op is in the metadata, as TF Serving's, not here.
    assert f"Signatures of {MODEL} version 1: ['pixels', 'serving_default']" in log
    server.process.terminate()
    assert server.process.wait(timeout=20) == 0
    assert "Shutting down" in server.log()
    for port in (server.grpc_port, server.rest_port):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/", timeout=5)


def test_warmup_off_replays_no_records(start_server, tiny_model_base):
    server = start_server(
        f"--model_name={MODEL}",
        f"--model_base_path={tiny_model_base}",
        "--enable_model_warmup=false",
    )
    assert "Successfully loaded servable version {name: cifar10 version: 1}" in server.log()
    assert "warmup records" not in server.log()


def test_a_busy_grpc_port_fails_the_start_with_tf_servings_error(start_server, tiny_model_base):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        server = start_server(f"--model_name={MODEL}", f"--model_base_path={tiny_model_base}",
                              f"--port={port}", ready=False)  # fmt: skip
        assert server.wait_exit() == 1
    log = server.log()
    assert "INVALID_ARGUMENT: Failed to BuildAndStart gRPC server" in log
    assert f"127.0.0.1:{port}" in log and "already in use" in log
    assert "Traceback" not in log


def test_a_busy_rest_port_leaves_grpc_serving_as_tf_serving_does(start_server, tiny_model_base):
    """model_servers/server.cc logs "Failed to start HTTP Server" and serves gRPC alone."""
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        server = start_server(f"--model_name={MODEL}", f"--model_base_path={tiny_model_base}",
                              f"--rest_api_port={port}", ready=False)  # fmt: skip
        deadline = time.monotonic() + 120
        while "Failed to start HTTP Server" not in server.log() and time.monotonic() < deadline:
            assert server.process.poll() is None, server.log()
            time.sleep(0.2)
        assert f"Failed to start HTTP Server at 127.0.0.1:{port}" in server.log()
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = MODEL
        status = server.model_stub().GetModelStatus(request, timeout=30)
    assert [v.state for v in status.model_version_status] == [
        get_model_status_pb2.ModelVersionStatus.AVAILABLE
    ]
    assert "Traceback" not in server.log()


def test_startup_waits_for_the_newest_version_only(
    start_server, tmp_path, tiny_model_base, tiny_savedmodel, add_model_version
):
    """The ports open once each model's newest version is AVAILABLE; an older version that fails
    to load is reported, not fatal (reference §0: load_servables_fast waits for Latest)."""
    add_model_version(tiny_model_base, 3)
    _publish_broken(tiny_model_base, 2, tiny_savedmodel(1), _drop_variables)
    config = write_models_config(
        tmp_path / "models.config", model_config(MODEL, tiny_model_base, policy="all {}")
    )
    server = start_server(f"--model_config_file={config}", "--max_num_load_retries=0")
    first = server.states()  # read once, as the ports open: no polling may hide a late load
    assert first.get(3) == "AVAILABLE", first
    states = server.wait_states({3: "AVAILABLE", 2: "END", 1: "AVAILABLE"})
    assert set(states) == {1, 2, 3}
    for version in (1, 3):
        assert served_version(server.prediction_stub(), version=version) == version


def test_the_start_up_wait_names_the_load_error_it_waits_out(
    start_server, tmp_path, tiny_savedmodel
):
    """A base path whose only version is broken: start-up waits out the load retries, as TF
    Serving does, and its log lines every 10 s named the cause and the retries left (they said
    "no loadable version yet", and the operator of `make serve` waited minutes not knowing)."""
    base = tmp_path / MODEL
    _publish_broken(base, 1, tiny_savedmodel(1), _truncate_graph)
    server = start_server(
        f"--model_name={MODEL}", f"--model_base_path={base}",
        "--max_num_load_retries=1", "--load_retry_interval_micros=12000000", ready=False,
    )  # fmt: skip
    assert server.wait_exit() != 0
    log = server.log()
    assert "Still waiting for model cifar10: version 1 failed to load (DATA_LOSS: " in log, log
    assert "); retry 1 of 1 in 12 s" in log
    # load_servables_fast.cc's layout: "{", then per servable "{" ServableId::DebugString()
    # (itself "{name: ... version: ...}") " due to error: " CODE: message "}, ", then "}".
    assert (
        f"1 servable(s) did not become available: {{{{{{name: {MODEL} version: 1}} due to error: "
        "DATA_LOSS: " in log
    ), log


def test_a_stop_before_the_first_version_loads_opens_no_port(start_server, tmp_path):
    """SIGTERM while the server waits for a model's first version: it exits without opening
    its ports (it once opened both after "Shutting down", with no model behind them)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    server = start_server(f"--model_name={MODEL}", f"--model_base_path={empty}", ready=False)
    deadline = time.monotonic() + 60
    while "No versions of model" not in server.log():
        assert time.monotonic() < deadline and server.process.poll() is None, server.log()
        time.sleep(0.2)
    server.process.terminate()
    assert server.wait_exit() == 0, server.log()
    log = server.log()
    assert "Shutting down" in log
    assert "Running gRPC" not in log and "Exporting HTTP/REST" not in log, log


def test_a_model_back_in_the_config_is_loaded_afresh(
    start_server, tmp_path, tiny_model_base, tiny_savedmodel, add_model_version
):
    """A model that leaves the config and comes back is new to TF Serving: the reload waits for
    it and a version that failed before is tried again (reference §1, §4)."""
    config = write_models_config(tmp_path / "models.config", model_config(MODEL, tiny_model_base))
    # No background polls: the base paths are read only when a config is applied, so the fixed
    # folder below cannot be picked up any other way than by the model's return.
    server = start_server(f"--model_config_file={config}", "--file_system_poll_wait_seconds=0",
                          "--max_num_load_retries=0")  # fmt: skip
    other = tmp_path / "other"
    other.mkdir()
    _publish_broken(other, 3, tiny_savedmodel(1), _truncate_graph)
    both = (model_config(MODEL, tiny_model_base), model_config("other", other))

    with pytest.raises(grpc.RpcError) as caught:
        _reload(server, *both)
    # A reload waits in server_core.cc: "model(s)", not start-up's "servable(s)".
    assert caught.value.details().startswith(
        "1 model(s) did not become available: {{{name: other version: 3} due to error: "
    ), caught.value.details()
    assert caught.value.details().endswith("}, }")
    assert server.states("other") == {3: "END"}

    shutil.rmtree(other / "3")  # the operator fixes the folder...
    add_model_version(other, 3)
    # ...which a reload of the same config does not retry (nothing in it is new)...
    assert _reload(server, *both).status.error_code == 0
    assert server.states("other") == {3: "END"}
    _reload(server, model_config(MODEL, tiny_model_base))  # ...so takes it out and puts it back
    response = _reload(server, *both)  # blocks until "other" is loaded
    assert response.status.error_code == 0
    assert server.states("other") == {3: "AVAILABLE"}


def test_an_empty_config_starts_a_server_with_no_models_until_a_real_one(
    start_server, tmp_path, tiny_model_base
):
    """server_core.cc: "Taking no action for empty config", and a later config is accepted;
    once a model list is in force, an empty config is refused and the models stay."""
    config = tmp_path / "models.config"
    config.write_text("")
    server = start_server(f"--model_config_file={config}", FAST_POLL,
                          "--model_config_file_poll_wait_seconds=0.5", ready=False)  # fmt: skip
    answer = eventually(lambda: _get_or_none(f"{server.rest}/v1/models/{MODEL}"),
                       lambda response: response is not None)  # fmt: skip
    assert answer.status_code == 404
    assert answer.json() == {"error": f"Could not find any versions of model {MODEL}"}
    assert "Taking no action for empty config." in server.log()
    write_models_config(config, model_config(MODEL, tiny_model_base))
    server.wait_states({1: "AVAILABLE"})
    config.write_text("")
    eventually(server.log, lambda log: "Cannot transition to requested config" in log)
    assert server.states() == {1: "AVAILABLE"}


def _get_or_none(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=5)
    except requests.ConnectionError:
        return None


@pytest.mark.parametrize("reload", ["removed", "policy"])
def test_a_poll_under_the_old_config_does_not_undo_a_reload(
    tiny_model_base, tmp_path, monkeypatch, reload
):
    """The poller lists a base path without the lock. A reload that removed the model while
    its folder was being listed got undone: the poll committed what it found, the model was
    loaded again and served until a restart; a new policy flipped back to the old one's
    versions for a poll's time (an operator's fault review; reference §1: the new config
    replaces the old entirely). In-process, with the listing of one base path held at a gate:
    the slow network disk the race needs, made certain."""
    from modelserver import versions
    from modelserver.servable import Servable
    from modelserver.versions import ManagerOptions, VersionManager

    other = tmp_path / "other"
    shutil.copytree(tiny_model_base, other)
    listing, release = threading.Event(), threading.Event()
    real_listdir = os.listdir

    armed = []  # once: the reload's own poll of the folder must not wait

    def held_listdir(path):
        if Path(path) == other and armed:
            armed.clear()
            listing.set()
            release.wait(60)
        return real_listdir(path)

    monkeypatch.setattr(versions.os, "listdir", held_listdir)

    def loader(name: str, version: int, path: Path) -> Servable:
        return Servable(name, version, path, ["serve"])

    def config_of(*models, policy=""):
        config = model_server_config_pb2.ModelServerConfig()
        for name, base in models:
            config.model_config_list.config.append(
                model_config(name, base, policy=policy if name == "other" else "")
            )
        return config

    manager = VersionManager(loader, ManagerOptions(file_system_poll_wait_seconds=0))
    try:
        manager.apply_config(config_of((MODEL, tiny_model_base), ("other", other)), wait=True)
        assert {s.state for _, s in manager.status("other")} == {"AVAILABLE"}
        armed.append(True)
        poll = threading.Thread(target=manager._poll, args=("other",))  # the poller's turn
        poll.start()
        assert listing.wait(30)  # it is listing the folder, under the config with "other"
        if reload == "removed":
            manager.apply_config(config_of((MODEL, tiny_model_base)), wait=False)
        else:  # a version that is not there: nothing of "other" is wanted any more
            both = (MODEL, tiny_model_base), ("other", other)
            manager.apply_config(config_of(*both, policy="specific { versions: 99 }"), wait=False)
        release.set()
        poll.join(30)
        # What the stale poll would have committed (synchronously, before join returned): the
        # model's versions aspired again, to be loaded and served.
        assert manager._models["other"].aspired == set()
        eventually(lambda: {s.state for _, s in manager.status("other")},
                   lambda states: states == {"END"})  # fmt: skip
    finally:
        release.set()
        manager.stop()

"""Deadlines reach the model run, as in TF Serving: the gRPC client deadline and REST's
--rest_api_timeout_in_ms become the run's timeout (reference §0, §3.2, §4). A tiny "spin"
model busy-waits as many seconds as it is asked, so the tests choose how slow the model is."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import grpc
import pytest
import requests
from modelserver_harness import ServerProcess, metric, monitoring_flag, running_server
from polling import eventually

tf = pytest.importorskip("tensorflow")
from tensorflow.python.eager import cancellation  # noqa: E402
from tensorflow_serving.apis import predict_pb2  # noqa: E402

from modelserver import deadlines  # noqa: E402
from modelserver.status import ServingError  # noqa: E402

SPIN = "spin"
REST_TIMEOUT_MS = 500
REQUESTS = f'model_name="{SPIN}",status='


class _Spin(tf.Module):
    def __init__(self, started_log: Path) -> None:
        super().__init__()
        self._started_log = f"file://{started_log}"

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="seconds")])
    def spin(self, seconds):
        """Appends a line to the started log, then loops until max(seconds) have passed (each
        turn is a point where a run can be cancelled, as in any graph of many ops); returns
        `seconds`."""
        tf.print("started", output_stream=self._started_log)
        start = tf.timestamp()
        limit = tf.cast(tf.reduce_max(seconds), tf.float64)
        turns = tf.while_loop(lambda i: tf.timestamp() - start < limit, lambda i: i + 1, [0])
        with tf.control_dependencies(turns):
            return {"seconds": tf.identity(seconds)}


@pytest.fixture(scope="module")
def spin_base(tmp_path_factory) -> Path:
    """`<tmp>/spin` holding version 1 of the spin model."""
    base = tmp_path_factory.mktemp("models") / SPIN
    module = _Spin(started_log(base))
    tf.saved_model.save(module, str(base / "1"), signatures={"serving_default": module.spin})
    return base


def started_log(spin_base: Path) -> Path:
    """Where every run of the spin model writes a line as it starts."""
    return spin_base.parent / "spin-started.log"


def started_runs(spin_base: Path) -> int:
    path = started_log(spin_base)
    return path.read_text().count("started") if path.exists() else 0


def wait_for_runs(spin_base: Path, count: int, timeout: float = 30) -> None:
    """Until the spin model has started `count` runs in all."""
    eventually(lambda: started_runs(spin_base), lambda n: n >= count, timeout, f"{count} runs")


@pytest.fixture(scope="module")
def spin_server(tmp_path_factory, spin_base):
    """No batching; REST predictions are cut off after REST_TIMEOUT_MS."""
    folder = tmp_path_factory.mktemp("spin")
    args = [
        f"--model_name={SPIN}", f"--model_base_path={spin_base}", monitoring_flag(folder),
        f"--rest_api_timeout_in_ms={REST_TIMEOUT_MS}", "--file_system_poll_wait_seconds=0",
    ]  # fmt: skip
    with running_server(args, folder / "modelserver.log", model=SPIN) as server:
        yield server


@pytest.fixture(scope="module")
def queued_spin_server(tmp_path_factory, spin_base):
    """Batching with one batch thread and batches of one request: while one request runs, the
    next waits in the batching queue. REST requests time out after 1 s."""
    folder = tmp_path_factory.mktemp("spin-batching")
    batching = folder / "batching.config"
    batching.write_text(
        "max_batch_size { value: 1 }\nbatch_timeout_micros { value: 0 }\n"
        "num_batch_threads { value: 1 }\n"
    )
    args = [
        f"--model_name={SPIN}", f"--model_base_path={spin_base}", monitoring_flag(folder),
        "--enable_batching", f"--batching_parameters_file={batching}",
        "--rest_api_timeout_in_ms=1000", "--file_system_poll_wait_seconds=0",
    ]  # fmt: skip
    with running_server(args, folder / "modelserver.log", model=SPIN) as server:
        yield server


def spin_request(seconds: float) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = SPIN
    request.inputs["seconds"].CopyFrom(tf.make_tensor_proto([seconds], dtype=tf.float32))
    return request


def rest_spin(server, seconds: float) -> requests.Response:
    body = {"instances": [seconds]}
    return requests.post(f"{server.rest}/v1/models/{SPIN}:predict", json=body, timeout=60)


def assert_proxy_reads_as_a_timeout(response: requests.Response) -> None:
    """The proxy's REST client passes this real answer on as a gateway timeout (504)."""
    from proxy.client.rest_client import _error_from_response

    error = _error_from_response(response)
    assert (error.kind, error.http_status) == ("model_timeout", 504), error
    assert response.json()["error"] in str(error)


def test_a_rest_prediction_past_the_timeout_is_cut_off_with_504(spin_server):
    started = time.monotonic()
    response = rest_spin(spin_server, 60)
    assert time.monotonic() - started < 20  # the run was cancelled, not waited out
    assert response.status_code == 504
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"error": "Timed out waiting for notification"}
    assert_proxy_reads_as_a_timeout(response)
    # Cancelled, not abandoned: a 504 given while the run went on spinning would leave a core
    # busy for the rest of its 60 s (the gRPC test below shows the measure sees a spin).
    assert cpu_seconds_during(spin_server.process.pid, 1.0) < 0.3
    # The server goes on serving.
    answer = rest_spin(spin_server, 0.01)
    assert (answer.status_code, answer.json()) == (200, {"predictions": [pytest.approx(0.01)]})


def test_the_grpc_deadline_cancels_the_model_run(spin_server, spin_base):
    stub = spin_server.prediction_stub()
    timed_out = metric(spin_server.metrics(), "request_count", REQUESTS + '"DEADLINE_EXCEEDED"')
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(spin_request(60), timeout=0.5)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The server's own answer: DEADLINE_EXCEEDED soon after the deadline, not after 60 s.
    spin_server.wait_metric("request_count", REQUESTS + '"DEADLINE_EXCEEDED"', timed_out + 1)
    # Cancelled, not abandoned: an answer given while the run went on spinning would leave a
    # core busy for the rest of its 60 s.
    assert cpu_seconds_during(spin_server.process.pid, 1.0) < 0.3
    # Without a deadline there is no limit; and the measure above does see a spin.
    runs = started_runs(spin_base)
    running = threading.Thread(target=lambda: stub.Predict(spin_request(2.5)))
    running.start()
    wait_for_runs(spin_base, runs + 1)
    assert cpu_seconds_during(spin_server.process.pid, 1.0) > 0.5
    running.join()


def cpu_seconds_during(pid: int, seconds: float) -> float:
    """CPU time (user + system, all threads) a process uses over the next `seconds`."""

    def used() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    before = used()
    time.sleep(seconds)
    return used() - before


def test_requests_whose_deadline_passes_in_the_batching_queue_are_not_run(queued_spin_server):
    server = queued_spin_server
    stub = server.prediction_stub()
    queued = 'thread_pool_name="model_server_batch_threads"'
    before = server.metrics()
    running: dict = {}
    first = threading.Thread(
        target=lambda: running.update(response=stub.Predict(spin_request(4), timeout=60))
    )
    first.start()
    # Once the first request has left the queue (it now runs for 4 s), queue two more whose
    # deadlines (1 s) pass while they wait: one over gRPC, one over REST.
    dequeued = metric(before, "batching_session:queuing_latency_count", queued) + 1
    server.wait_metric("batching_session:queuing_latency_count", queued, dequeued)
    rest: dict = {}
    second = threading.Thread(target=lambda: rest.update(response=rest_spin(server, 30)))
    second.start()
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(spin_request(30), timeout=1)
    second.join()
    first.join()
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # TF Serving's answer for a request that timed out in the batching queue.
    assert rest["response"].status_code == 429
    assert rest["response"].json() == {
        "error": "Run() timeout exceeded while waiting in batching queue"
    }
    # A busy server, not a refused request (the proxy answered it 502).
    assert_proxy_reads_as_a_timeout(rest["response"])
    assert "seconds" in running["response"].outputs
    page = server.wait_metric(
        "request_count",
        REQUESTS + '"RESOURCE_EXHAUSTED"',
        metric(before, "request_count", REQUESTS + '"RESOURCE_EXHAUSTED"') + 2,
    )
    runs = metric(page, "batching_session:wrapped_run_count") - metric(
        before, "batching_session:wrapped_run_count"
    )
    assert runs == 1  # only the first request ever reached the model


def test_each_thread_sees_only_its_own_cancellation_manager():
    """TensorFlow keeps the active CancellationManager in one global; a deadline on one request
    thread must never cancel a run on another."""
    seen: list = []
    with deadlines.enforced(deadlines.after(60)):
        own = cancellation.context()
        other = threading.Thread(target=lambda: seen.append(cancellation.context()))
        other.start()
        other.join()
    assert own is not None and seen == [None]
    assert cancellation.context() is None


def test_a_deadline_already_past_runs_nothing():
    ran: list = []
    with pytest.raises(ServingError) as caught, deadlines.enforced(deadlines.after(0)):
        ran.append(True)
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and ran == []


def test_a_stop_lets_short_requests_finish_refuses_new_ones_and_does_not_wait_out_long_ones(
    tmp_path, spin_base
):
    """SIGTERM with a 1.5 s and a 30 s request being answered over REST and a 30 s one over
    gRPC. The short one finishes within the 2 s grace; a new connection is refused, not left
    hanging in the backlog; the long ones are dropped at the grace and the process exits then,
    not when they would have finished (REST's were cut off at exit while answering, new
    connections hung, and gRPC's kept the process 20 s and more)."""
    # Four inter-op threads: all three spins run at once (with TensorFlow's two on this 2-core
    # machine, the short one could wait behind the long ones and never start).
    args = [
        f"--model_name={SPIN}", f"--model_base_path={spin_base}",
        "--tensorflow_inter_op_parallelism=4",
    ]  # fmt: skip
    server = ServerProcess(args, tmp_path / "modelserver.log").wait_ready(SPIN)
    answers: dict[str, object] = {}

    def call(name: str, send) -> None:
        try:
            answers[name] = send()
        except (requests.RequestException, grpc.RpcError) as error:
            answers[name] = error

    stub = server.prediction_stub()
    sends = {
        "short": lambda: rest_spin(server, 1.5),
        "long": lambda: rest_spin(server, 30),
        "grpc": lambda: stub.Predict(spin_request(30), timeout=60),
    }
    threads = [threading.Thread(target=call, args=item) for item in sends.items()]
    runs_before = started_runs(spin_base)
    try:
        for thread in threads:
            thread.start()
        wait_for_runs(spin_base, runs_before + 3)  # all three are being answered
        stopped = time.monotonic()
        server.process.terminate()
        assert refuses_connections(server.rest, within=1.5)  # while the short one runs
        assert server.wait_exit(timeout=60) == 0
        exited = time.monotonic() - stopped
        for thread in threads:
            thread.join(timeout=60)
    finally:
        server.stop()
    assert isinstance(answers["short"], requests.Response), answers["short"]
    assert answers["short"].json() == {"predictions": [pytest.approx(1.5)]}
    assert isinstance(answers["long"], requests.ConnectionError), answers["long"]
    assert isinstance(answers["grpc"], grpc.RpcError), answers["grpc"]
    assert answers["grpc"].code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    assert exited < 15, f"the process exited {exited:.1f} s after SIGTERM"
    assert "REST requests still running after 2 s are abandoned" in server.log()


def refuses_connections(url: str, within: float) -> bool:
    """Whether a new connection is refused within `within` seconds (the listener closes once
    the REST loop has seen the stop, up to half a second)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=0.3)
        except requests.ConnectionError as error:
            if "refused" in str(error):
                return True
        except requests.Timeout:
            pass  # accepted into the backlog and left waiting: try again
        time.sleep(0.05)
    return False

"""--enable_batching merges concurrent requests into one model call (reference §6); the
merge is proved with the server's own batching metrics."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest
import requests
from image_files import random_image
from modelserver_harness import (
    MODEL,
    bytes_request,
    metric,
    monitoring_flag,
    pixels_request,
    running_server,
    write_models_config,
)

from modelserver.config_files import model_config

tf = pytest.importorskip("tensorflow")
from tensorflow_serving.apis import predict_pb2  # noqa: E402

CLIENTS = 8


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory, model_base_v1):
    tmp_path = tmp_path_factory.mktemp("batching")
    batching = tmp_path / "batching.config"
    # A long timeout so that concurrent requests surely meet in one batch; padding to 4 or 8.
    batching.write_text(
        "max_batch_size { value: 8 }\nbatch_timeout_micros { value: 300000 }\n"
        "num_batch_threads { value: 1 }\nallowed_batch_sizes: 4\nallowed_batch_sizes: 8\n"
    )
    args = [
        f"--model_name={MODEL}", f"--model_base_path={model_base_v1}", "--enable_batching",
        f"--batching_parameters_file={batching}", monitoring_flag(tmp_path),
        "--rest_api_enable_cors_support",
    ]  # fmt: skip
    with running_server(args, tmp_path / "modelserver.log") as server:
        yield server


def start_batching(start_server, tmp_path, base, parameters: str):
    """A server of `base` batching by `parameters` (a text BatchingParameters), monitoring on."""
    batching = tmp_path / "batching.config"
    batching.write_text(parameters)
    return start_server(
        f"--model_name={MODEL}", f"--model_base_path={base}", "--enable_batching",
        f"--batching_parameters_file={batching}", monitoring_flag(tmp_path),
    )  # fmt: skip


def concurrently(stub, requests_: list) -> list:
    """Sends all requests at the same moment; returns responses or RpcErrors in order."""
    results: list = [None] * len(requests_)
    barrier = threading.Barrier(len(requests_))

    def send(index: int) -> None:
        barrier.wait()
        try:
            results[index] = stub.Predict(requests_[index], timeout=60)
        except grpc.RpcError as error:
            results[index] = error

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests_))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_requests_are_merged_into_fewer_model_calls(batching_server):
    stub = batching_server.prediction_stub()
    images = np.random.default_rng(2).integers(0, 256, (CLIENTS, 32, 32, 3), dtype=np.uint8)
    before = batching_server.metrics()
    responses = concurrently(stub, [pixels_request(images[i : i + 1]) for i in range(CLIENTS)])
    page = batching_server.metrics()
    labels = f'model_name="{MODEL}",op_name="pixels"'
    tasks = metric(page, "batching:input_batch_size_count", labels) - metric(
        before, "batching:input_batch_size_count", labels
    )
    runs = metric(page, "batching_session:wrapped_run_count") - metric(
        before, "batching_session:wrapped_run_count"
    )
    assert tasks == CLIENTS
    assert 1 <= runs < CLIENTS, page  # merged: fewer model calls than requests
    processed = metric(page, "batching:processed_batch_size_sum", labels) - metric(
        before, "batching:processed_batch_size_sum", labels
    )
    assert processed >= CLIENTS  # every row went through a batch (padding may add more)
    # Each client still gets exactly its own row, equal to what the whole batch computes.
    whole = tf.make_ndarray(stub.Predict(pixels_request(images), timeout=60).outputs["scores"])
    for index, response in enumerate(responses):
        row = tf.make_ndarray(response.outputs["scores"])
        np.testing.assert_allclose(row, whole[index : index + 1], rtol=1e-5, atol=1e-6)


def test_small_batches_are_padded_to_an_allowed_size(batching_server):
    stub = batching_server.prediction_stub()
    labels = f'model_name="{MODEL}",op_name="pixels"'
    before = metric(batching_server.metrics(), "batching:padding_size_sum", labels)
    response = stub.Predict(pixels_request(np.zeros((1, 32, 32, 3), np.uint8)), timeout=60)
    assert [d.size for d in response.outputs["scores"].tensor_shape.dim] == [1, 10]
    after = metric(batching_server.metrics(), "batching:padding_size_sum", labels)
    assert after - before == 3  # this request's 1 image padded to 4, the smallest allowed size


def test_a_batch_larger_than_max_batch_size_is_refused(batching_server):
    with pytest.raises(grpc.RpcError) as caught:
        batching_server.prediction_stub().Predict(
            pixels_request(np.zeros((9, 32, 32, 3), np.uint8)), timeout=60
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "Task size 9 is larger than maximum input batch size 8"


def test_large_batch_splitting_runs_a_big_request_in_pieces_but_keeps_the_input_limit(
    start_server, tmp_path, model_base_v1
):
    """enable_large_batch_splitting (shared_batch_scheduler.h): batches run at most
    max_execution_batch_size rows, a bigger request is cut into pieces of that size, and
    max_batch_size still refuses a request larger than itself."""
    server = start_batching(
        start_server, tmp_path, model_base_v1,
        "max_batch_size { value: 12 }\nbatch_timeout_micros { value: 1000 }\n"
        "enable_large_batch_splitting { value: true }\nmax_execution_batch_size { value: 4 }\n",
    )  # fmt: skip
    stub = server.prediction_stub()
    images = np.random.default_rng(3).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    labels = f'model_name="{MODEL}",op_name="pixels"'
    before = server.metrics()
    whole = tf.make_ndarray(stub.Predict(pixels_request(images), timeout=60).outputs["scores"])
    page = server.metrics()
    runs = metric(page, "batching:processed_batch_size_count", labels) - metric(
        before, "batching:processed_batch_size_count", labels
    )
    assert runs == 3, page  # 4 + 4 + 2 rows
    inputs = [
        metric(page, f"batching:input_batch_size_{part}", labels)
        - metric(before, f"batching:input_batch_size_{part}", labels)
        for part in ("count", "sum")
    ]
    assert inputs == [1, 10]  # one request of 10 rows, as BatchingSession records it
    assert whole.shape == (10, 10)
    for start in (0, 6):  # the same rows as requests of their own
        alone = stub.Predict(pixels_request(images[start : start + 4]), timeout=60)
        np.testing.assert_allclose(
            tf.make_ndarray(alone.outputs["scores"]), whole[start : start + 4], rtol=1e-5, atol=1e-6
        )
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(pixels_request(np.zeros((13, 32, 32, 3), np.uint8)), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "Task size 13 is larger than maximum input batch size 12"


def test_a_split_request_first_fills_the_open_batch(start_server, tmp_path, model_base_v1):
    """Eager splitting (shared_batch_scheduler.h): 6 rows arriving after a request of 2, with
    batches of 4, go 2 into the open batch and 4 into the next: 2 model calls. Cut at 4 from
    their own first row, they took 3 (2 alone after its timeout, 4, 2). Both batches close
    by filling, so the long timeout costs the passing run nothing."""
    server = start_batching(
        start_server, tmp_path, model_base_v1,
        "max_batch_size { value: 8 }\nbatch_timeout_micros { value: 10000000 }\n"
        "num_batch_threads { value: 1 }\n"
        "enable_large_batch_splitting { value: true }\nmax_execution_batch_size { value: 4 }\n",
    )  # fmt: skip
    stub = server.prediction_stub()
    images = np.random.default_rng(4).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    alone = tf.make_ndarray(stub.Predict(pixels_request(images), timeout=60).outputs["scores"])
    labels = f'model_name="{MODEL}",op_name="pixels"'
    before = server.metrics()
    answers: dict[str, np.ndarray] = {}

    def send(name: str, rows: slice) -> None:
        response = stub.Predict(pixels_request(images[rows]), timeout=60)
        answers[name] = tf.make_ndarray(response.outputs["scores"])

    first = threading.Thread(target=send, args=("two", slice(0, 2)))
    first.start()
    # The 2 rows must wait in the open batch (10 s timeout) when the 6 arrive: a request is
    # counted in input_batch_size once it is queued. (Were the 6 first, cutting at 4 from
    # their own first row would also give 2 calls, and the test would prove nothing.)
    queued = metric(before, "batching:input_batch_size_count", labels) + 1
    server.wait_metric("batching:input_batch_size_count", labels, queued)
    send("six", slice(2, 8))
    first.join()
    page = server.metrics()
    runs = metric(page, "batching:processed_batch_size_count", labels) - metric(
        before, "batching:processed_batch_size_count", labels
    )
    assert runs == 2, page
    np.testing.assert_allclose(answers["two"], alone[:2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(answers["six"], alone[2:], rtol=1e-5, atol=1e-6)


def test_one_bad_image_in_a_merged_batch_fails_only_its_own_request(batching_server):
    good = [bytes_request(random_image("PNG", seed=i)) for i in range(3)]
    results = concurrently(batching_server.prediction_stub(), [*good, bytes_request(b"junk")])
    assert all(isinstance(r, predict_pb2.PredictResponse) for r in results[:3]), results
    assert results[3].code() == grpc.StatusCode.INVALID_ARGUMENT


def test_rest_goes_through_the_batcher_and_cors_headers_are_sent(batching_server):
    url = f"{batching_server.rest}/v1/models/{MODEL}"
    body = {"signature_name": "pixels", "instances": np.zeros((2, 32, 32, 3), int).tolist()}
    response = requests.post(f"{url}:predict", json=body, timeout=60)
    assert response.status_code == 200 and len(response.json()["predictions"]) == 2
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Allow-Methods"] == "POST, GET"
    preflight = requests.options(url, headers={"Origin": "http://localhost:5000"}, timeout=10)
    assert (preflight.status_code, preflight.text) == (200, "")


def test_per_model_batching_parameters_come_from_the_version_folder(
    start_server, tmp_path, tiny_model_base, add_model_version
):
    """--enable_per_model_batching_parameters (bundle_factory_util.cc GetPerModelBatchingParams):
    a version batches by its own batching_params.pbtxt, not by the server's file; one without
    the file does not batch at all; one whose file does not parse fails to load."""
    (add_model_version(tiny_model_base, 2) / "batching_params.pbtxt").write_text("max_batch { }")
    (add_model_version(tiny_model_base, 3) / "batching_params.pbtxt").write_text(
        "max_batch_size { value: 4 }"
    )
    server_file = tmp_path / "batching.config"
    server_file.write_text("max_batch_size { value: 2 }")
    config = write_models_config(
        tmp_path / "models.config", model_config(MODEL, tiny_model_base, policy="all {}")
    )
    server = start_server(
        f"--model_config_file={config}", "--enable_batching",
        f"--batching_parameters_file={server_file}",
        "--enable_per_model_batching_parameters", "--max_num_load_retries=0",
    )  # fmt: skip
    server.wait_states({1: "AVAILABLE", 2: "END", 3: "AVAILABLE"})
    stub = server.prediction_stub()

    def predict(images: int, version: int):
        request = pixels_request(np.zeros((images, 32, 32, 3), np.uint8), version=version)
        return stub.Predict(request, timeout=60)

    assert len(predict(3, version=3).outputs["scores"].float_val) == 30  # its file allows 4
    with pytest.raises(grpc.RpcError) as caught:
        predict(5, version=3)
    assert caught.value.details() == "Task size 5 is larger than maximum input batch size 4"
    # No file: no batcher at all, so the server file's limit of 2 does not apply either.
    assert len(predict(5, version=1).outputs["scores"].float_val) == 50
    log = server.log()
    assert "Could not parse" in log and "2/batching_params.pbtxt" in log

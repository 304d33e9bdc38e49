"""The model server goes away, hangs, comes back, or rolls out a new version: the proxy
answers 503 while it cannot reach it, 504 while it does not answer, and recovers by itself,
without a restart."""

from __future__ import annotations

import io
import re
import socket
import threading
import time

import pytest
from polling import eventually
from proxy_images import photo_like
from proxy_servers import ModelServerProcess

from proxy.app import create_app
from proxy.config import ProxyConfig
from stack.processes import free_port

PROTOCOLS = ("grpc", "rest")


def predict(client) -> tuple[int, dict]:
    response = client.post(
        "/api/predict",
        data={"file": (io.BytesIO(photo_like(3)), "a.jpg")},
        content_type="multipart/form-data",
    )
    return response.status_code, response.get_json()


@pytest.fixture
def server(tiny_model_base, tmp_path):
    server = ModelServerProcess(tiny_model_base, tmp_path / "modelserver.log").start()
    yield server
    server.stop()


def proxies(server: ModelServerProcess, **overrides) -> dict:
    return {
        protocol: create_app(
            ProxyConfig(
                grpc_address=server.grpc_address,
                rest_url=server.rest_url,
                protocol=protocol,
                **overrides,
            )
        ).test_client()
        for protocol in PROTOCOLS
    }


def test_stopped_then_restarted_model_server(server) -> None:
    clients = proxies(server)
    for client in clients.values():
        assert predict(client)[0] == 200

    server.stop()
    for protocol, client in clients.items():
        status, body = predict(client)
        assert status == 503, (protocol, body)
        assert "try again" in body["error"] and body["kind"] == "model_unavailable"
        answer = client.get("/api/model")  # a 503 says when to try again
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "2"
        assert client.get("/readyz").status_code == 503

    server.start()  # same ports
    for client in clients.values():
        eventually(lambda c=client: predict(c)[0] == 200)
        assert client.get("/readyz").status_code == 200


def test_new_version_is_picked_up_without_restart(server, add_model_version) -> None:
    clients = proxies(server)
    for client in clients.values():
        assert predict(client)[1]["model"]["version"] == 1
    add_model_version(server.base_path, 2)  # default policy: latest version only
    # Once 2 is AVAILABLE the server unloads 1; neither proxy may fail on the way.
    answers: list[tuple[str, int, dict]] = []

    def answered_by_2(protocol: str) -> bool:
        status, body = predict(clients[protocol])
        answers.append((protocol, status, body))
        return body.get("model", {}).get("version") == 2

    for protocol in clients:
        eventually(lambda p=protocol: answered_by_2(p))
        for _ in range(5):
            answered_by_2(protocol)
    assert [a for a in answers if a[1] != 200] == []


def test_no_version_served_is_a_503_for_a_plain_request(server) -> None:
    """Every version folder gone (a rollback that removed too much): the model server unloads
    them all. A request that named no version is the service's failure, a 503 that says when
    to try again, as /readyz says; it was a 404, a client error to alerting. A version the
    client named stays a 404."""
    clients = proxies(server)
    parked = server.base_path.parent / "parked"
    (server.base_path / "1").rename(parked)
    for protocol, client in clients.items():
        eventually(lambda c=client: predict(c)[0] != 200)
        response = client.post(
            "/api/predict",
            data={"file": (io.BytesIO(photo_like(3)), "a.jpg")},
            content_type="multipart/form-data",
        )
        body = response.get_json()
        assert response.status_code == 503, (protocol, body)
        assert body["kind"] == "model_unavailable" and response.headers["Retry-After"] == "2"
        assert body["error"].startswith("The model server has no version of model 'cifar10'")
        assert client.get("/readyz").status_code == 503
        named = client.post(
            "/api/predict?version=1",
            data={"file": (io.BytesIO(photo_like(3)), "a.jpg")},
            content_type="multipart/form-data",
        )
        assert named.status_code == 404 and named.get_json()["kind"] == "not_found"
    parked.rename(server.base_path / "1")
    for client in clients.values():
        eventually(lambda c=client: predict(c)[0] == 200)


def test_a_port_that_never_answers() -> None:
    """A port that accepts connections and never answers (a real socket, nothing mocked).
    Over REST the request goes out and no answer comes: a gateway timeout. gRPC never gets
    the HTTP/2 handshake, so for it the server cannot be reached: a 503."""
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))
    accepted: list[socket.socket] = []

    def accept_forever() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept_forever, daemon=True).start()
    expected = {"rest": (504, "model_timeout"), "grpc": (503, "model_unavailable")}
    try:
        address = f"127.0.0.1:{port}"
        for protocol in PROTOCOLS:
            config = ProxyConfig(
                grpc_address=address, rest_url=f"http://{address}", protocol=protocol, timeout_s=1
            )
            status, body = predict(create_app(config).test_client())
            assert (status, body["kind"]) == expected[protocol], (protocol, body)
            assert "model server" in body["error"].lower()
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


def test_a_model_server_slower_than_the_deadline_is_a_gateway_timeout(
    tiny_model_base, tmp_path
) -> None:
    """A real model server that holds each request 30 s in its batching queue (a batch of 64
    that never fills, with a 30 s timeout): past the proxy's 1 s deadline the answer is 504,
    over both protocols, and it comes at the deadline, not when the server answers."""
    batching = tmp_path / "batching.config"
    batching.write_text(
        "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 30000000 }\n"
        "num_batch_threads { value: 1 }\n"
    )
    flags = ("--enable_batching", f"--batching_parameters_file={batching}")
    server = ModelServerProcess(tiny_model_base, tmp_path / "ms.log", extra_flags=flags).start()
    try:
        for protocol, client in proxies(server, timeout_s=1).items():
            started = time.monotonic()
            status, body = predict(client)
            assert (status, body["kind"]) == (504, "model_timeout"), (protocol, body)
            assert body["error"].startswith("The model server did not answer in time")
            assert time.monotonic() - started < 10, protocol
    finally:
        server.stop()


def test_a_full_batching_queue_is_a_503_to_retry_not_a_refused_request(
    tiny_model_base, tmp_path
) -> None:
    """A real model server whose batching queue holds 3 images, 2 of them taken by a request
    waiting for company (60 s batch timeout): a proxy request of 2 more images is refused with
    TF Serving's UNAVAILABLE "queue is full" (REST 503). The proxy said "cannot be reached"."""
    import grpc
    import numpy as np
    import requests
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    batching = tmp_path / "batching.config"
    batching.write_text(
        "max_batch_size { value: 3 }\nbatch_timeout_micros { value: 60000000 }\n"
        "max_enqueued_batches { value: 1 }\nnum_batch_threads { value: 1 }\n"
    )
    metrics_path = "/monitoring/prometheus/metrics"
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text(f'prometheus_config {{ enable: true path: "{metrics_path}" }}')
    flags = ("--enable_batching", f"--batching_parameters_file={batching}",
             f"--monitoring_config_file={monitoring}")  # fmt: skip
    server = ModelServerProcess(tiny_model_base, tmp_path / "ms.log", extra_flags=flags).start()
    channel = grpc.insecure_channel(server.grpc_address)
    try:
        waiting = predict_pb2.PredictRequest()
        waiting.model_spec.name, waiting.model_spec.signature_name = "cifar10", "pixels"
        waiting.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((2, 32, 32, 3), np.uint8)))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        held = stub.Predict.future(waiting, timeout=120)
        queued = 'input_batch_size_count{model_name="cifar10",op_name="pixels"} 1'
        eventually(lambda: queued in requests.get(server.rest_url + metrics_path, timeout=10).text)
        for protocol, client in proxies(server, timeout_s=30).items():
            two = [(io.BytesIO(photo_like(i)), f"{i}.jpg") for i in range(2)]
            response = client.post("/api/predict", data={"file": two},
                                   content_type="multipart/form-data")  # fmt: skip
            body = response.get_json()
            assert (response.status_code, body["kind"]) == (503, "model_unavailable"), body
            assert body["error"].startswith("The model server is overloaded"), body
            assert "queue" in body["error"] and response.headers["Retry-After"], protocol
        assert not held.done(), "the waiting request was answered: the queue was not full"
        held.cancel()
    finally:
        channel.close()
        server.stop()


def test_a_5xx_is_logged_with_its_cause_and_the_request_id(caplog) -> None:
    """The proxy logged nothing when the model server was down: an operator saw a 503 in the
    access log and no reason. Now one warning line names the kind, the network error behind
    it and the request id, which the answer echoes (a sane client id is kept)."""
    import logging

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    causes = {"grpc": "UNAVAILABLE", "rest": "ConnectionError"}
    for protocol in PROTOCOLS:
        config = ProxyConfig(
            grpc_address=address, rest_url=f"http://{address}", protocol=protocol, timeout_s=1
        )
        client = create_app(config).test_client()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="proxy.requests"):
            response = client.post(
                "/api/predict",
                data={"file": (io.BytesIO(photo_like(3)), "a.jpg")},
                content_type="multipart/form-data",
                headers={"X-Request-ID": "req-42"},
            )
        assert response.status_code == 503
        assert response.headers["X-Request-ID"] == "req-42"
        [line] = [r.getMessage() for r in caplog.records if r.name == "proxy.requests"]
        assert "POST /api/predict -> 503 model_unavailable" in line, line
        assert "(request req-42)" in line and causes[protocol] in line, line
        metrics = client.get("/metrics").get_data(as_text=True)
        series = f'outcome="model_unavailable",protocol="{protocol}"'
        assert f"proxy_model_server_duration_seconds_count{{{series}}} 1.0" in metrics
        # An id that could forge log lines is replaced by a new one.
        odd = client.get("/healthz", headers={"X-Request-ID": "a b\tc"})
        assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["X-Request-ID"])


def test_a_rest_connect_timeout_is_a_server_that_cannot_be_reached() -> None:
    """requests' ConnectTimeout is a Timeout too, so an unreachable host (packets dropped by a
    firewall) was reported as a slow model server (504). Loopback refuses at once and cannot
    drop packets, so the session's request raises it here (the one stand-in in this file)."""
    import requests

    from proxy.client.base import ModelServerError
    from proxy.client.rest_client import RestClient

    client = RestClient("http://127.0.0.1:9", timeout_s=1)

    def dropped(*args, **kwargs):
        raise requests.ConnectTimeout("connect timeout")

    client._session.request = dropped
    with pytest.raises(ModelServerError) as caught:
        client.status("cifar10")
    assert (caught.value.kind, caught.value.http_status) == ("model_unavailable", 503)

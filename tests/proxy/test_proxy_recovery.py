"""The model server goes away, hangs, comes back, or rolls out a new version: the proxy
answers 503 while it cannot reach it and recovers by itself, without a restart."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable

import pytest
from proxy_images import photo_like
from proxy_servers import ModelServerProcess

from proxy.app import create_app
from proxy.config import ProxyConfig
from scripts.serve import free_port

PROTOCOLS = ("grpc", "rest")


def predict(client) -> tuple[int, dict]:
    response = client.post(
        "/api/predict",
        data={"file": (io.BytesIO(photo_like(3)), "a.jpg")},
        content_type="multipart/form-data",
    )
    return response.status_code, response.get_json()


def eventually(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


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


def test_hanging_model_server_times_out_as_503() -> None:
    """A port that accepts connections and never answers (a real socket, nothing mocked)."""
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
    try:
        address = f"127.0.0.1:{port}"
        for protocol in PROTOCOLS:
            config = ProxyConfig(
                grpc_address=address, rest_url=f"http://{address}", protocol=protocol, timeout_s=1
            )
            status, body = predict(create_app(config).test_client())
            assert status == 503, (protocol, body)
            assert "model server" in body["error"].lower()
    finally:
        listener.close()
        for conn in accepted:
            conn.close()

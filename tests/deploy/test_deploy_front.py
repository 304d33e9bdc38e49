"""The compose front, proxy/nginx.conf, run with Debian's nginx before the proxy's gunicorn.

No Docker engine runs here, so the nginx image's main configuration is played by a small one
that includes the project's file inside `http {}`, as the image's does, with the upstream and
listen addresses moved to free loopback ports. The proxy's address becomes an IP literal, so
the resolver (Docker's DNS, asked again every 10 s) is not exercised here. No model server:
/healthz does not need one.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from deploy_files import REPO, compose_service, manifest, require_tool
from PIL import Image
from polling import eventually

from stack import processes

SITE = REPO / "proxy" / "nginx.conf"
MAIN_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {site};
}}
"""
# One worker of two threads: two stalled uploads hold all of it.
THREADS = 2
STALLED = 2 * THREADS


def test_the_front_is_what_compose_publishes_and_lets_the_ingress_body_size_through():
    front = compose_service("front")
    assert front["ports"] == ["${PROXY_PUBLISH:-5000}:8080"]
    assert "./proxy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in front["volumes"]
    site = SITE.read_text()
    assert re.search(r"^\s*set \$proxy_upstream http://proxy:5000;", site, re.M)
    assert re.search(r"^\s*listen 8080;", site, re.M)
    ingress = manifest("Ingress", "proxy")["metadata"]["annotations"]
    body = re.search(r"client_max_body_size (\S+);", site).group(1)
    assert body == ingress["nginx.ingress.kubernetes.io/proxy-body-size"]


def test_uploads_that_stall_hold_the_proxys_threads_but_not_through_the_front(tmp_path):
    """Eight clients that sent headers and then nothing held every gunicorn thread of `make
    serve` or compose: a photo went unanswered, /healthz for 75 s (a hostile-input audit).
    Straight to gunicorn that still happens here; through the front, /healthz answers."""
    nginx = require_tool("nginx")
    proxy_port, front_port = processes.free_port(), processes.free_port()
    with _gunicorn(proxy_port, tmp_path), _nginx(nginx, proxy_port, front_port, tmp_path):
        direct = f"http://127.0.0.1:{proxy_port}/healthz"
        front = f"http://127.0.0.1:{front_port}/healthz"
        assert requests.get(front, timeout=5).status_code == 200
        with _stalled_uploads(proxy_port), pytest.raises(requests.Timeout):
            requests.get(direct, timeout=3)
        eventually(lambda: _answers(direct), timeout=30, what="gunicorn freed")
        with _stalled_uploads(front_port):
            answer = requests.get(front, timeout=3)
            assert answer.status_code == 200, answer.text
            assert requests.get(direct, timeout=3).status_code == 200
        # An upload goes through whole, and the proxy's own JSON answer comes back (a 503:
        # its model server address has nothing listening).
        photo = io.BytesIO()
        Image.new("RGB", (64, 48), (200, 30, 30)).save(photo, "JPEG")
        upload = {"file": ("a.jpg", photo.getvalue(), "image/jpeg")}
        answer = requests.post(front.replace("/healthz", "/api/predict"), files=upload, timeout=10)
        assert answer.status_code == 503, answer.text
        assert answer.json()["kind"] == "model_unavailable", answer.text
        # A URL of 4-8 KiB passes the front: the proxy's JSON answers it, not gunicorn's
        # HTML 414 (its request line limit was 4 KiB).
        long_url = front.replace("/healthz", f"/api/model?k={'9' * 6000}")
        answer = requests.get(long_url, timeout=10)
        assert answer.status_code == 400, answer.text
        assert "takes no query parameters" in answer.json()["error"], answer.text
        # Over the front's own limit: its refusal, in the proxy's JSON.
        huge = {"file": ("a.jpg", b"\xff" * (13 * 2**20), "image/jpeg")}
        answer = requests.post(front.replace("/healthz", "/api/predict"), files=huge, timeout=30)
        assert answer.status_code == 413, answer.text
        assert answer.json()["kind"] == "too_large", answer.text


def test_the_front_answers_json_while_the_proxy_is_down(tmp_path):
    """Nothing listens at the proxy's address (starting, restarting): a 503 in the proxy's
    JSON with Retry-After, not nginx's HTML 502, which the page showed as 'Unexpected
    answer'."""
    front_port = processes.free_port()
    url = f"http://127.0.0.1:{front_port}/api/model"
    with _nginx(require_tool("nginx"), processes.free_port(), front_port, tmp_path):
        answer = requests.get(url, timeout=10)
        # nginx's other refusals of its own, in JSON too: a URL or a header past its buffers.
        too_long = requests.get(f"{url}?k={'9' * 20_000}", timeout=10)
        big_header = requests.get(url, headers={"X-Note": "a" * 20_000}, timeout=10)
    assert answer.status_code == 503, answer.text
    assert answer.json()["kind"] == "proxy_unavailable", answer.text
    assert answer.headers["Retry-After"] == "5"
    assert too_long.status_code == 414 and "URL is longer" in too_long.json()["error"]
    assert big_header.status_code == 431 and "header" in big_header.json()["error"]


@contextlib.contextmanager
def _stalled_uploads(port: int) -> Iterator[None]:
    """STALLED uploads that send their headers and the start of a body, then nothing."""
    head = (
        b"POST /api/predict HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: multipart/form-data; boundary=zz\r\nContent-Length: 100000\r\n\r\n--zz\r\n"
    )
    sockets = []
    try:
        for _ in range(STALLED):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(head)
            sockets.append(sock)
        yield
    finally:
        for sock in sockets:
            sock.close()


@contextlib.contextmanager
def _gunicorn(port: int, tmp_path: Path) -> Iterator[None]:
    """The proxy's gunicorn (processes.proxy_command), its model server address unused."""
    env = {
        **os.environ,
        "PROXY_HOST": "127.0.0.1",
        "PROXY_PORT": str(port),
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": str(THREADS),
        "MODEL_SERVER_GRPC": f"127.0.0.1:{processes.free_port()}",
    }
    with (tmp_path / "gunicorn.log").open("w") as log:
        process = processes.start(processes.proxy_command(), env, log, own_session=False)
        try:
            url = f"http://127.0.0.1:{port}/healthz"
            processes.wait_for(lambda: _answers(url), {"gunicorn": process}, "gunicorn")
            yield
        finally:
            processes.stop(process)


@contextlib.contextmanager
def _nginx(nginx: str, proxy_port: int, front_port: int, tmp_path: Path) -> Iterator[None]:
    """nginx with the project's site file, once its port is taken."""
    site = SITE.read_text()
    for was, now in [("http://proxy:5000;", f"http://127.0.0.1:{proxy_port};"),
                     ("listen 8080;", f"listen 127.0.0.1:{front_port};")]:  # fmt: skip
        assert site.count(was) == 1, was
        site = site.replace(was, now)
    (tmp_path / "site.conf").write_text(site)
    main = tmp_path / "nginx.conf"
    main.write_text(MAIN_CONF.format(tmp=tmp_path, site=tmp_path / "site.conf"))
    command = [nginx, "-p", str(tmp_path), "-c", str(main), "-g", "daemon off;"]
    with (tmp_path / "nginx.out").open("w") as log:
        process = processes.start(command, log=log, own_session=False)
        try:
            listening = functools.partial(processes.port_in_use, front_port)
            processes.wait_for(listening, {"nginx": process}, "nginx")
            yield
        finally:
            processes.stop(process)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False

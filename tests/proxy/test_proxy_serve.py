"""stack/serve.py (`make serve`): both servers up, the URL printed, both stopped cleanly."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from image_files import encode
from polling import eventually
from proxy_images import photo_like, solid
from proxy_servers import ROOT, child_env, start_stack
from readme_blocks import block_after, json_documents

from stack.processes import children_of, free_port


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def stack(tiny_model_base):
    serve = start_stack(tiny_model_base)
    yield serve
    serve.stop()


def test_serve_starts_prints_the_url_and_stops_both(stack) -> None:
    line = stack.wait_for_line("ready: open")
    assert f"http://localhost:{stack.ports['proxy_port']}/" in line

    assert requests.get(f"{stack.url}/", timeout=10).status_code == 200
    files = {"file": ("a.jpg", io.BytesIO(photo_like(0)), "image/jpeg")}
    answer = requests.post(f"{stack.url}/api/predict", files=files, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == {"name": "cifar10", "version": 1}
    # gunicorn runs several workers; the multiprocess registry adds their counts up.
    metrics = requests.get(f"{stack.url}/metrics", timeout=10).text
    assert (
        'proxy_http_requests_total{endpoint="/api/predict",method="POST",status="200"}' in metrics
    )

    stack.process.send_signal(signal.SIGTERM)
    assert stack.wait_exit(60) == 0
    assert "stopping" in "".join(stack.lines)
    for name, port in stack.ports.items():
        assert not listening(port), f"{name} {port} still open after serve exited"


def test_readmes_proxy_examples_answer_as_it_says(stack, tmp_path) -> None:
    """README's curl lines for the proxy's JSON API, run as written on the port serve chose."""
    stack.wait_for_line("ready: open")
    (tmp_path / "cat.jpg").write_bytes(photo_like(0))
    (tmp_path / "dog.png").write_bytes(encode(solid((120, 90, 60))))
    port = stack.ports["proxy_port"]
    curl = block_after("The proxy's JSON API").replace("localhost:5000", f"localhost:{port}")
    done = subprocess.run(
        ["bash", "-e", "-c", curl], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    predicted, model = json_documents(done.stdout)
    assert [p["filename"] for p in predicted["results"]] == ["cat.jpg", "dog.png"]
    assert all(len(p["top"]) == 3 for p in predicted["results"])
    assert [v["state"] for v in model["versions"]] == ["AVAILABLE"] and len(model["classes"]) == 10


def test_serve_with_a_models_config_answers_its_labels(tiny_model_base, add_model_version):
    """MODEL_CONFIG_FILE: labels and version policies under make serve, with the config's
    container paths (/models/...) mapped to MODEL_BASE_PATH's folder, as compose mounts it."""
    add_model_version(tiny_model_base, 2)
    config = tiny_model_base.parent / "models.config"
    config.write_text(
        'model_config_list { config { name: "cifar10" base_path: "/models/cifar10" '
        'model_platform: "tensorflow" '
        "model_version_policy { specific { versions: 1 versions: 2 } } "
        'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 } } }'
    )
    serve = start_stack(tiny_model_base, extra_env={"MODEL_CONFIG_FILE": str(config)})
    try:
        serve.wait_for_line("ready: open")
        for label, version in (("stable", 1), ("canary", 2)):
            files = {"file": ("a.jpg", io.BytesIO(photo_like(0)), "image/jpeg")}
            answer = requests.post(
                f"{serve.url}/api/predict?label={label}", files=files, timeout=30
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["model"] == {"name": "cifar10", "version": version, "label": label}
    finally:
        serve.stop()
    missing = start_stack(tiny_model_base, extra_env={"MODEL_CONFIG_FILE": str(config) + ".x"})
    assert missing.wait_exit(60) == 2
    missing.wait_for_line("is not a file")


@pytest.mark.slow
def test_a_model_server_that_dies_is_started_again_until_it_keeps_dying(stack) -> None:
    """As compose's restart policy and Kubernetes do: the stack stopped at the first exit
    (an OOM kill, a crash), though the proxy only needed its model server back. One that
    keeps exiting stops the stack, named, after RESTARTS_ALLOWED restarts."""
    from stack.serve import RESTART_WINDOW_S, RESTARTS_ALLOWED

    stack.wait_for_line("ready: open")
    began, proxy = time.monotonic(), _child(stack, "gunicorn")
    for restart in range(1, RESTARTS_ALLOWED + 1):
        os.kill(_child(stack, "modelserver"), signal.SIGKILL)
        stack.wait_for_line(f"restart {restart} of {RESTARTS_ALLOWED} allowed")
        eventually(
            lambda: sum("the model server is back" in line for line in stack.lines),
            lambda backs, restart=restart: backs >= restart,
            timeout=120, what=f"the model server back after restart {restart}",
        )  # fmt: skip
        eventually(lambda: _predicts(stack), timeout=30, what="the proxy answering")
        assert _child(stack, "gunicorn") == proxy  # the same proxy throughout
    assert time.monotonic() - began < RESTART_WINDOW_S, "too slow a host for the window"
    os.kill(_child(stack, "modelserver"), signal.SIGKILL)
    assert stack.wait_exit(60) == 1
    stack.wait_for_line(
        f"the model server was killed by signal 9 (SIGKILL) (see its log above), after "
        f"{RESTARTS_ALLOWED} restarts within {RESTART_WINDOW_S:.0f} s; stopping the proxy"
    )
    assert not listening(stack.ports["proxy_port"]), "the proxy outlived the stack"


def test_when_the_proxy_dies_serve_names_it_and_stops_the_model_server(stack) -> None:
    stack.wait_for_line("ready: open")
    os.kill(_child(stack, "gunicorn"), signal.SIGKILL)
    assert stack.wait_exit(60) == 1
    stack.wait_for_line("the proxy was killed by signal 9 (SIGKILL) (see its log above); stopping")
    assert not listening(stack.ports["grpc_port"]), "the model server outlived the stack"


def _predicts(stack) -> bool:
    files = {"file": ("a.jpg", io.BytesIO(photo_like(0)), "image/jpeg")}
    return requests.post(f"{stack.url}/api/predict", files=files, timeout=30).status_code == 200


def _child(stack, module: str) -> int:
    """The pid of serve's child started as `python -m <module>`."""
    started_as = [b"-m", module.encode()]
    (pid,) = [
        pid
        for pid in children_of(stack.process.pid)
        if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:3] == started_as
    ]
    return pid


def test_a_model_server_restart_is_counted_within_its_window() -> None:
    from stack.serve import RESTART_WINDOW_S, RESTARTS_ALLOWED, may_restart

    restarts: list[float] = []
    assert all(may_restart(restarts, float(t)) for t in range(RESTARTS_ALLOWED))
    assert not may_restart(restarts, float(RESTARTS_ALLOWED))
    assert may_restart(restarts, RESTART_WINDOW_S + 0.5)  # the first one has left the window


def test_a_hang_up_stops_both(stack) -> None:
    """Closing the terminal (or dropping the SSH session) sends SIGHUP; the children, in their
    own sessions, do not get it, so serve must stop them or they keep the ports."""
    stack.wait_for_line("ready: open")
    stack.process.send_signal(signal.SIGHUP)
    assert stack.wait_exit(90) == 0
    for name, port in stack.ports.items():
        assert not listening(port), f"{name} {port} still open after a hang-up"


def test_under_nohup_a_hang_up_is_still_ignored(tiny_model_base) -> None:
    stack = start_stack(tiny_model_base, ignore_hangup=True)
    try:
        stack.wait_for_line("ready: open")
        # Ignored, not handled: the kernel's own record (a handler that stops the stack a few
        # seconds late would pass the checks after the signal below).
        status = Path(f"/proc/{stack.process.pid}/status").read_text()
        ignored = int(re.search(r"^SigIgn:\s*([0-9a-f]+)$", status, re.M).group(1), 16)
        assert ignored & (1 << (signal.SIGHUP - 1)), status
        stack.process.send_signal(signal.SIGHUP)
        time.sleep(2)
        assert stack.process.poll() is None, "".join(stack.lines)
        assert requests.get(f"{stack.url}/readyz", timeout=10).status_code == 200
    finally:
        stack.stop()


def test_a_child_killed_by_a_signal_without_a_name_is_still_described() -> None:
    from types import SimpleNamespace

    from stack.processes import how_it_ended

    assert how_it_ended(SimpleNamespace(returncode=-9)) == "was killed by signal 9 (SIGKILL)"
    assert how_it_ended(SimpleNamespace(returncode=-40)) == "was killed by signal 40"
    assert how_it_ended(SimpleNamespace(returncode=3)) == "exited with code 3"


def test_a_child_that_dies_while_starting_is_blamed_by_its_own_name() -> None:
    """A real child process that exits at once: the error names the one that died (a lone
    proxy that crashed was reported as "the model server exited")."""
    from stack.processes import wait_for

    proxy = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proxy.wait()
    with pytest.raises(RuntimeError, match=r"^the proxy exited with code 3 while the proxy"):
        wait_for(lambda: False, {"the proxy": proxy}, "the proxy")


def test_serve_explains_a_missing_model(tmp_path) -> None:
    done = run_serve(MODEL_BASE_PATH=str(tmp_path / "nothing"), PROXY_PORT=str(free_port()))
    assert done.returncode == 2
    assert "no model version folder" in done.stderr and "make export" in done.stderr


def test_serve_explains_a_base_path_it_cannot_read(tmp_path, monkeypatch) -> None:
    """A folder of another user's, mode 700: a one-line reason, not a traceback. Played by
    making the listing fail, as root (which this CI runs as) reads any folder."""
    from stack.processes import Stack
    from stack.serve import preflight

    def refused(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", refused)
    stack = Stack(tmp_path, free_port(), free_port(), free_port(), "127.0.0.1")
    assert preflight(stack) == f"cannot read MODEL_BASE_PATH={tmp_path} (Permission denied)"


def test_serve_explains_a_busy_port(tiny_model_base) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = run_serve(MODEL_BASE_PATH=str(tiny_model_base), PROXY_PORT=str(port))
    assert done.returncode == 2
    assert f"port {port} is already in use" in done.stderr and "PROXY_PORT" in done.stderr


def test_serve_refuses_the_same_port_twice(tiny_model_base) -> None:
    port = free_port()
    done = run_serve(MODEL_BASE_PATH=str(tiny_model_base), GRPC_PORT=str(port),
                     REST_PORT=str(port), PROXY_PORT=str(free_port()))  # fmt: skip
    assert done.returncode == 2
    assert "the three ports must differ" in done.stderr and f"REST_PORT={port}" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("value", ["abc", "0", "70000", "-1"])
def test_serve_refuses_a_port_that_is_no_number(tiny_model_base, value) -> None:
    done = run_serve(MODEL_BASE_PATH=str(tiny_model_base), GRPC_PORT=value)
    assert done.returncode == 2
    assert f"GRPC_PORT={value} is not a port number" in done.stderr
    assert "Traceback" not in done.stderr


def test_free_port_never_hands_out_the_same_port_twice(monkeypatch) -> None:
    """CI once got GRPC_PORT == REST_PORT from two calls in a row. Played here by a kernel
    that offers the same port twice: the second call must find another."""
    import socket

    from stack import processes

    offered = iter([41001, 41001, 41002])

    class Socket:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def bind(self, address):
            self.port = next(offered)

        def getsockname(self):
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(processes, "_handed_out", set())
    monkeypatch.setattr(socket, "socket", Socket)
    assert [processes.free_port(), processes.free_port()] == [41001, 41002]


def test_help_names_every_setting_and_starts_nothing() -> None:
    from stack.processes import SETTINGS

    shown = run_serve("--help")
    assert shown.returncode == 0
    for name, (default, _) in SETTINGS.items():
        assert name in shown.stdout and default in shown.stdout
    refused = run_serve("--port", "1")
    assert refused.returncode == 2 and "unrecognized arguments: --port 1" in refused.stderr


def test_a_port_answered_by_something_else_is_just_not_ready() -> None:
    """A foreign, non-HTTP service on a port: the readiness probe says 'not ready', no crash."""
    from stack.processes import get_json

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def answer_garbage() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"\x00\x04@\x00\xfe?garbage\r\n\r\n")

        thread = threading.Thread(target=answer_garbage, daemon=True)
        thread.start()
        assert get_json(f"http://127.0.0.1:{port}/v1/models/cifar10") is None
        thread.join(10)


def run_serve(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stack.serve", *args],
        cwd=ROOT,
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )

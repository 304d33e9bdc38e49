"""The local model server, started with exactly the flags and config files docker-compose.yml
gives tensorflow/serving, serves the model: the configs parse and the health check works.

Only the ports (free loopback ports) and paths change: container paths of compose's bind mounts
become the host folders, and /models (base_path in models.config) maps to a temp model base via
the local server's documented --model_base_path_prefix_map extension.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
from pathlib import PurePosixPath

import pytest
import requests
from deploy_files import bind_mounts, compose_service, container, flags

from export.config import MODEL_NAME
from stack import processes

MODEL = MODEL_NAME  # the name compose, k8s and serving_config/ serve


def local_args(models_root) -> list[str]:
    """compose's tfserving command, translated for a process on this machine (its ports are
    the harness's free loopback ones)."""
    mounts = bind_mounts(compose_service("tfserving"))
    args = []
    for name, value in flags(compose_service("tfserving")["command"]).items():
        parent = str(PurePosixPath(value).parent)
        if name in ("port", "rest_api_port"):
            continue
        if parent in mounts:
            value = str(mounts[parent][0] / PurePosixPath(value).name)
        args.append(f"--{name}={value}")
    return [*args, f"--model_base_path_prefix_map=/models={models_root}"]


@pytest.fixture
def server(tiny_model_base, tmp_path):
    """`python -m modelserver` with compose's flags, once the model is AVAILABLE."""
    args = local_args(tiny_model_base.parent)
    server = processes.ModelServer(args, tmp_path / "modelserver.log", own_session=False)
    try:
        server.start().wait_ready(
            lambda port: "AVAILABLE" in processes.model_states(port, MODEL).values()
        )
        yield server
    finally:
        server.stop()


def test_server_started_like_compose_serves_the_model(server):
    # compose's own healthcheck command (bash, /dev/tcp), aimed at our REST port.
    _, *healthcheck = compose_service("tfserving")["healthcheck"]["test"]
    healthcheck[-1] = healthcheck[-1].replace("/8501", f"/{server.rest_port}")
    assert subprocess.run(healthcheck, timeout=10).returncode == 0

    image = [[[0, 0, 0]] * 32] * 32
    answer = requests.post(
        f"{server.rest_url}/v1/models/{MODEL}:predict",
        json={"signature_name": "pixels", "inputs": {"images": [image]}},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["outputs"]["probabilities"][0]) == 10

    # monitoring.config was read: the Prometheus page is on, at its path.
    metrics = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics", timeout=5)
    assert metrics.status_code == 200
    assert ":tensorflow:serving:request_count" in metrics.text


def test_the_tfserving_alert_rules_name_metrics_and_labels_the_server_exports(server):
    """A rule on a metric or label TF Serving does not export would never fire."""
    import re

    import grpc
    import yaml
    from deploy_files import REPO

    url = f"{server.rest_url}/v1/models/{MODEL}:predict"
    requests.post(url, json={"signature_name": "pixels", "inputs": {"images": "x"}}, timeout=30)
    page = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics", timeout=5)
    exported: dict[str, set[str]] = {}  # names as exposed (the parser adds "_total" to counters)
    for line in page.text.splitlines():
        if line and not line.startswith("#"):
            name, _, labels = line.partition("{")
            exported.setdefault(name.split()[0], set()).update(re.findall(r"(\w+)=", labels))
    rules = yaml.safe_load((REPO / "k8s/monitoring/alerts.yaml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"] if ":tensorflow:" in r["expr"]]
    assert exprs
    for expr in exprs:
        for metric, matchers in re.findall(r"(:tensorflow:serving:[a-z_]+)\{([^}]*)\}", expr):
            assert metric in exported, metric
            assert set(re.findall(r"([a-z_]+)\s*=~?", matchers)) <= exported[metric], matchers
        # The status label holds gRPC code names (reference §5): a misspelt one never matches.
        for values in re.findall(r'status=~?"([^"]+)"', expr):
            assert set(values.split("|")) <= {code.name for code in grpc.StatusCode}, values


def run_probe(command: list[str], rest_port: int) -> int:
    """A probe's exec command (bash, /dev/tcp on 8501) aimed at `rest_port`; its exit code."""
    *shell, script = command
    return subprocess.run([*shell, script.replace("/8501", f"/{rest_port}")], timeout=10).returncode


def test_kubernetes_startup_probe_passes_against_a_server_that_has_loaded(server):
    assert (
        run_probe(container("tfserving")["startupProbe"]["exec"]["command"], server.rest_port) == 0
    )


def test_kubernetes_liveness_probe_asks_the_grpc_health_service_the_flags_turn_on(server):
    """A TCP connect, the probe before, succeeds while a wedged server answers nothing. The
    liveness probe asks grpc.health.v1 on the gRPC port, which compose's and the pod's
    `--enable_grpc_healthcheck_service` turn on; the server started with those flags answers
    SERVING for the server as a whole (the probe's empty service name)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    probe = container("tfserving")["livenessProbe"]["grpc"]
    assert probe["port"] == int(flags(container("tfserving")["args"])["port"])
    with grpc.insecure_channel(server.grpc_address) as channel:
        request = health_pb2.HealthCheckRequest(service=probe.get("service", ""))
        answer = health_pb2_grpc.HealthStub(channel).Check(request, timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


class _StatusStub(http.server.BaseHTTPRequestHandler):
    """Answers every GET with `body` (set per test), as TF Serving's model status."""

    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize(
    ("states", "starts"),
    [
        (["AVAILABLE"], True),
        (["AVAILABLE", "END"], True),  # an older version unloaded, or one that failed to load
        (["LOADING", "AVAILABLE"], False),  # the canary's second version still loading
        (["START", "AVAILABLE"], False),
        (["LOADING"], False),
        (["END"], False),
    ],
)
def test_kubernetes_startup_probe_waits_until_no_version_is_still_loading(states, starts):
    # A real server cannot be held with one version LOADING and another AVAILABLE for a test,
    # so a stub answers with TF Serving's status body for those states (its JSON has a space
    # after each colon, as the server above and reference §3.4 show).
    rows = [
        {"version": str(5 - i), "state": state, "status": {"error_code": "OK", "error_message": ""}}
        for i, state in enumerate(states)
    ]
    handler = type(
        "Stub",
        (_StatusStub,),
        {"body": json.dumps({"model_version_status": rows}, indent=1).encode()},
    )
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as stub:
        threading.Thread(target=stub.serve_forever, daemon=True).start()
        try:
            code = run_probe(
                container("tfserving")["startupProbe"]["exec"]["command"], stub.server_port
            )
        finally:
            stub.shutdown()
    assert (code == 0) == starts

"""Compose, the Kubernetes manifests, serving_config/, the Dockerfiles and the proxy's defaults
agree on ports, model name, base path, config file paths and versions."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

import dockerfile
import pytest
import requests
from deploy_files import (
    DOCKERFILES,
    REPO,
    SERVING_CONFIG,
    bind_mounts,
    compose_service,
    container,
    final_stage,
    flags,
    image_env,
    image_volumes,
    manifest,
    manifests,
    pinned_version,
    pyproject,
)
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from export.config import MODEL_NAME
from modelserver.flags import parse_flags
from modelserver.protos_gen import tfs_monitoring_config_pb2
from proxy.config import ProxyConfig
from stack.processes import free_port
from tests.conftest import HOST_LIMIT

MODEL = MODEL_NAME  # the name compose, k8s and serving_config/ serve
GRPC, REST, PROXY = 8500, 8501, 5000


def tfserving_args() -> dict[str, str]:
    return flags(compose_service("tfserving")["command"])


def models_config() -> model_server_config_pb2.ModelServerConfig:
    text = (SERVING_CONFIG / "models.config").read_text()
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def test_tfserving_image_matches_pinned_tensorflow():
    expected = f"tensorflow/serving:{pinned_version('tensorflow')}"
    assert compose_service("tfserving")["image"] == expected
    assert container("tfserving")["image"] == expected


# Kubernetes only: a pod shares its node, whose core count TensorFlow would size its pools from.
THREAD_FLAGS = ("tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism")


def test_compose_and_kubernetes_run_tfserving_with_the_same_flags():
    assert compose_service("tfserving")["entrypoint"] == ["tensorflow_model_server"]
    k8s = container("tfserving")
    assert k8s["command"] == ["tensorflow_model_server"]
    shared = [a for a in k8s["args"] if not a.lstrip("-").startswith(THREAD_FLAGS)]
    assert shared == compose_service("tfserving")["command"]
    threads = flags(k8s["args"])
    assert all(int(threads[name]) >= 1 for name in THREAD_FLAGS)
    # The local server takes the same flags.
    options = parse_flags(k8s["args"])
    assert [getattr(options, name) for name in THREAD_FLAGS] == [
        int(threads[name]) for name in THREAD_FLAGS
    ]


def test_tfserving_stops_on_sigterm_and_its_clients_leave_a_draining_pod_in_time():
    """tensorflow_model_server has no SIGTERM handler, so it must not run as PID 1; and the
    connection age (+ its grace) must end within preStop's sleep, or calls die at SIGTERM."""
    assert compose_service("tfserving")["init"] is True
    pod = manifest("Deployment", "tfserving")["spec"]["template"]["spec"]
    assert pod["shareProcessNamespace"] is True
    channel = dict(
        pair.split("=") for pair in tfserving_args()["grpc_channel_arguments"].split(",")
    )
    drained_ms = 1.1 * int(channel["grpc.max_connection_age_ms"])  # gRPC's +-10 % jitter
    drained_ms += int(channel["grpc.max_connection_age_grace_ms"])
    sleep = container("tfserving")["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and drained_ms <= int(sleep[1]) * 1000
    assert int(sleep[1]) < pod["terminationGracePeriodSeconds"]


def test_tfserving_flags_cover_the_issue():
    args = tfserving_args()
    assert (args["port"], args["rest_api_port"]) == (str(GRPC), str(REST))
    assert int(args["model_config_file_poll_wait_seconds"]) > 0
    assert args["enable_batching"] == "true"
    for name in ("model_config_file", "monitoring_config_file", "batching_parameters_file"):
        assert name in args


def test_config_file_flags_point_into_the_mounted_serving_config():
    mounts = bind_mounts(compose_service("tfserving"))
    k8s_mounts = {m["name"]: m for m in container("tfserving")["volumeMounts"]}
    config_map = manifest("ConfigMap", "tfserving-config")
    files = {k: v for k, v in tfserving_args().items() if k.endswith("_file")}
    for path in map(PurePosixPath, files.values()):
        host_dir, read_only = mounts[str(path.parent)]
        assert host_dir == SERVING_CONFIG and read_only
        assert (SERVING_CONFIG / path.name).is_file(), f"serving_config/{path.name} missing"
        # Kubernetes: the same path comes from the ConfigMap generated from serving_config/.
        assert k8s_mounts["config"]["mountPath"] == str(path.parent)
        assert config_map["data"][path.name] == (SERVING_CONFIG / path.name).read_text()


def test_models_config_names_the_model_at_the_mounted_absolute_base_path():
    (model,) = models_config().model_config_list.config
    assert (model.name, model.base_path) == (MODEL, f"/models/{MODEL}")
    assert model.model_platform == "tensorflow"
    # compose mounts ./models read-only at /models; Kubernetes mounts the PVC there.
    host_dir, read_only = bind_mounts(compose_service("tfserving"))["/models"]
    assert host_dir == REPO / "models" and read_only
    models_mount = next(m for m in container("tfserving")["volumeMounts"] if m["name"] == "models")
    assert models_mount == {"name": "models", "mountPath": "/models", "readOnly": True}
    seed = manifest("Deployment", "tfserving")["spec"]["template"]["spec"]["initContainers"][0]
    assert seed["args"][-1] == model.base_path


def test_tfserving_runs_as_the_same_unprivileged_user_in_compose_and_kubernetes():
    pod = manifest("Deployment", "tfserving")["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] and pod["runAsUser"] != 0
    uid, gid = compose_service("tfserving")["user"].split(":")
    assert (int(uid), int(gid)) == (pod["runAsUser"], pod["runAsGroup"])
    assert compose_service("tfserving")["cap_drop"] == ["ALL"]


def test_health_checks_wait_for_an_available_model_on_the_rest_port():
    compose_test = compose_service("tfserving")["healthcheck"]["test"]
    readiness = container("tfserving")["readinessProbe"]["exec"]["command"]
    assert compose_test == ["CMD", *readiness]
    script = readiness[-1]
    assert f"/dev/tcp/127.0.0.1/{REST}" in script
    assert f"GET /v1/models/{MODEL} " in script and "AVAILABLE" in script


def test_tfserving_ports_are_loopback_only_in_compose_and_internal_in_kubernetes():
    assert compose_service("tfserving")["ports"] == [
        f"127.0.0.1:{GRPC}:{GRPC}",
        f"127.0.0.1:{REST}:{REST}",
    ]
    ports = {p["name"]: p["containerPort"] for p in container("tfserving")["ports"]}
    assert ports == {"grpc": GRPC, "http": REST}
    service = manifest("Service", "tfserving")["spec"]
    assert service["type"] == "ClusterIP"
    assert {p["name"]: p["port"] for p in service["ports"]} == ports


def test_proxy_reaches_tfserving_through_the_service_with_its_own_variable_names():
    # compose's ${NAME:-default} as it resolves with nothing set
    compose_env = {
        name: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)
        for name, value in compose_service("proxy")["environment"].items()
    }
    k8s_env = {e["name"]: e["value"] for e in container("proxy")["env"]}
    assert compose_env == k8s_env
    config = ProxyConfig.from_env(k8s_env)
    assert config.grpc_address == f"tfserving:{GRPC}"
    assert config.rest_url == f"http://tfserving:{REST}"
    assert config.model_name == MODEL
    assert config.default_label is None
    # The proxy's defaults (no environment: `make serve`) use the same ports and model.
    default = ProxyConfig()
    assert default.grpc_address.endswith(f":{GRPC}") and default.rest_url.endswith(f":{REST}")
    assert default.model_name == MODEL


def test_the_ingress_publishes_the_page_and_api_but_not_the_operations_endpoints():
    from urllib.parse import urlsplit

    from proxy.app import create_app

    paths = manifest("Ingress", "proxy")["spec"]["rules"][0]["http"]["paths"]

    def published(url: str) -> bool:
        return any(
            url == p["path"] if p["pathType"] == "Exact" else url.startswith(p["path"] + "/")
            for p in paths
        )

    app = create_app(ProxyConfig())
    routes = {urlsplit(rule.rule).path for rule in app.url_map.iter_rules()}
    private = {"/metrics", "/healthz", "/readyz"}
    assert private <= routes
    for route in routes:
        assert published(route.replace("<path:filename>", "app.js")) == (route not in private)


def test_proxy_port_and_probes():
    # Under compose the proxy is reached only through its front (proxy/nginx.conf).
    assert "ports" not in compose_service("proxy")
    assert compose_service("proxy")["expose"] == [str(PROXY)]
    assert compose_service("proxy")["environment"]["PROXY_PORT"] == str(PROXY)
    proxy = container("proxy")
    assert proxy["ports"] == [{"name": "http", "containerPort": PROXY}]
    # Ready = the process answers; /readyz (TF Serving reachable) would take every proxy out
    # of the Service while TF Serving is down, and the Ingress's HTML 503 would replace the
    # page and the API's JSON 503.
    assert proxy["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert proxy["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert proxy["securityContext"]["readOnlyRootFilesystem"] is True
    assert "replicas" not in manifest("Deployment", "proxy")["spec"]  # the HPA's to set


def test_networkpolicy_admits_only_the_proxy_and_labelled_clients_to_tfserving():
    policy = manifest("NetworkPolicy", "tfserving-clients")["spec"]
    tfserving_pods = manifest("Deployment", "tfserving")["spec"]["template"]["metadata"]
    proxy_pods = manifest("Deployment", "proxy")["spec"]["template"]["metadata"]
    assert policy["podSelector"]["matchLabels"].items() <= tfserving_pods["labels"].items()
    (rule,) = policy["ingress"]
    selectors = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
    assert selectors[0].items() <= proxy_pods["labels"].items()
    assert selectors[1] == {"cifar10.tfserving/client": "allowed"}
    assert {p["port"] for p in rule["ports"]} == {"grpc", "http"}


def test_prometheus_scrape_annotations_match_monitoring_config():
    text = (SERVING_CONFIG / "monitoring.config").read_text()
    monitoring = text_format.Parse(text, tfs_monitoring_config_pb2.MonitoringConfig())
    assert monitoring.prometheus_config.enable
    annotations = manifest("Deployment", "tfserving")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == monitoring.prometheus_config.path
    assert annotations["prometheus.io/port"] == str(REST)


def test_the_proxy_pods_are_scraped_at_the_proxys_metrics_page():
    annotations = manifest("Deployment", "proxy")["spec"]["template"]["metadata"]["annotations"]
    config = ProxyConfig()
    from proxy.app import create_app

    page = create_app(config).test_client().get(annotations["prometheus.io/path"])
    assert page.status_code == 200 and b"proxy_http_requests_total" in page.data
    assert annotations["prometheus.io/port"] == "5000"  # the container's port `http`


def test_every_metric_the_alert_rules_name_is_one_the_proxy_exports():
    """k8s/monitoring/alerts.yaml is not applied by kustomize; nothing else would notice a
    rule that names a metric which does not exist (it would never fire)."""
    import yaml
    from prometheus_client.parser import text_string_to_metric_families

    from proxy.app import create_app
    from proxy.metrics import SERVER_SIDE_KINDS

    client = create_app(ProxyConfig()).test_client()
    client.get("/healthz")
    client.post("/api/predict", data=b"x", content_type="application/json")  # an error kind
    page = client.get("/metrics").get_data(as_text=True)
    exported: dict[str, set[str]] = {}  # sample name -> its label names
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            exported.setdefault(sample.name, set()).update(sample.labels)
    rules = yaml.safe_load((REPO / "k8s/monitoring/alerts.yaml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert alerts and all({"alert", "expr", "for", "annotations"} <= set(a) for a in alerts)
    for alert in alerts:
        if ":tensorflow:serving:" in alert["expr"]:
            continue  # TF Serving's: tests/deploy/test_deploy_modelserver.py checks those
        named = set(re.findall(r"\b(proxy_[a-z_]+)\b", alert["expr"]))
        assert named and named <= set(exported), (alert["alert"], named - set(exported))
        for metric, matchers in re.findall(r"\b(proxy_[a-z_]+)\{([^}]*)\}", alert["expr"]):
            labels = set(re.findall(r"([a-z_]+)\s*=~?", matchers))
            assert labels <= exported[metric] | {"le"}, (alert["alert"], metric, labels)
        kinds = set(re.findall(r'kind="([a-z_]+)"', alert["expr"]))
        assert kinds <= set(SERVER_SIDE_KINDS), (alert["alert"], kinds)
        assert set(re.findall(r'endpoint="([^"]+)"', alert["expr"])) <= {"/api/predict"}


def test_the_trainer_image_writes_only_into_its_volumes():
    """The trainer runs as an unprivileged user in a read-only /app: its run folder, the models
    it exports and the decoded-data cache (which once defaulted to /app/.cache, a traceback
    before the first step) must all lie on a volume."""
    env = image_env("trainer")
    volumes = [PurePosixPath(v) for v in image_volumes("trainer")]
    for name in ("RUN_DIR", "MODEL_BASE_PATH", "DATASET_CACHE_DIR"):
        path = PurePosixPath(env[name])
        assert any(path.is_relative_to(v) for v in volumes), f"{name}={path} is on no volume"


@pytest.mark.parametrize("access_log", ["image", "off"])
def test_the_proxy_image_command_serves_the_app(tmp_path, access_log):
    """The Dockerfile's own CMD with its own ENV, run here as the container would run it (no
    Docker engine on this machine): gunicorn starts the app factory with gunicorn_conf.py,
    listens on every interface, answers /healthz and logs the request (with its request id)
    as the image asks, and not when GUNICORN_ACCESS_LOG is off (the logging config once
    turned it on for good). The port is a free one."""
    cmd = [c for c in dockerfile.parse_file(str(DOCKERFILES["proxy"])) if c.cmd == "CMD"][-1]
    port = free_port()
    image = {k: v for k, v in image_env("proxy").items() if k != "PATH"}
    if access_log == "off":
        image["GUNICORN_ACCESS_LOG"] = ""
    env = {**os.environ, **image, "PROXY_PORT": str(port)}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prom")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # the venv's gunicorn
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        process = subprocess.Popen(list(cmd.value), cwd=REPO, env=env, stdout=out, stderr=out)
    try:
        answer = _first_answer(f"http://127.0.0.1:{port}/healthz", process, timeout=60)
    finally:
        process.terminate()
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    assert answer.status_code == 200, answer.text
    assert code == 0  # gunicorn's graceful stop
    printed = log.read_text()
    assert f"Listening at: http://0.0.0.0:{port}" in printed
    logged = re.search(r'"GET /healthz HTTP/1.1" 200 .* id=[0-9a-f]{32} fwd=- ms=\d+', printed)
    assert bool(logged) == (access_log == "image"), printed[-2000:]


def _first_answer(url: str, process: subprocess.Popen, timeout: float) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"the CMD exited with {process.returncode}"
        try:
            return requests.get(url, timeout=5)
        except requests.RequestException:  # not listening yet, or a worker still booting
            assert time.monotonic() < deadline, f"gunicorn did not answer in {timeout} s"
            time.sleep(0.3)


def test_images_share_one_pinned_base_and_run_as_non_root():
    for path in DOCKERFILES.values():
        commands = dockerfile.parse_file(str(path))
        (base,) = [c.value[0] for c in commands if c.cmd == "ARG" and "PYTHON_IMAGE" in c.value[0]]
        assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+", base), path
        user = [c.value[0] for c in commands if c.cmd == "USER"][-1]
        assert user.split(":")[0] not in ("root", "0"), path


def test_the_proxy_starts_with_its_process_environment_in_the_image_and_in_make_serve():
    from proxy.config import PROCESS_ENV
    from stack.processes import Stack, proxy_env

    assert PROCESS_ENV.items() <= image_env("proxy").items()
    stack = Stack(Path("models/cifar10"), 1, 2, 3, "127.0.0.1")
    assert PROCESS_ENV.items() <= proxy_env(stack, "/tmp/unused").items()


def test_proxy_image_installs_only_the_tensorflow_free_proxy_extra():
    text = DOCKERFILES["proxy"].read_text()
    assert "['optional-dependencies']['proxy']" in text and "-c constraints.txt" in text
    proxy_extra = pyproject()["project"]["optional-dependencies"]["proxy"]
    assert not [r for r in proxy_extra if r.startswith("tensorflow")]
    healthcheck = next(
        c for c in dockerfile.parse_file(str(DOCKERFILES["proxy"])) if c.cmd == "HEALTHCHECK"
    )
    assert "/healthz" in healthcheck.value[-1]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides;
    `*` stays within one path segment, `**` spans any number."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        regex = re.escape(glob).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, c) for c in candidates):
            ignored = not negated
    return ignored


def test_dockerignore_keeps_runs_data_caches_and_venv_out_but_lets_copied_files_in():
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for path in (
        "runs/default/model.keras",
        "data/cifar10.tar.gz",
        ".venv/bin/python",
        ".git/HEAD",
        ".cache/x",
        "proxy/__pycache__/app.cpython-311.pyc",
        "tests/conftest.py",
        "models/cifar10/.tmp-2/saved_model.pb",
        "models/cifar10/.rollback-6/saved_model.pb",
        "models/cifar10/.deleting-6/saved_model.pb",
        "models/cifar10/5/tflite/model.tflite",
        "models/cifar10/.last-version",
    ):
        assert dockerignored(path, patterns), f"{path} would enter the build context"
    copied = [
        source
        for path in DOCKERFILES.values()
        for c in dockerfile.parse_file(str(path))
        if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags)
        for source in c.value[:-1]
    ]
    for source in [*copied, "models/cifar10/1/saved_model.pb"]:
        assert not dockerignored(source.rstrip("/"), patterns), f"{source} is ignored"


def test_selectors_and_references_resolve_to_rendered_resources():
    pods = [
        d["spec"]["template"]["metadata"]["labels"]
        for d in manifests()
        if d["kind"] == "Deployment"
    ]
    for doc in manifests():
        spec = doc.get("spec", {})
        selector = spec.get("selector")
        if doc["kind"] in ("Service", "PodDisruptionBudget", "Deployment"):
            selector = selector.get("matchLabels", selector)
            assert any(selector.items() <= labels.items() for labels in pods), doc["metadata"]
    hpa = manifest("HorizontalPodAutoscaler", "proxy")["spec"]
    assert manifest("Deployment", hpa["scaleTargetRef"]["name"])
    assert hpa["minReplicas"] >= 2  # one pod may be disrupted (PDB) while another serves
    for path in manifest("Ingress", "proxy")["spec"]["rules"][0]["http"]["paths"]:
        backend = path["backend"]["service"]
        service_ports = manifest("Service", backend["name"])["spec"]["ports"]
        assert backend["port"]["name"] in [p["name"] for p in service_ports]
    volumes = manifest("Deployment", "tfserving")["spec"]["template"]["spec"]["volumes"]
    (claim,) = [v["persistentVolumeClaim"] for v in volumes if "persistentVolumeClaim" in v]
    assert manifest("PersistentVolumeClaim", claim["claimName"])


def _project_imports(entry: str) -> set[Path]:
    """Every project source file `entry` (a module name) imports, directly or not, at the top
    or inside functions: what its image must hold."""
    packages = {"training", "export", "proxy", "modelserver", "bench", "stack"}
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        candidates = [
            REPO.joinpath(*parts).with_suffix(".py"),
            REPO.joinpath(*parts, "__init__.py"),
        ]
        file = next((c for c in candidates if c.is_file()), None)
        if file is None or file in seen:
            continue
        seen.add(file)
        for i in range(1, len(parts)):  # a module's packages run their __init__ first
            todo.append(".".join(parts[:i]))
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.split(".")[0] in packages]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in packages:
                todo += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return seen


@pytest.mark.parametrize(
    ("image", "entries"),
    [
        ("trainer", ["training.train", "export.__main__"]),
        ("proxy", ["proxy.app", "proxy.gunicorn_conf"]),
    ],
)
def test_each_image_holds_every_project_module_its_commands_import(image, entries):
    """The trainer decodes data with imaging/ and numbers versions with modelserver's rule: an
    image that lacked a module would fail at its first import, which no test here could see
    without Docker."""
    copied = [
        source.rstrip("/")
        for c in final_stage(image)
        if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags)
        for source in c.value[:-1]
    ]
    needed = set().union(*(_project_imports(entry) for entry in entries))
    assert needed
    for file in sorted(needed):
        relative = file.relative_to(REPO).as_posix()
        assert any(relative == s or relative.startswith(f"{s}/") for s in copied), (
            f"the {image} image lacks {relative}"
        )


def _trainer_entrypoint_command(python_stub: str, tmp_path: Path) -> tuple[list[str], dict]:
    """The trainer image's ENTRYPOINT (its script from this checkout, not /app) and the
    image's environment, with `python` a stub shell script (the image itself needs Docker,
    absent here)."""
    entrypoint = next(c for c in final_stage("trainer") if c.cmd == "ENTRYPOINT").value
    command = [arg.replace("/app/", f"{REPO}/", 1) for arg in entrypoint]
    stub = tmp_path / "python"
    stub.write_text(f"#!/bin/sh\n{python_stub}\n")
    stub.chmod(0o755)
    return command, {**image_env("trainer"), "PATH": f"{tmp_path}:/usr/bin:/bin"}


def _trainer_entrypoint(*extra: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """The entry point run with a `python` that prints its arguments."""
    command, env = _trainer_entrypoint_command('echo "python $*"', tmp_path)
    return subprocess.run([*command, *extra], capture_output=True, text=True, env=env)


def test_a_training_that_fails_publishes_nothing(tmp_path):
    command, env = _trainer_entrypoint_command(
        'case "$*" in *training.train*) exit 1;; *) echo "export ran";; esac', tmp_path
    )
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert (done.returncode, done.stdout) == (1, "")


@pytest.mark.parametrize("step", ["training.train", "export"])
def test_docker_stop_reaches_each_step_through_the_entry_point_as_pid_1(tmp_path, step):
    """A container's PID 1 gets no signal it has no handler for: the entry point, a plain
    `sh -c`, ignored `docker stop`'s SIGTERM, and Docker killed the training 10 s later
    without its checkpoint. The real script as PID 1 of a new PID namespace, the step under
    way a stub that saves on SIGTERM: the signal reaches it, and nothing runs after it."""
    import shutil
    import signal
    import time

    from stack.processes import children_of

    if (
        shutil.which("unshare") is None
        or subprocess.run(
            ["unshare", "-fp", "--mount-proc", "true"], capture_output=True
        ).returncode
    ):
        pytest.skip(f"{HOST_LIMIT} PID namespaces (unshare needs CAP_SYS_ADMIN)")
    stub = (
        f'case "$*" in *"-m {step} "*) trap "echo saved; exit 143" TERM; echo started; '
        'while :; do sleep 0.1; done;; *) echo "ran $2";; esac'
    )
    command, env = _trainer_entrypoint_command(stub, tmp_path)
    output = tmp_path / "output"
    with output.open("w") as out:
        proc = subprocess.Popen(["unshare", "-fp", "--mount-proc", *command], stdout=out, env=env)
    deadline = time.monotonic() + 30
    while "started" not in output.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, output.read_text()
        time.sleep(0.05)
    [pid_1] = children_of(proc.pid)  # the entry point's shell, PID 1 in its namespace
    os.kill(pid_1, signal.SIGTERM)
    try:
        code = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"SIGTERM was ignored; output: {output.read_text()!r}") from None
    before = ["ran training.train"] if step == "export" else []
    assert output.read_text().splitlines() == [*before, "started", "saved"]
    assert code == 143


def test_the_trainer_trains_and_exports_the_same_run_folder(tmp_path):
    """`--run-dir` among the training flags trained one folder while export published RUN_DIR
    (argparse keeps the last --run-dir): it is refused, RUN_DIR names the folder."""
    done = _trainer_entrypoint("--recipe", "long", tmp_path=tmp_path)
    run_dir = image_env("trainer")["RUN_DIR"]
    assert done.returncode == 0, done.stderr
    train, export = done.stdout.splitlines()
    assert f"--run-dir {run_dir} --recipe long" in train
    assert export.startswith(f"python -m export --run-dir {run_dir} ")
    # argparse takes any unambiguous prefix (--recipe shares "--r"): --ru... is --run-dir.
    for flag in (["--run-dir", "/runs/long"], ["--run-dir=/runs/long"], ["--run", "/x"]):
        refused = _trainer_entrypoint("--recipe", "long", *flag, tmp_path=tmp_path)
        assert refused.returncode == 2 and refused.stdout == "", refused.stdout
        assert "-e RUN_DIR=/runs/<name>" in refused.stderr

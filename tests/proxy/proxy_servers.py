"""Real processes for the proxy tests: the local model server, and the whole stack.

Everything here starts actual subprocesses on free loopback ports; nothing is mocked.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from scripts.serve import free_port

ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "cifar10"
START_TIMEOUT_S = 240  # TensorFlow import + model load on a busy 2-core machine
# Versions 1 and 2 are different tiny models (seeds 1 and 2), both served, with labels.
LABELS = {"stable": 1, "canary": 2}


class ModelServerProcess:
    """`python -m modelserver` on free ports; stop() and start() again keep the same ports."""

    def __init__(self, base_path: Path, log_path: Path, config_file: Path | None = None) -> None:
        self.base_path = base_path
        self.config_file = config_file
        self.log_path = log_path
        self.grpc_port = free_port()
        self.rest_port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def command(self) -> list[str]:
        command = [
            sys.executable, "-m", "modelserver",
            f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}",
            "--host=127.0.0.1",
        ]  # fmt: skip
        if self.config_file:
            return [
                *command,
                f"--model_config_file={self.config_file}",
                "--allow_version_labels_for_unavailable_models=true",
            ]
        return [*command, f"--model_name={MODEL_NAME}", f"--model_base_path={self.base_path}"]

    def start(self) -> ModelServerProcess:
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        wait_until(self.is_ready, self.process, self.log_path, "model server")
        return self

    def is_ready(self) -> bool:
        try:
            response = requests.get(f"{self.rest_url}/v1/models/{MODEL_NAME}", timeout=2)
        except requests.RequestException:
            return False
        rows = response.json().get("model_version_status", []) if response.ok else []
        # The ports open once the newest version is AVAILABLE (as TF Serving's do); older
        # versions of a multi-version config may still be loading, so wait for those too.
        states = {row["state"] for row in rows}
        return "AVAILABLE" in states and states <= {"AVAILABLE", "END"}

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


def wait_until(ready, process: subprocess.Popen, log_path: Path, what: str) -> None:
    """Poll `ready()` until true; fail early, with the log, if the process exits."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready():
            return
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{tail(log_path)}")
        time.sleep(0.25)
    stop_process(process)
    raise RuntimeError(f"{what} not ready after {START_TIMEOUT_S} s:\n{tail(log_path)}")


def stop_process(process: subprocess.Popen | None, timeout: float = 30) -> int | None:
    """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
    if process is None or process.poll() is not None:
        return None if process is None else process.returncode
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def publish_copy(source: Path, base_path: Path, version: int) -> Path:
    """Publish a SavedModel folder as `version` atomically (as `export` does)."""
    from export.publish import publish

    return publish(lambda tmp: shutil.copytree(source, tmp, dirs_exist_ok=True), base_path, version)


def models_config(base_path: Path, versions: list[int], labels: dict[str, int]) -> str:
    """A models.config serving exactly `versions` with `labels` (TF Serving text format)."""
    specific = " ".join(f"versions: {v}" for v in versions)
    label_lines = "".join(
        f'    version_labels {{ key: "{k}" value: {v} }}\n' for k, v in labels.items()
    )
    return (
        "model_config_list {\n  config {\n"
        f'    name: "{MODEL_NAME}"\n    base_path: "{base_path}"\n'
        '    model_platform: "tensorflow"\n'
        f"    model_version_policy {{ specific {{ {specific} }} }}\n"
        f"{label_lines}  }}\n}}\n"
    )


def child_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    return env


def proxy_config(server: ModelServerProcess, protocol: str, **overrides):
    """A proxy configuration pointing at `server` over `protocol` ("grpc" or "rest")."""
    from proxy.config import ProxyConfig

    return ProxyConfig(
        grpc_address=server.grpc_address, rest_url=server.rest_url, protocol=protocol, **overrides
    )

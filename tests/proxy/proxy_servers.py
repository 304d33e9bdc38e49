"""Real processes for the proxy tests: the local model server, and the whole stack.

Everything here starts actual subprocesses on free loopback ports; nothing is mocked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from scripts import processes
from scripts.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "cifar10"
# Versions 1 and 2 are different tiny models (seeds 1 and 2), both served, with labels.
LABELS = {"stable": 1, "canary": 2}


class ModelServerProcess:
    """`python -m modelserver` on free ports; stop() and start() again keep the same ports."""

    def __init__(
        self,
        base_path: Path,
        log_path: Path,
        config_file: Path | None = None,
        extra_flags: tuple[str, ...] = (),
    ) -> None:
        self.base_path = base_path
        self.config_file = config_file
        self.extra_flags = extra_flags
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
        if self.config_file:
            flags = [
                f"--model_config_file={self.config_file}",
                "--allow_version_labels_for_unavailable_models=true",
            ]
        else:
            flags = processes.model_flags(self.base_path)
        return processes.model_server_command(
            self.grpc_port, self.rest_port, *flags, *self.extra_flags
        )

    def start(self) -> ModelServerProcess:
        with self.log_path.open("a") as log:
            self.process = processes.start(self.command(), None, log, own_session=False)
        try:
            processes.wait_for(
                self.is_ready, {"the model server": self.process}, "the model server"
            )
        except RuntimeError as error:
            processes.stop(self.process)
            raise RuntimeError(f"{error}:\n{tail(self.log_path)}") from None
        return self

    def is_ready(self) -> bool:
        return processes.model_settled(self.rest_port)

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process)
        self.process = None


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def publish_copy(source: Path, base_path: Path, version: int) -> Path:
    """Publish a SavedModel folder as `version` atomically (as `export` does)."""
    from export.publish import publish

    return publish(lambda tmp: shutil.copytree(source, tmp, dirs_exist_ok=True), base_path, version)


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

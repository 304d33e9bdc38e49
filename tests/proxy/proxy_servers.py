"""Real processes for the proxy tests: the local model server, and the whole stack.

Everything here starts actual subprocesses on free loopback ports; nothing is mocked.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from scripts import processes

ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "cifar10"
# Versions 1 and 2 are different tiny models (seeds 1 and 2), both served, with labels.
LABELS = {"stable": 1, "canary": 2}


class ModelServerProcess(processes.ModelServer):
    """A model server of a base path or a models.config for the proxy tests; start() waits
    until it serves, and stop() and start() again keep the same ports."""

    def __init__(
        self,
        base_path: Path,
        log_path: Path,
        config_file: Path | None = None,
        extra_flags: tuple[str, ...] = (),
    ) -> None:
        if config_file:
            flags = [
                f"--model_config_file={config_file}",
                "--allow_version_labels_for_unavailable_models=true",
            ]
        else:
            flags = processes.model_flags(base_path)
        super().__init__([*flags, *extra_flags], log_path, own_session=False)
        self.base_path = base_path  # where a test drops or parks version folders

    def start(self) -> ModelServerProcess:
        super().start()
        self.wait_ready()
        return self


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

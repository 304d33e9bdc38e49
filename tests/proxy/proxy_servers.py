"""Real processes for the proxy tests: the local model server, and the whole stack.

Everything here starts actual subprocesses on free loopback ports; nothing is mocked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from hangup import with_hangup

from stack import processes
from stack.processes import free_port
from stack.processes import stop as stop_child

ROOT = Path(__file__).resolve().parents[2]
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


class ServeProcess:
    """`python -m stack.serve` with its output collected line by line."""

    def __init__(
        self, base_path: Path, ignore_hangup: bool = False, extra_env: dict | None = None,
        **ports: int,
    ) -> None:  # fmt: skip
        env = {**{k.upper(): str(v) for k, v in ports.items()}, **(extra_env or {})}
        self.ports = ports
        self.lines: list[str] = []
        # SIGHUP set either way: a runner started under nohup would pass it on ignored, and
        # serve rightly keeps an ignored SIGHUP ignored (CI runs began that way here).
        self.process = subprocess.Popen(
            with_hangup([sys.executable, "-m", "stack.serve"], ignored=ignore_hangup),
            cwd=ROOT,
            env=child_env(MODEL_BASE_PATH=str(base_path), **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['proxy_port']}"

    def _collect(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for_line(self, fragment: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exited = self.process.poll() is not None
            if exited:
                self._reader.join(10)  # the output up to the end
            found = [line for line in self.lines if fragment in line]
            if found:
                return found[0]
            if exited:
                break
            time.sleep(0.2)
        raise AssertionError(f"{fragment!r} not printed; output:\n{''.join(self.lines)[-4000:]}")

    def wait_exit(self, timeout: float) -> int:
        """Its exit code; a failure that shows its output when it does not exit in time."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            output = "".join(self.lines)[-4000:]
            raise AssertionError(f"still running after {timeout} s; output:\n{output}") from None

    def stop(self) -> bool:
        return stop_child(self.process)


def start_stack(
    base_path: Path, ignore_hangup: bool = False, extra_env: dict | None = None
) -> ServeProcess:
    ports = {"grpc_port": free_port(), "rest_port": free_port(), "proxy_port": free_port()}
    return ServeProcess(base_path, ignore_hangup, extra_env, **ports)

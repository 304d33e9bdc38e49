"""The system under test of the soak run and the system tests: real processes on loopback.

`SoakStack` starts the local model server (batching on, `serving_config/batching.config`,
models from a `models.config` written into the run folder) and the proxy under gunicorn
(`proxy/gunicorn_conf.py`, exactly as `make serve` does), and performs the operator actions
the soak run injects: roll a version out and back, reload the config with a `canary` label
over gRPC, SIGKILL and restart the model server. Everything the stack writes (logs, metrics,
temp files, the model copy) stays under one run folder, which `FileSnapshot` verifies.

Process plumbing is `stack.processes`'s (the same start/stop/wait code as `make serve`), so
the soak exercises the real start-up path rather than a test double of it.
"""

from __future__ import annotations

import fnmatch
import math
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tensorflow_serving.config.model_server_config_pb2 import ModelConfig

from bench.procmem import pss_mb, rss_mb
from bench.soak_load import CANARY
from export.config import MODEL_NAME
from export.publish import publish_copy, versions
from modelserver.config_files import model_config, models_config_text
from proxy.config import ProxyConfig
from stack import processes
from stack.processes import children_of, free_port

ROOT = Path(__file__).resolve().parents[1]
# Shared-machine neighbours the file check cannot tell apart from us by path alone: other
# pytest sessions (ours runs inside its own run folder), tool job folders, browser profiles.
FOREIGN_WRITERS = ("/tmp/pytest-of-*", "/tmp/bash_*", "/tmp/playwright*")
BATCHING_CONFIG = ROOT / "serving_config" / "batching.config"


@dataclass(frozen=True)
class ProxyLimits:
    """Proxy settings the load depends on (sizes of hostile payloads, the 503 bound)."""

    max_upload_bytes: int = ProxyConfig.max_upload_bytes
    max_pixels: int = ProxyConfig.max_pixels
    max_images: int = ProxyConfig.max_images
    # Not the proxy's 5 s: while the server is down, a 503 must come within this + 2 s.
    timeout_s: float = 3.0
    workers: int = 2
    threads: int = 4


def served_model(base_path: Path, labels: dict[str, int] | None = None) -> ModelConfig:
    """The served model: the latest version of `base_path`, optional version labels."""
    policy = "latest { num_versions: 1 }"
    return model_config(MODEL_NAME, base_path, policy=policy, labels=labels)


@dataclass
class SoakStack:
    """Model server + gunicorn proxy over a private copy of a model base path."""

    run_dir: Path
    source_base: Path
    limits: ProxyLimits = field(default_factory=ProxyLimits)
    model_server: subprocess.Popen | None = None
    proxy: subprocess.Popen | None = None
    _log: IO | None = None

    def __post_init__(self) -> None:
        self.base_path = self.run_dir / "models" / MODEL_NAME
        self.config_file = self.run_dir / "models.config"
        self.tmp_dir = self.run_dir / "tmp"
        self.ports = processes.Stack(
            self.base_path, free_port(), free_port(), free_port(), "127.0.0.1"
        )

    # ----- lifecycle -----

    def start(self) -> SoakStack:
        """Copy the model, write the config, start both processes, wait until both serve."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        newest = max(versions(self.source_base))
        shutil.copytree(self.source_base / str(newest), self.base_path / "1")
        self.config_file.write_text(models_config_text(served_model(self.base_path)))
        self._log = (self.run_dir / "servers.log").open("a")
        self.start_model_server()
        self.proxy = processes.start(processes.proxy_command(), self._proxy_env(), self._log)
        both = {"the model server": self.model_server, "the proxy": self.proxy}
        processes.wait_for(lambda: processes.proxy_ready(self.ports), both, "the proxy")
        return self

    def stop(self) -> None:
        for process in (self.proxy, self.model_server):
            if process is not None:
                processes.stop(process)
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> SoakStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start_model_server(self) -> None:
        self.model_server = processes.start(self._model_server_command(), self._env(), self._log)
        processes.wait_for(lambda: processes.model_available(self.ports),
                           {"the model server": self.model_server}, "the model server")  # fmt: skip

    def kill_model_server(self) -> None:
        """SIGKILL: no shutdown code runs, in-flight requests are cut."""
        assert self.model_server is not None
        self.model_server.send_signal(signal.SIGKILL)
        self.model_server.wait()

    def _model_server_command(self) -> list[str]:
        return processes.model_server_command(
            self.ports.grpc_port, self.ports.rest_port,
            f"--model_config_file={self.config_file}",
            "--enable_batching", f"--batching_parameters_file={BATCHING_CONFIG}",
            "--file_system_poll_wait_seconds=0.5",
            # The restarted server reads the canary label before its versions have loaded.
            "--allow_version_labels_for_unavailable_models=true",
        )  # fmt: skip

    def _env(self) -> dict[str, str]:
        """Children write temp files into the run folder, and no bytecode into the code tree
        (a served tree may be read-only; existing .pyc files are still used)."""
        return {**os.environ, "TMPDIR": str(self.tmp_dir), "PYTHONDONTWRITEBYTECODE": "1"}

    def _proxy_env(self) -> dict[str, str]:
        metrics = self.run_dir / "proxy-metrics"
        metrics.mkdir(exist_ok=True)
        env = {**processes.proxy_env(self.ports, str(metrics)), **self._env()}
        env.update(
            MAX_UPLOAD_BYTES=str(self.limits.max_upload_bytes),
            MAX_PIXELS=str(self.limits.max_pixels),
            MAX_IMAGES=str(self.limits.max_images),
            MODEL_SERVER_TIMEOUT_S=str(self.limits.timeout_s),
            GUNICORN_WORKERS=str(self.limits.workers),
            GUNICORN_THREADS=str(self.limits.threads),
        )
        return env

    # ----- operator actions -----

    def roll_out(self) -> int:
        """Publish the served model again as the next version (temp folder + rename)."""
        current = max(versions(self.base_path))
        source = self.base_path / str(current)
        publish_copy(source, self.base_path, current + 1)
        return current + 1

    def roll_back(self, version: int) -> None:
        """Remove a version the way `export.publish.prune` does: hide it, then delete it."""
        hidden = self.base_path / f".rollback-{version}"
        os.rename(self.base_path / str(version), hidden)
        shutil.rmtree(hidden)

    def add_label(self, label: str = CANARY) -> int:
        """Point `label` at the served version: write the config file (so a restart keeps
        it) and send it with ModelService/HandleReloadConfigRequest."""
        import grpc
        from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

        version = max(versions(self.base_path))
        served = served_model(self.base_path, {label: version})
        self.config_file.write_text(models_config_text(served))
        request = model_management_pb2.ReloadConfigRequest()
        request.config.model_config_list.config.append(served)
        with grpc.insecure_channel(f"127.0.0.1:{self.ports.grpc_port}") as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            response = stub.HandleReloadConfigRequest(request, timeout=60)
        if response.status.error_code:
            raise RuntimeError(f"config reload failed: {response.status.error_message}")
        return version

    def wait_served(self, version: int, timeout_s: float = 180) -> None:
        """Until `version` is the only AVAILABLE one (a rollout or rollback has settled)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            states = processes.model_states(self.ports.rest_port)
            if [v for v, s in states.items() if s == "AVAILABLE"] == [version]:
                return
            time.sleep(0.2)
        raise RuntimeError(f"version {version} never became the only one served: {states}")

    # ----- observation -----

    def rss(self) -> dict[str, float]:
        """Memory in MB: the model server's RSS, and the proxy's PSS summed over its master and
        workers (shared pages once). NaN while a process is gone (the killed model server, a
        worker exiting): a sample without it would read as a drop."""
        try:
            pids = [self.proxy.pid, *children_of(self.proxy.pid)] if self.proxy else []
            proxy = sum(pss_mb(pid) for pid in pids) if pids else math.nan
        except OSError:  # a process exited under us
            proxy = math.nan
        try:
            server = rss_mb(self.model_server.pid) if self.model_server else math.nan
        except OSError:
            server = math.nan
        return {"model_server": server, "proxy": proxy}


@dataclass
class FileSnapshot:
    """(mtime, size) of every file under some roots, to find files written during a run."""

    roots: tuple[Path, ...]
    exclude: tuple[Path, ...]
    files: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def take(cls, roots: Iterable[Path], exclude: Iterable[Path]) -> FileSnapshot:
        snapshot = cls(tuple(roots), tuple(p.resolve() for p in exclude))
        for root in snapshot.roots:
            snapshot._scan(root)
        return snapshot

    def _scan(self, folder: Path) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            path = Path(entry.path)
            if any(path == ex or ex in path.parents for ex in self.exclude) or any(
                fnmatch.fnmatch(entry.path, pattern) for pattern in FOREIGN_WRITERS
            ):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    self._scan(path)
                elif entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    self.files[entry.path] = (info.st_mtime_ns, info.st_size)
            except OSError:
                continue

    def changed_since(self, before: FileSnapshot) -> list[str]:
        """Files that are new or whose mtime/size changed (deletions are not writes)."""
        return sorted(p for p, stamp in self.files.items() if before.files.get(p) != stamp)


def watched_roots() -> tuple[Path, ...]:
    """Where a stray write would land: the repository, the system temp folders."""
    return (ROOT, Path("/tmp"), Path("/dev/shm"), Path("/var/tmp"))


def default_exclusions() -> tuple[Path, ...]:
    """Never ours: git's own files, the lead's training runs, the venv, tool caches."""
    names = (".git", "runs", ".venv", ".pytest_cache", ".ruff_cache", ".cache")
    return tuple(ROOT / name for name in names)

"""The processes of the stack: start, watch and stop the local model server and the proxy.

`make serve` (stack/serve.py) is one user; the benchmarks and the tests start their servers
with the same commands and the same start/stop/wait code, so that what they measure and check
is what `make serve` runs.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from export.config import DEFAULT_BASE_PATH, MODEL_NAME
from proxy.config import PROCESS_ENV

ROOT = Path(__file__).resolve().parents[1]
# Longer than the model server's own load retries (by default 6 attempts, 60 s apart): a
# version that never loads makes it exit with the cause, which beats our timeout to the screen.
START_TIMEOUT_S = 420
STOP_TIMEOUT_S = 20


# The environment variables `make serve` reads, their defaults (DESIGN.md's ports) and uses.
SETTINGS = {
    "MODEL_BASE_PATH": (str(DEFAULT_BASE_PATH), "the model's version folders"),
    "GRPC_PORT": ("8500", "the model server's gRPC port"),
    "REST_PORT": ("8501", "the model server's REST port"),
    "PROXY_PORT": ("5000", "the proxy's port (the page)"),
    "PROXY_HOST": ("127.0.0.1", "the proxy's address; 0.0.0.0 to reach it from other machines"),
    "MODEL_CONFIG_FILE": (
        "",
        "a models.config to serve instead (labels, version policies; re-read every minute), "
        "e.g. serving_config/models.config; its /models/ paths are taken under the folder "
        "that holds MODEL_BASE_PATH (models/ by default)",
    ),
}


@dataclass(frozen=True)
class Stack:
    """Where everything listens; from the environment (SETTINGS)."""

    base_path: Path
    grpc_port: int
    rest_port: int
    proxy_port: int
    proxy_host: str
    config_file: Path | None = None

    @classmethod
    def from_env(cls) -> Stack:
        def setting(name: str) -> str:
            return os.environ.get(name) or SETTINGS[name][0]

        def port(name: str) -> int:
            value = setting(name)
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise ValueError(f"{name}={value} is not a port number (1-65535)")
            return int(value)

        return cls(
            base_path=Path(setting("MODEL_BASE_PATH")).resolve(),
            grpc_port=port("GRPC_PORT"),
            rest_port=port("REST_PORT"),
            proxy_port=port("PROXY_PORT"),
            proxy_host=setting("PROXY_HOST"),
            config_file=Path(setting("MODEL_CONFIG_FILE")).resolve()
            if setting("MODEL_CONFIG_FILE")
            else None,
        )

    def model_server_command(self) -> list[str]:
        if self.config_file is None:
            flags = model_flags(self.base_path)
        else:
            flags = config_flags(self.config_file, self.base_path.parent)
        return model_server_command(self.grpc_port, self.rest_port, *flags)

    @property
    def url(self) -> str:
        host = "localhost" if self.proxy_host in ("127.0.0.1", "0.0.0.0") else self.proxy_host
        return f"http://{host}:{self.proxy_port}/"


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port free now (the benchmarks' and tests' servers start on these), and not
    one this process handed out before: two calls in a row can get the same port back from
    the kernel, and a gRPC and a REST port that clash fail the start (it happened in CI)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def model_server_command(grpc_port: int, rest_port: int, *flags: str) -> list[str]:
    """`python -m modelserver` on loopback ports; `flags` say what it serves and how. The one
    command line of `make serve`, the benchmarks and the tests."""
    return [
        sys.executable, "-m", "modelserver", "--host=127.0.0.1",
        f"--port={grpc_port}", f"--rest_api_port={rest_port}", *flags,
    ]  # fmt: skip


def model_flags(base_path: Path | str, name: str = MODEL_NAME) -> list[str]:
    """Serve one model's version folders (no config file: TF Serving's latest-version policy)."""
    return [f"--model_name={name}", f"--model_base_path={base_path}"]


def config_flags(config_file: Path, models_dir: Path) -> list[str]:
    """Serve a models.config as docker compose does: re-read every minute, labels accepted
    while their versions load, its /models/ paths (the container's) mapped to `models_dir`."""
    return [
        f"--model_config_file={config_file}",
        "--model_config_file_poll_wait_seconds=60",
        "--allow_version_labels_for_unavailable_models",
        f"--model_base_path_prefix_map=/models={models_dir}",
    ]


def proxy_command() -> list[str]:
    conf = ROOT / "proxy" / "gunicorn_conf.py"
    return [sys.executable, "-m", "gunicorn", "-c", str(conf), "proxy.app:create_app()"]


def proxy_env(stack: Stack, metrics_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MODEL_SERVER_GRPC=f"127.0.0.1:{stack.grpc_port}",
        MODEL_SERVER_REST=f"http://127.0.0.1:{stack.rest_port}",
        MODEL_NAME=MODEL_NAME,
        PROXY_PORT=str(stack.proxy_port),
        PROXY_HOST=stack.proxy_host,
        PROMETHEUS_MULTIPROC_DIR=metrics_dir,
        **PROCESS_ENV,
    )
    return env


def start(
    command: list[str],
    env: dict[str, str] | None = None,
    log: IO | None = None,
    own_session: bool = True,
) -> subprocess.Popen:
    """A child, by default in its own session (Ctrl-C reaches only us, and we stop it in
    order); output to ours or to `log`. Tests keep theirs in the test run's session, so that a
    Ctrl-C or a killed test run takes them along."""
    stderr = subprocess.STDOUT if log else None
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=stderr, start_new_session=own_session
    )


def stop(child: subprocess.Popen) -> bool:
    """SIGTERM, wait, then SIGKILL: never leave a child behind. False when it had to be killed."""
    if child.poll() is not None:
        return True
    child.terminate()
    try:
        child.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        return False
    return True


def exited(children: dict[str, subprocess.Popen]) -> tuple[str, subprocess.Popen] | None:
    """The first child that has exited, with its name; None while all run."""
    return next(((n, c) for n, c in children.items() if c.poll() is not None), None)


def how_it_ended(child: subprocess.Popen) -> str:
    """'exited with code 1', or 'was killed by signal 9 (SIGKILL)' for a negative code."""
    code = child.returncode
    if code is None or code >= 0:
        return f"exited with code {code}"
    try:
        name = f" ({signal.Signals(-code).name})"
    except ValueError:  # a real-time signal has no name
        name = ""
    return f"was killed by signal {-code}{name}"


def wait_for(
    ready: Callable[[], bool],
    children: dict[str, subprocess.Popen],
    what: str,
    check: Callable[[], None] = lambda: None,
    log_is: str = "above",
) -> None:
    """Until `ready()`, or a RuntimeError when a child exits or START_TIMEOUT_S passes;
    `children`: every process whose exit means `what` cannot start, by the name to blame.
    `check` runs before and after each try and may raise to give up (make serve's stop
    signal: a ready() answered after the signal does not count)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        check()
        if ready():
            check()
            return
        if gone := exited(children):
            name, dead = gone
            raise RuntimeError(f"{name} {how_it_ended(dead)} while {what} started "
                               f"(its log: {log_is})")  # fmt: skip
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready after {START_TIMEOUT_S} s")
        time.sleep(0.3)


def model_states(rest_port: int, model: str = MODEL_NAME, timeout: float = 2) -> dict[int, str]:
    """{version: state} from the model server's REST status; empty while it is not up."""
    status = get_json(f"http://127.0.0.1:{rest_port}/v1/models/{model}", timeout)
    rows = (status or {}).get("model_version_status", [])
    return {int(row["version"]): row["state"] for row in rows}


def available_versions(rest_port: int, model: str = MODEL_NAME) -> list[int]:
    """The versions the model server answers from now, oldest first."""
    return sorted(v for v, state in model_states(rest_port, model).items() if state == "AVAILABLE")


def model_available(stack: Stack) -> bool:
    return bool(available_versions(stack.rest_port))


def model_settled(rest_port: int) -> bool:
    """Serving, and no version still on its way: the ports open once the newest version is
    AVAILABLE (as TF Serving's do), and a models.config's older versions, which its labels
    may name, can still be loading then."""
    states = set(model_states(rest_port).values())
    return "AVAILABLE" in states and states <= {"AVAILABLE", "END"}


class ModelServer:
    """`python -m modelserver` on two free loopback ports, kept across a restart, its output
    appended to `log_path` (None: discarded): how the tests and benchmarks run one. (`make
    serve` starts its own with the proxy, and watches both.) `nice`: behind the work it
    serves, on two shared cores; `own_session`: see start()."""

    def __init__(
        self,
        flags: list[str],
        log_path: Path | None = None,
        *,
        nice: bool = False,
        own_session: bool = True,
    ) -> None:
        self.flags = flags
        self.log_path = log_path
        self.nice = nice
        self.own_session = own_session
        self.grpc_port, self.rest_port = free_port(), free_port()
        self.process: subprocess.Popen | None = None

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def start(self) -> ModelServer:
        command = model_server_command(self.grpc_port, self.rest_port, *self.flags)
        if self.nice:
            command = ["nice", "-n", "19", *command]
        log = self.log_path.open("a") if self.log_path else open(os.devnull, "w")  # noqa: SIM115
        with log:  # the child has its own copy of the file
            self.process = start(command, None, log, own_session=self.own_session)
        return self

    def wait_ready(self, ready: Callable[[int], bool] = model_settled) -> float:
        """Seconds until `ready(rest_port)`. A server that exits or is not ready within
        START_TIMEOUT_S is stopped, and a RuntimeError gives the tail of its log."""
        assert self.process is not None, "start() first"
        where = f"{self.log_path}, its end below" if self.log_path else "not kept"
        started = time.monotonic()
        try:
            wait_for(lambda: ready(self.rest_port), {"the model server": self.process},
                     "the model server", log_is=where)  # fmt: skip
        except RuntimeError as error:
            self.stop()
            raise RuntimeError(f"{error}\n{self.log_tail()}") from None
        return time.monotonic() - started

    def log_tail(self, chars: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


def proxy_ready(stack: Stack) -> bool:
    return get_json(f"http://127.0.0.1:{stack.proxy_port}/readyz") is not None


def get_json(url: str, timeout: float = 2) -> dict | None:
    """The JSON body of a 200 answer, or None for anything else (not up yet)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.load(response)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
        return None  # also a port that some other, non-HTTP service answers


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(x) for x in text]
    return found

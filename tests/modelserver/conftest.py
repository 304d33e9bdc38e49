"""Fixtures for the model-server tests. Models come from the shared fixtures in
tests/conftest.py (`tiny_savedmodel`, `add_model_version`, `tiny_model_base`): the export
area's real signatures and warm-up file. Helpers live in modelserver_harness.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from modelserver_harness import MODEL, ServerProcess, monitoring_flag, running_server


@pytest.fixture
def start_server(tmp_path) -> Iterator[Callable[..., ServerProcess]]:
    """start_server(*flags, ready=True, model=MODEL) -> ServerProcess; all stopped after the
    test. With `ready`, returns once `model` is served."""
    started: list[ServerProcess] = []

    def start(*args: str, ready: bool = True, model: str = MODEL) -> ServerProcess:
        server = ServerProcess(list(args), tmp_path / f"modelserver-{len(started)}.log")
        started.append(server)
        return server.wait_ready(model) if ready else server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def model_base_v1(make_tiny_base) -> Path:
    """A module-wide base path `<tmp>/cifar10/1` (tests must not change it)."""
    return make_tiny_base()


@pytest.fixture(scope="session")
def api_server(make_tiny_base) -> Iterator[ServerProcess]:
    """One server for the read-only API tests: version 1 of the tiny model, monitoring on,
    the gRPC health service on, a 1 MiB request limit, no batching, no file-system polling
    after start-up."""
    base = make_tiny_base()
    folder = base.parent
    args = [
        f"--model_name={MODEL}", f"--model_base_path={base}", monitoring_flag(folder),
        "--max_request_bytes=1048576", "--file_system_poll_wait_seconds=0",
        "--enable_grpc_healthcheck_service",
    ]  # fmt: skip
    with running_server(args, folder / "modelserver.log") as server:
        yield server

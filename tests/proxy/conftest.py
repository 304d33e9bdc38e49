"""Proxy test fixtures: a real model server serving two tiny versions, and proxy apps on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from proxy_servers import LABELS, ModelServerProcess, proxy_config

from export.config import MODEL_NAME
from proxy.app import create_app
from proxy.config import ProxyConfig


@pytest.fixture(scope="session")
def two_version_server(make_tiny_base) -> Iterator[ModelServerProcess]:
    """One model server for the whole session: versions 1 and 2, labels stable/canary."""
    from modelserver.config_files import (  # needs TF Serving's protos
        model_config,
        models_config_text,
    )

    base = make_tiny_base(1, 2)
    root = base.parent
    config = root / "models.config"
    policy = "specific { versions: 1 versions: 2 }"
    served = model_config(MODEL_NAME, base, policy=policy, labels=LABELS)
    config.write_text(models_config_text(served))
    server = ModelServerProcess(base, root / "modelserver.log", config_file=config).start()
    yield server
    server.stop()


@pytest.fixture(params=["grpc", "rest"])
def protocol(request) -> str:
    return request.param


@pytest.fixture
def client(two_version_server, protocol):
    """Flask test client of a proxy talking `protocol` to the two-version model server."""
    app = create_app(proxy_config(two_version_server, protocol))
    yield app.test_client()
    app.extensions["proxy"].client.close()


@pytest.fixture
def offline_client():
    """A proxy whose model server address has nothing listening (for requests refused
    before any model call, and for the 'model server down' answer)."""
    from stack.processes import free_port

    port = free_port()
    config = ProxyConfig(
        grpc_address=f"127.0.0.1:{port}", rest_url=f"http://127.0.0.1:{port}", timeout_s=2
    )
    app = create_app(config)
    yield app.test_client()
    app.extensions["proxy"].client.close()


@pytest.fixture(scope="session")
def sample_jpegs() -> dict[str, bytes]:
    """A few photo-sized JPEGs (smooth random colour fields) by file name."""
    from proxy_images import photo_like

    return {f"photo{i}.jpg": photo_like(i) for i in range(4)}

"""Flask app factory: `create_app()` reads the environment, `create_app(config)` does not.

Served by gunicorn (`gunicorn -c proxy/gunicorn_conf.py "proxy.app:create_app()"`), never by
Flask's debug server in production.
"""

from __future__ import annotations

from flask import Flask

from proxy import api, errors, ops, page, request_log, security
from proxy.client import ModelClient, make_client
from proxy.config import ProxyConfig
from proxy.metrics import Metrics
from proxy.services import Services
from proxy.uploads import InMemoryRequest


def create_app(config: ProxyConfig | None = None, client: ModelClient | None = None) -> Flask:
    """Build the proxy app; `client` replaces the model server client (tests, benchmarks)."""
    config = config or ProxyConfig.from_env()
    app = Flask(__name__)
    app.request_class = InMemoryRequest
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes
    app.json.sort_keys = False
    metrics = Metrics()
    app.extensions["proxy"] = Services(config, client or make_client(config), metrics)
    metrics.install(app)
    request_log.install(app)
    security.install(app)
    errors.install(app)
    app.register_blueprint(page.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(ops.bp)
    return app

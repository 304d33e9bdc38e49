"""Prometheus metrics: requests, latency, errors by kind, model server time.

Under gunicorn with several workers, set PROMETHEUS_MULTIPROC_DIR (stack/serve.py does) so
/metrics adds up every worker; without it each worker reports only its own counts.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Request, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from proxy.client.base import ModelServerError, ModelServerTimeout, ModelServerUnavailable

# The kinds of the 5xx answers (proxy/client/base.py's errors and errors.py's "internal").
SERVER_SIDE_KINDS = (
    ModelServerError.kind,
    ModelServerUnavailable.kind,
    ModelServerTimeout.kind,
    "internal",
)
LATENCY_BUCKETS = (0.005, 0.01, 0.015, 0.025, 0.04, 0.06, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


# A client may send any method name; each new one would be a new series for ever (in the
# multiprocess files too), so the rest count as "other".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


def _route_of(req: Request) -> str:
    """The route's rule, also for a method the route does not take (a GET of /api/predict,
    which counted as "unmatched" with the unknown paths); "unmatched" for an unknown path."""
    if req.url_rule is not None:
        return req.url_rule.rule
    if isinstance(req.routing_exception, MethodNotAllowed) and req.routing_exception.valid_methods:
        adapter = current_app.url_map.bind_to_environ(req.environ)
        method = next(iter(req.routing_exception.valid_methods))
        try:
            rule, _ = adapter.match(method=method, return_rule=True)
        except HTTPException:  # not expected: the method is one the route takes
            return "unmatched"
        return rule.rule
    return "unmatched"


class Metrics:
    """The proxy's metric families, registered in their own registry (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "proxy_http_requests",
            "HTTP requests handled, by route, method and status code.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "proxy_http_request_duration_seconds",
            "Time from request to response, by route.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "proxy_errors",
            "Error responses by kind (bad_image, too_large, model_unavailable, ...).",
            ["kind"],
            registry=self.registry,
        )
        # The server-side kinds exist from the start at 0, so that an alert's rate() sees the
        # first error (a series born at 1 has no increase to show).
        for kind in SERVER_SIDE_KINDS:
            self.errors.labels(kind)
        self.model_latency = Histogram(
            "proxy_model_server_duration_seconds",
            "Time spent waiting for the model server's Predict, by protocol and outcome (ok, "
            "or the error kind: model_timeout, model_unavailable, not_found, model_error).",
            ["protocol", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.images = Counter(
            "proxy_images_classified",
            "Images classified, by the model version that answered (a rollout shows here).",
            ["version"],
            registry=self.registry,
        )

    def install(self, app: Flask) -> None:
        """Time every request and count it by route and status."""

        @app.before_request
        def _start_timer() -> None:
            g.request_started = time.perf_counter()

        @app.after_request
        def _record(response: Response) -> Response:
            endpoint = _route_of(request)
            started = g.get("request_started")
            if started is not None:
                self.latency.labels(endpoint).observe(time.perf_counter() - started)
            method = request.method if request.method in KNOWN_METHODS else "other"
            self.requests.labels(endpoint, method, str(response.status_code)).inc()
            return response

    def render(self) -> tuple[bytes, str]:
        """Prometheus text for /metrics: all workers' files in multiprocess mode, else ours."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

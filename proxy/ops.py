"""Operations endpoints: liveness, readiness (model AVAILABLE) and Prometheus metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from proxy.api import resolve_default
from proxy.client import ModelServerError
from proxy.errors import error_response
from proxy.services import services

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive and answering (no model server call)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response | tuple[Response, int]:
    """Ready = the model server answers and what a plain request asks for (the latest version,
    or MODEL_VERSION / MODEL_LABEL) is AVAILABLE: a proxy whose every default request would
    fail must leave the load balancer's rotation."""
    svc = services()
    name = svc.config.model_name
    try:
        versions = svc.client.status(name)
    except ModelServerError as exc:
        return error_response(f"not ready: {exc}", 503, "not_ready")
    available = [v.version for v in versions if v.state == "AVAILABLE"]
    serves, problem = resolve_default(svc, available)
    if serves is None:
        return error_response(f"not ready: {problem}", 503, "not_ready")
    return jsonify(status="ready", model=name, available_versions=available, default_version=serves)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format."""
    body, content_type = services().metrics.render()
    return Response(body, content_type=content_type)

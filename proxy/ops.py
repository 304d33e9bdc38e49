"""Operations endpoints: liveness, readiness (model AVAILABLE) and Prometheus metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from proxy.client import ModelServerError
from proxy.errors import error_response
from proxy.services import available_versions, resolve_default, services

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive and answering (no model server call)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response | tuple[Response, int]:
    """Ready = the model server answers and has an AVAILABLE version of our model.

    What a plain request gets (the latest, or MODEL_VERSION / MODEL_LABEL) is reported, not
    required: every replica shares that setting, so failing readiness on it would empty the
    Service and cut off the requests that name a version or label too."""
    svc = services()
    name = svc.config.model_name
    try:
        versions = svc.client.status(name)
    except ModelServerError as exc:
        return error_response(f"not ready: {exc}", 503, "not_ready")
    available = available_versions(versions)
    if not available:
        message = f"not ready: model {name!r} has no AVAILABLE version"
        return error_response(message, 503, "not_ready")
    serves, problem = resolve_default(svc, available)
    return jsonify(
        status="ready",
        model=name,
        available_versions=available,
        default_version=serves,
        default_error=problem,
    )


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format."""
    body, content_type = services().metrics.render()
    return Response(body, content_type=content_type)

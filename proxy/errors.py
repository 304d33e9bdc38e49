"""Every error leaves the proxy as `{"error": "<message a person understands>"}` JSON."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from proxy.client import ModelNotFound, ModelServerError, ModelServerUnavailable
from proxy.preprocess import ImageError
from proxy.services import services

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A request the proxy refuses itself (bad query parameter, no image, ...)."""

    def __init__(self, message: str, http_status: int = 400, kind: str = "bad_request") -> None:
        super().__init__(message)
        self.http_status = http_status
        self.kind = kind


def error_response(message: str, status: int, kind: str) -> tuple[Response, int]:
    """The JSON error body, counted in the errors metric."""
    services().metrics.errors.labels(kind).inc()
    return jsonify(error=message), status


def install(app: Flask) -> None:
    """Register JSON handlers for our errors, HTTP errors and anything unexpected."""

    @app.errorhandler(ApiError)
    @app.errorhandler(ImageError)
    def _refused(exc: ApiError | ImageError) -> tuple[Response, int]:
        return error_response(str(exc), exc.http_status, exc.kind)

    @app.errorhandler(ModelServerError)
    def _model_server(exc: ModelServerError) -> tuple[Response, int]:
        return error_response(_model_server_message(exc), exc.http_status, exc.kind)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge) -> tuple[Response, int]:
        limit = services().config.max_upload_bytes / 1e6
        return error_response(f"the upload is larger than the {limit:g} MB limit", 413, "too_large")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int]:
        return error_response(exc.description or exc.name, exc.code or 500, "http")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return error_response("internal error in the proxy (see its log)", 500, "internal")


def _model_server_message(exc: ModelServerError) -> str:
    if isinstance(exc, ModelServerUnavailable):
        return f"The model server is unavailable ({exc}). Please try again in a moment."
    if isinstance(exc, ModelNotFound):
        return f"Not being served: {exc}"
    return f"The model server refused the request: {exc}"

"""Every error leaves the proxy as JSON: `{"error": "<message a person understands>",
"kind": "<stable name a program can branch on>"}`. The kinds: bad_request, bad_image,
too_large, unsupported_media, not_found (a version, label or model), no_route (a path),
method_not_allowed, model_unavailable and not_ready (503s, with Retry-After), model_timeout
(504: the model server did not answer within MODEL_SERVER_TIMEOUT_S), model_error, http,
internal."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from imaging.decode import ImageError
from proxy import request_log
from proxy.client import ModelNotFound, ModelServerError, ModelServerUnavailable
from proxy.services import services

log = logging.getLogger(__name__)
# A refused upload up to this size is read and dropped so the keep-alive connection stays usable.
DRAIN_CAP_BYTES = 64 << 20


class ApiError(Exception):
    """A request the proxy refuses itself (bad query parameter, no image, ...)."""

    def __init__(self, message: str, http_status: int = 400, kind: str = "bad_request") -> None:
        super().__init__(message)
        self.http_status = http_status
        self.kind = kind


# Seconds a client should wait before it retries a 503 (the model server restarting, or
# loading its first version).
RETRY_AFTER_S = 2


def error_response(
    message: str, status: int, kind: str, cause: BaseException | None = None
) -> tuple[Response, int]:
    """The JSON error body, counted in the errors metric; `cause` goes to the log only."""
    services().metrics.errors.labels(kind).inc()
    request_log.note_error(kind, cause)
    response = jsonify(error=message, kind=kind)
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response, status


def install(app: Flask) -> None:
    """Register JSON handlers for our errors, HTTP errors and anything unexpected."""

    @app.errorhandler(ApiError)
    @app.errorhandler(ImageError)
    def _refused(exc: ApiError | ImageError) -> tuple[Response, int]:
        return error_response(str(exc), exc.http_status, exc.kind)

    @app.errorhandler(ModelServerError)
    def _model_server(exc: ModelServerError) -> tuple[Response, int]:
        cause = exc.__cause__ or exc  # the gRPC or HTTP error behind it, for the log
        return error_response(_model_server_message(exc), exc.http_status, exc.kind, cause)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge) -> tuple[Response, int]:
        _drain_unread_body()
        limit = services().config.max_upload_bytes
        if request.content_length is not None and request.content_length <= limit:
            # Under the body limit, Werkzeug's form limits were hit instead: too many parts,
            # or a text field held in memory that is too long.
            message = (
                f"the form has more than {request.max_form_parts} parts, or a text field over "
                f"{request.max_form_memory_size // 1000:,} kB; send each image as a `file` field"
            )
        else:
            message = f"the upload is larger than the {limit / 2**20:.3g} MiB limit"
            if request.is_json:  # an image in base64 is a third larger than its file
                message += "; base64 in JSON makes an image a third larger: send a big one as "
                message += "multipart field `file`"
        return error_response(message, 413, "too_large")

    @app.errorhandler(MethodNotAllowed)
    def _method(exc: MethodNotAllowed) -> tuple[Response, int]:
        allowed = sorted(set(exc.valid_methods or ()) - {"HEAD", "OPTIONS"})
        response, status = error_response(
            f"{request.method} is not allowed here; use {' or '.join(allowed)}",
            405,
            "method_not_allowed",
        )
        response.headers["Allow"] = ", ".join(exc.valid_methods or ())  # RFC 9110 15.5.6
        return response, status

    @app.errorhandler(NotFound)
    def _not_found(exc: NotFound) -> tuple[Response, int]:
        if exc.description != NotFound.description:  # a view's own abort(404, "...")
            return error_response(exc.description, 404, "not_found")
        return error_response(f"no such page or API: {request.path}", 404, "no_route")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int]:
        return error_response(exc.description or exc.name, exc.code or 500, "http")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response("internal error in the proxy (see its log)", 500, "internal", exc)


def _drain_unread_body() -> None:
    """Read and drop the body of a refused upload (in memory, never to disk).

    Werkzeug refuses an oversized upload before reading it; gunicorn then closes the socket
    although the answer said keep-alive, and the client's next request on it fails.
    """
    stream = request.environ.get("wsgi.input")
    left = min(request.content_length or 0, DRAIN_CAP_BYTES)
    while stream is not None and left > 0:
        chunk = stream.read(min(left, 1 << 16))
        if not chunk:
            return
        left -= len(chunk)


def _model_server_message(exc: ModelServerError) -> str:
    if isinstance(exc, ModelServerUnavailable):
        # exc says what happened to "the model server" ("... cannot be reached"): one sentence.
        text = str(exc)
        return f"{text[:1].upper()}{text[1:]}. Please try again in a moment."
    if isinstance(exc, ModelNotFound):
        return str(exc)
    return f"The model server refused the request: {exc}"

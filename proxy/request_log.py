"""What the proxy's log says about requests: a request id on every answer, and one warning
line for every 5xx with its cause, so that an operator can tell a model server that is down
from one that is slow or refusing, and find the matching access-log line.

The id is the client's `X-Request-ID` when it sends a sane one (an Ingress or a load balancer
often does), else a new one; it is echoed in the answer's `X-Request-ID`, which the access log
prints (proxy/gunicorn_conf.py).
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

log = logging.getLogger("proxy.requests")
REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def install(app: Flask) -> None:
    @app.before_request
    def _assign_id() -> None:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex

    @app.after_request
    def _echo_and_log(response: Response) -> Response:
        request_id = g.get("request_id") or uuid.uuid4().hex  # a request refused before
        response.headers[REQUEST_ID_HEADER] = request_id
        if response.status_code >= 500:
            # proxy.metrics stamps every request as it starts (its latency histogram)
            started = g.get("request_started", time.perf_counter())
            log.warning(
                "%s %s -> %d %s after %.0f ms (request %s)%s",
                request.method,
                request.path,
                response.status_code,
                g.get("error_kind", ""),
                (time.perf_counter() - started) * 1000,
                request_id,
                f": {g.error_cause}" if g.get("error_cause") else "",
            )
        return response


def note_error(kind: str, cause: BaseException | None) -> None:
    """Keep what went wrong for the request's log line: the error's kind, and the model
    server's own words or the network error behind it (which clients are not shown)."""
    g.error_kind = kind
    g.error_cause = describe(cause) if cause is not None else ""


def describe(error: BaseException) -> str:
    """One line: a gRPC error's code and details, or an exception's type and message."""
    code, details = getattr(error, "code", None), getattr(error, "details", None)
    if callable(code) and callable(details):
        return f"{code().name}: {details()}"
    return f"{type(error).__name__}: {error}".splitlines()[0][:300]

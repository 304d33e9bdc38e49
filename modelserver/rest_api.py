"""REST front end on a threaded HTTP/1.1 server (stdlib `ThreadingHTTPServer`, keep-alive):
TF Serving's routes, JSON shapes, status codes and error bodies (reference §3), plus the
Prometheus page when monitoring is enabled (§5).

`RestApi.handle` is the whole API as a plain function of (method, path, headers, body); the
handler class only moves bytes, so HTTP plumbing and API behaviour stay separate.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from google.protobuf import json_format
from tensorflow_serving.apis import get_model_status_pb2

from modelserver import deadlines, rest_json
from modelserver.grpc_api import model_status_response
from modelserver.metrics import Metrics
from modelserver.predict import Predictor
from modelserver.servable import (
    DEFAULT_SIGNATURE,
    Servable,
    classify_or_regress_unimplemented,
)
from modelserver.status import ServingError, handler_error, invalid_argument

log = logging.getLogger(__name__)

# model_servers/http_rest_api_util.h (RE2::FullMatch semantics -> re.fullmatch).
_API_PATH = re.compile(r"(?i)/v1/.*")
# A refused body is still read (and dropped) for up to this long before the 413 goes out:
# closing a socket with unread bytes makes the kernel send a reset, and the client, still
# sending, loses the answer. A time cap, not a size cap: on a fast link any size drains.
_DISCARD_WINDOW_S = 10.0
_LINE_LIMIT = 65536  # http.server's own limit on the request line and each header
_PREDICTION_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)"
)
_STATUS_PATH = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:\/(metadata))?"
)
_INT64_MAX = 2**63 - 1
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}
# The page for paths outside /v1: evhttp_server.cc calls libevent's evhttp_send_error(req,
# HTTP_NOTFOUND, nullptr), which writes this (http.c ERR_FORMAT with the reason phrase).
_NOT_FOUND_PAGE = (
    "<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n"
    "</BODY></HTML>\n"
)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Route:
    model: str
    version: int | None
    label: str | None
    verb: str  # predict / classify / regress for POST; "metadata" or "" for GET


class RestApi:
    def __init__(
        self,
        predictor: Predictor,
        metrics: Metrics,
        prometheus_path: str | None,
        enable_cors: bool,
        timeout_s: float | None = None,
    ) -> None:
        self._predictor = predictor
        self._manager = predictor.manager
        self._metrics = metrics
        self._prometheus_path = prometheus_path
        self._enable_cors = enable_cors
        self._timeout_s = timeout_s  # --rest_api_timeout_in_ms; None: no limit

    def handle(self, method: str, target: str, headers, body: bytes) -> Response:
        # The server finds a handler by the path alone, but the handlers match what libevent
        # calls uri_path(): the path with "?query" and "#fragment" (evhttp_request.cc). So a
        # query string makes a predict "Malformed", a status request look up model "m?x=1",
        # and the metrics page answer "Unexpected path" (http_server.cc).
        path = urlsplit(target).path
        uri_path = target if target.startswith("/") else path
        # The real handler answers the page whatever the method (http_server.cc).
        if self._prometheus_path and path == self._prometheus_path:
            if uri_path != path:
                message = f"Unexpected path: {uri_path}. Should be {path}"
                return Response(400, message.encode(), {"Content-Type": "text/plain"})
            page = self._metrics.render().encode()
            # http_server.cc sets exactly "text/plain" (reference §5).
            return Response(200, page, {"Content-Type": "text/plain"})
        path = uri_path
        if not _API_PATH.fullmatch(path):
            # evhttp_send_page_ sets exactly these two headers, and closes the connection.
            page_headers = {"Content-Type": "text/html", "Connection": "close"}
            return Response(404, _NOT_FOUND_PAGE.encode(), page_headers)
        started = time.perf_counter()
        response, model, verb, code = self._api(method, path, headers, body)
        if method != "OPTIONS":  # a preflight's answer has neither body nor type (below)
            response.headers["Content-Type"] = "application/json"
        if self._enable_cors:
            response.headers.update(_CORS_HEADERS)
        # model_servers/http_server.cc: every /v1 request counted; latency only when OK.
        if response.status == 200:
            elapsed = (time.perf_counter() - started) * 1e6
            self._metrics.request_latency.observe(elapsed, model, verb, "REST")
        self._metrics.request_count.inc(model, code)
        return response

    def _api(self, method: str, path: str, headers, body: bytes):
        """(response, model name, API verb for metrics, status code name)."""
        if method == "OPTIONS":
            # http_server.cc answers a preflight itself: the status only, and an empty body
            # even for its FAILED_PRECONDITION "Origin header is missing in CORS preflight".
            if re.search(r"https?://", headers.get("Origin", "")):
                return Response(200), "", "", "OK"
            return Response(400), "", "", "FAILED_PRECONDITION"
        route = None
        try:
            route = self._route(method, path)
            if route is None:
                raise invalid_argument(f"Malformed request: {method} {path}")
            text = self._dispatch(method, path, route, body)
        except _EmptyBodyError as error:
            return Response(400), error.model, "", "INVALID_ARGUMENT"
        except Exception as caught:  # noqa: BLE001 - handler_error logs a bug's traceback
            error = handler_error(caught, log, f"{method} {path}")
            model = route.model if route else ""
            verb = route.verb if route and method == "POST" else ""
            return self._error(error), model, verb, error.code.name
        verb = route.verb if method == "POST" else ""
        return Response(200, rest_json.body_bytes(text)), route.model, verb, "OK"

    @staticmethod
    def _error(error: ServingError) -> Response:
        return Response(error.http_status, rest_json.error_body(error.message))

    @staticmethod
    def _route(method: str, path: str) -> _Route | None:
        """ParseModelInfo (model_servers/http_rest_api_util.cc)."""
        pattern = {"POST": _PREDICTION_PATH, "GET": _STATUS_PATH}.get(method)
        match = pattern.fullmatch(path) if pattern else None
        if match is None:
            return None
        name, version_text, label, verb = match.groups()
        model = unquote(name or "")
        version = None
        if version_text:
            version = int(version_text)
            if version > _INT64_MAX:
                # ParseModelInfo returns before MakeJsonFromStatus: 400 with an empty body.
                raise _EmptyBodyError(model)
        return _Route(model, version, unquote(label) if label else None, verb or "")

    def _dispatch(self, method: str, path: str, route: _Route, body: bytes) -> str:
        if method == "GET":
            if not route.model:
                raise invalid_argument("Missing model name in request.")
            if route.verb == "metadata":
                return self._metadata(route)
            return self._status(route)
        if route.verb == "predict":
            return self._predict(route, body)
        if route.verb in ("classify", "regress"):
            return self._classify_or_regress(route, body)
        # The verb group is case-insensitive but dispatch compares to lower case, so
        # ":PREDICT" stays a "Malformed request" exactly as in http_rest_api_handler.cc.
        raise invalid_argument(f"Malformed request: {method} {path}")

    def _status(self, route: _Route) -> str:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = route.model
        if route.version is not None:
            request.model_spec.version.value = route.version
        response = model_status_response(self._manager, request)
        # http_rest_api_util.cc ToJsonString: add_whitespace, which C++ protobuf prints with
        # a one-space indent (Python's default is two).
        return json_format.MessageToJson(
            response,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
            indent=1,
        )

    def _metadata(self, route: _Route) -> str:
        """Hand-assembled like http_rest_api_util.cc: note the doubled "signature_def" key."""
        servable = self._predictor.servable(route.model, route.version, route.label)
        signatures = json_format.MessageToDict(
            servable.signature_def_map(),
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
        document = {
            "model_spec": {
                "name": servable.name,
                "signature_name": "",
                "version": str(servable.version),
            },
            "metadata": {"signature_def": signatures},
        }
        return json.dumps(document, indent=1)

    def _predict(self, route: _Route, body: bytes) -> str:
        """ProcessPredictRequest: JSON first, then model and signature, then tensors, so
        malformed JSON to an unknown model is a 400, not a 404 (reference §3.6)."""
        document = rest_json.parse_document(body)
        requested = rest_json.signature_name_of(document)
        servable = self._predictor.servable(route.model, route.version, route.label)
        signature = self._signature(servable, requested or DEFAULT_SIGNATURE)
        if not signature.definition.inputs:  # json_tensor.cc FillPredictRequestFromJson
            raise invalid_argument(
                f"Failed to get input map for signature: {requested or 'DEFAULT'}"
            )
        inputs, row_format = rest_json.predict_inputs(document, signature.definition.inputs)
        # The timeout bounds the run, not the JSON work (the handler's RunOptions.timeout_in_ms).
        deadline = deadlines.after(self._timeout_s)
        result = self._predictor.predict(servable, signature, inputs, deadline=deadline)
        dtypes = {alias: signature.output_dtype(alias) for alias in result.outputs}
        if row_format:
            return rest_json.row_response(result.outputs, dtypes)
        return rest_json.columnar_response(result.outputs, dtypes)

    @staticmethod
    def _signature(servable: Servable, name: str):
        signature = servable.signature(name)
        if signature is None:
            raise invalid_argument(f'Serving signature name: "{name}" not found in signature def')
        return signature

    def _classify_or_regress(self, route: _Route, body: bytes) -> str:
        """The request checks of FillClassifyRegressRequestFromJson and the signature checks
        of classifier.cc / regressor.cc; the call itself is not implemented here (our models
        have predict-style signatures, on which TF Serving answers 400 as well)."""
        document = rest_json.parse_document(body)
        signature_name = rest_json.signature_name_of(document) or DEFAULT_SIGNATURE
        rest_json.check_examples(document)
        servable = self._predictor.servable(route.model, route.version, route.label)
        raise classify_or_regress_unimplemented(servable, signature_name, route.verb)


class _EmptyBodyError(Exception):
    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.model = model


class _Handler(BaseHTTPRequestHandler):
    """Moves bytes between the socket and `RestApi.handle`."""

    protocol_version = "HTTP/1.1"
    server_version = "modelserver"
    api: RestApi
    max_body_bytes: int

    def _serve(self) -> None:
        with self.server.serving():
            self._serve_one()

    def _serve_one(self) -> None:
        try:
            body = self._read_body()
        except _BodyTooLarge as error:
            self.close_connection = True
            self.connection.settimeout(self.timeout)  # the drain may have shortened it
            message = rest_json.error_body(str(error))
            self._send(Response(413, message, {"Content-Type": "application/json"}))
            return
        except TimeoutError:
            # A body stalled past the idle timeout: closed without an answer, as http.server
            # closes a stalled request line or headers (--rest_idle_timeout_seconds).
            raise  # handle_one_request closes the connection
        except (ValueError, OSError, EOFError, zlib.error) as error:
            self.close_connection = True
            message = rest_json.error_body(f"Unreadable request body: {error}")
            self._send(Response(400, message, {"Content-Type": "application/json"}))
            return
        # The request line's own target: http.server collapses a leading "//" in self.path,
        # and the real server's /v1 pattern does not match "//v1/..." (a 404 there).
        words = self.requestline.split()
        target = words[1] if len(words) >= 3 else self.path
        self._send(self.api.handle(self.command, target, self.headers, body))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

    def do_HEAD(self) -> None:
        self._serve()

    def _discard(self, length: int, deadline: float) -> int:
        """Read and drop up to `length` bytes of a refused body until `deadline`; the bytes
        left unread. Each wait for the client ends at the deadline too (`_until`)."""
        left = length
        with contextlib.suppress(TimeoutError):  # the window is over: answer now
            while left > 0:
                self._until(deadline)
                chunk = self.rfile.read1(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        return left

    def _until(self, deadline: float) -> None:
        """The next socket wait ends by `deadline` (and within the idle timeout)."""
        wait = deadline - time.monotonic()
        if wait <= 0:
            raise TimeoutError
        self.connection.settimeout(min(wait, self.timeout or wait))

    def _read_body(self) -> bytes:
        limit = self.max_body_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = self._read_chunked(limit)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:  # rfile.read(-1) would wait for the client to close
                raise ValueError(f"Content-Length {length} is negative")
            if length > limit:
                self._discard(length, time.monotonic() + _DISCARD_WINDOW_S)
                raise _BodyTooLarge(length, limit)
            body = self.rfile.read(length) if length else b""
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            body = inflater.decompress(body, limit + 1)
            if len(body) > limit:
                raise _BodyTooLarge(len(body), limit)
        return body

    def _read_chunked(self, limit: int) -> bytes:
        """The chunks joined; past `limit`, the rest is read and dropped (as `_discard`) until
        the last chunk or the discard window's end, then refused."""
        parts: list[bytes] = []
        total, deadline = 0, None
        while True:
            try:
                if deadline is not None:
                    self._until(deadline)
                size = self._chunk_size()
                if size == 0:
                    while self._line().strip():  # trailers
                        pass
                    break
                total += size
                if total > limit and deadline is None:
                    parts, deadline = [], time.monotonic() + _DISCARD_WINDOW_S
                if deadline is None:
                    parts.append(self.rfile.read(size))
                elif self._discard(size, deadline):
                    break  # the window ended inside this chunk
                self._line()  # the line end after the chunk's data
            except (TimeoutError, ValueError):
                if deadline is None:
                    raise
                break  # draining a refused body: its framing no longer matters
        if total > limit:
            raise _BodyTooLarge(total, limit)
        return b"".join(parts)

    def _chunk_size(self) -> int:
        text = self._line().split(b";")[0].strip() or b"0"
        if not _HEX.fullmatch(text):  # int() takes "-1", "+5" and "1_0": read(-1) hangs
            raise ValueError(f"chunk size {text[:20]!r} is not hexadecimal")
        return int(text, 16)

    def _line(self) -> bytes:
        """One line of a chunked body's framing; an endless one would grow without bound."""
        line = self.rfile.readline(_LINE_LIMIT + 1)
        if len(line) > _LINE_LIMIT:
            raise ValueError(f"a chunk-size or trailer line is longer than {_LINE_LIMIT} bytes")
        return line

    def setup(self) -> None:
        super().setup()
        # Small responses must not wait for the client's delayed ACK (Nagle): ~40 ms each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, response: Response) -> None:
        """Status line, headers and body in one write."""
        if response.headers.get("Connection") == "close":
            self.close_connection = True
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name != "Connection":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.server.stopping:  # a keep-alive client must come back elsewhere, not here
            self.close_connection = True
        if self.close_connection:  # say so, or a keep-alive client reuses a dead connection
            self.send_header("Connection", "close")
        if self.command != "HEAD":
            self._headers_buffer.append(b"\r\n" + response.body)
            self.flush_headers()
        else:
            self.end_headers()

    def log_message(self, format: str, *args) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


class _BodyTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"Request body of {size} bytes exceeds the limit of {limit} bytes (--max_request_bytes)"
        )


class _Server(ThreadingHTTPServer):
    """Counts the requests it is answering, so that a stop can let them finish (`close`)."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stopping = False
        self._answering = 0
        self._idle = threading.Condition()

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        with self._idle:
            self._answering += 1
        try:
            yield
        finally:
            with self._idle:
                self._answering -= 1
                self._idle.notify_all()

    def close(self, grace_s: float) -> bool:
        """Stops accepting, then gives the requests being answered up to `grace_s`; whether they
        all finished. New connections are refused once the serving loop has seen the stop (it
        looks twice a second; one accepted just before is reset when the process exits).
        A keep-alive connection is closed after its next answer."""
        self.stopping = True
        self.shutdown()
        self.server_close()
        with self._idle:
            return self._idle.wait_for(lambda: self._answering == 0, grace_s)


def start_rest_server(
    host: str, port: int, api: RestApi, max_body_bytes: int, idle_timeout_s: float | None
) -> _Server:
    """Binds and returns the server; the caller runs `serve_forever` on a thread.
    `idle_timeout_s` bounds each wait for the client (None: no bound)."""
    attributes = {"api": api, "max_body_bytes": max_body_bytes, "timeout": idle_timeout_s}
    handler = type("Handler", (_Handler,), attributes)
    return _Server((host, port), handler)

"""REST API over real HTTP against a real server process (reference §3)."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import re
import socket
import time

import numpy as np
import pytest
import requests
from image_files import random_image
from modelserver_harness import MODEL, metric

from training.data import CIFAR10_CLASSES

B64_PNG = base64.b64encode(random_image("PNG")).decode()
B64_JPEG = base64.b64encode(random_image("JPEG", seed=1)).decode()
PIXELS = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).tolist()


@pytest.fixture(scope="module")
def rest(api_server):
    session = requests.Session()

    def call(method: str, path: str, **kwargs) -> requests.Response:
        return session.request(method, f"{api_server.rest}{path}", timeout=30, **kwargs)

    yield call
    session.close()


def predict(rest, body, path: str = f"/v1/models/{MODEL}:predict") -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return rest("POST", path, data=data)


def test_model_status_is_tf_serving_protobuf_json(rest):
    response = rest("GET", f"/v1/models/{MODEL}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert "Access-Control-Allow-Origin" not in response.headers  # CORS is off by default
    assert response.json() == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}}
        ]
    }  # fmt: skip
    # C++ protobuf's add_whitespace layout, byte for byte (one-space indent), for clients
    # and health checks that read the text (docker-compose.yml's grep)
    assert response.text == (
        '{\n "model_version_status": [\n  {\n   "version": "1",\n   "state": "AVAILABLE",\n'
        '   "status": {\n    "error_code": "OK",\n    "error_message": ""\n   }\n  }\n ]\n}'
    )
    assert rest("GET", f"/v1/models/{MODEL}/versions/1").json() == response.json()
    # A label is ignored by the status API: every version comes back, even for unknown labels.
    assert rest("GET", f"/v1/models/{MODEL}/labels/nope").json() == response.json()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v1/models/nope", "Could not find any versions of model nope"),
        (f"/v1/models/{MODEL}/versions/9", f"Could not find version 9 of model {MODEL}"),
        # A version of an unknown model: the version is looked up first (reference §3.4).
        ("/v1/models/nope/versions/1", "Could not find version 1 of model nope"),
    ],
)
def test_status_of_unknown_model_or_version_is_404(rest, path, message):
    response = rest("GET", path)
    assert (response.status_code, response.json()) == (404, {"error": message})


def test_metadata_lists_every_signature_def(rest):
    response = rest("GET", f"/v1/models/{MODEL}/metadata")
    assert response.status_code == 200
    body = response.json()
    assert body["model_spec"] == {"name": MODEL, "signature_name": "", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "pixels", "__saved_model_init_op"} <= set(signatures)
    image_bytes = signatures["serving_default"]["inputs"]["image_bytes"]
    assert image_bytes["dtype"] == "DT_STRING"
    assert image_bytes["tensor_shape"] == {
        "dim": [{"size": "-1", "name": ""}],
        "unknown_rank": False,
    }
    pixels = signatures["pixels"]
    assert pixels["inputs"]["images"]["dtype"] == "DT_UINT8"
    assert pixels["method_name"] == "tensorflow/serving/predict"
    assert set(pixels["outputs"]) == {"probabilities", "classes", "scores"}
    assert pixels["outputs"]["classes"]["dtype"] == "DT_STRING"
    assert [d["size"] for d in pixels["outputs"]["scores"]["tensor_shape"]["dim"]] == ["-1", "10"]
    assert rest("GET", f"/v1/models/{MODEL}/versions/1/metadata").json() == body


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        (f"/v1/models/{MODEL}/versions/9/metadata", 404,
         f"Servable not found for request: Specific({MODEL}, 9)"),
        ("/v1/models/nope/metadata", 404, "Servable not found for request: Latest(nope)"),
        (f"/v1/models/{MODEL}/labels/nope/metadata", 400,
         "Unrecognized servable version label: nope"),
    ],
)  # fmt: skip
def test_metadata_errors(rest, path, status, message):
    response = rest("GET", path)
    assert (response.status_code, response.json()) == (status, {"error": message})


def _check_prediction(item: dict) -> None:
    assert set(item) == {"probabilities", "classes", "scores"}
    probabilities, scores = np.array(item["probabilities"]), np.array(item["scores"])
    assert probabilities.shape == scores.shape == (10,)
    assert abs(probabilities.sum() - 1) < 1e-4
    assert np.all(np.diff(scores) <= 0)  # sorted, best first
    assert sorted(item["classes"]) == sorted(CIFAR10_CLASSES)


def test_row_format_b64_images_give_one_prediction_per_image(rest):
    response = predict(rest, {"instances": [{"b64": B64_PNG}, {"b64": B64_JPEG}]})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    for item in predictions:
        _check_prediction(item)


def test_b64_is_decoded_as_absl_does_line_breaks_and_dot_padding_included(rest):
    """base64 wrapped at 76 columns (the `base64` tool, MIME encoders, Python's encodebytes)
    was refused with "Unable to base64 decode"; TF Serving's absl decoder skips whitespace."""
    image = random_image("PNG", (64, 48))
    wrapped = base64.encodebytes(image).decode()
    assert "\n" in wrapped.rstrip("\n")
    plain = base64.b64encode(image).decode()
    dotted = plain.rstrip("=") + "." * (len(plain) - len(plain.rstrip("=")))
    assert dotted != plain, "pick an image whose base64 is padded"
    answers = [
        predict(rest, {"instances": [{"b64": text}]}).json() for text in (plain, wrapped, dotted)
    ]
    assert answers[0] == answers[1] == answers[2] and "predictions" in answers[0], answers


def test_a_body_with_a_utf8_byte_order_mark_is_read(rest):
    """Notepad saves one; RapidJSON's stream skips it (it was a 400 'Invalid value')."""
    body = b"\xef\xbb\xbf" + json.dumps({"instances": [{"b64": B64_PNG}]}).encode()
    response = predict(rest, body)
    assert response.status_code == 200, response.text
    # Its offsets still count the mark's 3 bytes.
    plain, marked = (predict(rest, prefix + b'{"instances": [1,]}').json()["error"]
                     for prefix in (b"", b"\xef\xbb\xbf"))  # fmt: skip
    offset = int(plain.rsplit("offset: ", 1)[1])
    assert marked == plain.replace(f"offset: {offset}", f"offset: {offset + 3}"), (plain, marked)


def test_columnar_and_row_formats_agree_for_pixels(rest):
    row = predict(rest, {"signature_name": "pixels", "instances": PIXELS})
    named_row = predict(
        rest, {"signature_name": "pixels", "instances": [{"images": p} for p in PIXELS]}
    )
    columnar = predict(rest, {"signature_name": "pixels", "inputs": PIXELS})
    named = predict(rest, {"signature_name": "pixels", "inputs": {"images": PIXELS, "extra": 1}})
    assert row.status_code == columnar.status_code == 200, (row.text, columnar.text)
    assert row.json() == named_row.json()
    outputs = columnar.json()["outputs"]
    assert named.json()["outputs"] == outputs  # extra keys in "inputs" are ignored
    assert [p["scores"] for p in row.json()["predictions"]] == outputs["scores"]
    for index in range(2):
        _check_prediction({k: v[index] for k, v in outputs.items()})


def test_version_path_and_versioned_predictions(rest):
    body = {"signature_name": "pixels", "inputs": PIXELS}
    response = predict(rest, body, f"/v1/models/{MODEL}/versions/1:predict")
    assert response.status_code == 200
    assert response.json() == predict(rest, body).json()  # version 1 is the one served
    missing = predict(rest, body, f"/v1/models/{MODEL}/versions/9:predict")
    assert missing.status_code == 404 and "Specific(cifar10, 9)" in missing.json()["error"]


def test_floats_are_printed_with_six_digits_unless_that_does_not_round_trip(rest):
    text = predict(rest, {"signature_name": "pixels", "instances": PIXELS[:1]}).text
    numbers = re.findall(r"-?\d+\.\d+(?:e-?\d+)?|\d+e-?\d+", text)
    assert numbers
    for number in numbers:
        digits = re.sub(r"e.*", "", number).replace(".", "").replace("-", "").lstrip("0")
        assert len(digits) <= 9, number
        value = np.float32(float(number))
        assert float(np.float32(float(f"{value:g}"))) != float(value) or len(digits) <= 6


PLAIN_ERRORS = [
    # (body, path suffix, status, message fragment) - reference §3.6 error table
    (b"", ":predict", 400, "JSON Parse error: The document is empty"),
    (b"instances = [1, 2]", ":predict", 400, "JSON Parse error: Invalid value"),
    (b"[1, 2]", ":predict", 400, "Is not object"),
    (b'{"signature_name": "pixels", "instances": [1e400]}', ":predict", 400,
     "JSON Parse error: Number too big to be stored in double. at offset: 43"),
    # Past Python's 4,300-digit limit for int() (a ValueError of its own: it dropped the
    # connection), and a high surrogate with no low one (Python's json accepts it, and the
    # string then failed every UTF-8 encoding: the connection dropped too).
    (b'{"signature_name": "pixels", "instances": [' + b"1" * 5000 + b"]}", ":predict", 400,
     "JSON Parse error: Number too big to be stored in double. at offset: 43"),
    (b'{"instances": ["\\ud800"]}', ":predict", 400,
     "JSON Parse error: The surrogate pair in string is invalid. at offset: 16"),
    ({"signature_name": "pixels"}, ":predict", 400, "Missing 'inputs' or 'instances' key"),
    ({"instances": [1], "inputs": [1]}, ":predict", 400,
     "expecting only one of 'inputs' or 'instances'"),
    ({"instances": []}, ":predict", 400, "No values in 'instances' array"),
    ({"signature_name": 3, "instances": [1]}, ":predict", 400,
     "'signature_name' key must be a string value."),
    ({"signature_name": "pixels", "instances": [{"images": PIXELS[0], "x": 1}]}, ":predict", 400,
     "does not have named input: x"),
    ({"instances": [{"b64": B64_PNG, "x": 1}]}, ":predict", 400,
     "does not have named input: b64"),
    ({"signature_name": "pixels", "inputs": {"images_typo": PIXELS}}, ":predict", 400,
     "Missing named input: images in 'inputs' object."),
    ({"signature_name": "pixels", "instances": [[[[1.5, 2, 3]]]]}, ":predict", 400,
     "is not of expected type: uint8"),
    ({"instances": [5]}, ":predict", 400, "is not of expected type: string"),
    ({"instances": [{"b64": "not base64!"}]}, ":predict", 400, "Unable to base64 decode"),
    # absl: the padding is absent or exactly what the last quantum needs.
    ({"instances": [{"b64": "QUJD="}]}, ":predict", 400, "Unable to base64 decode"),
    ({"instances": [{"b64": "QQ="}]}, ":predict", 400, "Unable to base64 decode"),
    ({"instances": [{"b64": base64.urlsafe_b64encode(b"\xfb\xff\xfe").decode()}]}, ":predict",
     400, "Unable to base64 decode"),
    ({"signature_name": "pixels", "instances": [PIXELS[0], PIXELS[0][:5]]}, ":predict", 400,
     "Expecting tensor size: 3072 but got: 480"),
    ({"signature_name": "pixels",
      "instances": [PIXELS[0], np.array(PIXELS[0]).reshape(32, 3, 32).tolist()]}, ":predict", 400,
     "Expecting shape [32,32,3] but got: [32,3,32]"),
    ({"signature_name": "pixels", "inputs": [[[[1, 2, 3], [1, 2]]]]}, ":predict", 400,
     "Encountered list at unexpected size"),
    ({"signature_name": "nope", "instances": [1]}, ":predict", 400,
     'Serving signature name: "nope" not found in signature def'),
    ({"instances": [{"b64": base64.b64encode(b"not an image").decode()}]}, ":predict", 400,
     "Unknown image file format"),
    ({"signature_name": "pixels", "instances": [[1, 2, 3]]}, ":predict", 400,
     "Input images has shape [1,3]"),
    ({"instances": ["x"]}, "/versions/9:predict", 404,
     f"Servable not found for request: Specific({MODEL}, 9)"),
    ({"instances": ["x"]}, "/labels/nope:predict", 400,
     "Unrecognized servable version label: nope"),
    ({"examples": [{"x": 1}]}, ":classify", 400, "Expected one or two output Tensors, found 3"),
    ({"instances": [1]}, ":classify", 400, "When method is classify, key 'examples' is expected"),
    ({"examples": [{"x": 1}]}, ":regress", 400, "Expected one output Tensor."),
    # json_tensor.cc reads every example as a tf.Example first (its wording, "classify" on
    # :regress included); classifier.cc names an unknown signature its own way.
    ({}, ":regress", 400, "When method is classify, key 'examples' is expected"),
    ({"examples": [5]}, ":classify", 400, "Example must be JSON object but got JSON Number"),
    ({"context": [], "examples": [{}]}, ":classify", 400,
     "Example must be JSON object but got JSON Array"),
    ({"examples": [{"a": [1, "x"]}]}, ":regress", 400,
     "Unexpected element type in feature: a expecting type: int64"),
    ({"examples": [{"a": None}]}, ":classify", 400,
     "Feature: a has element with unexpected JSON type: Null"),
    ({"examples": [{"a": 2**63}]}, ":classify", 400,
     "Feature: a has uint64_t element. Only int64_t is supported."),
    ({"examples": [{"a": -(2**63) - 1}]}, ":classify", 400,  # a double to RapidJSON: accepted
     "Expected one or two output Tensors, found 3"),
    ({"signature_name": "nope", "examples": [{"x": 1}]}, ":classify", 400,
     "No signature was found with the name: nope"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "suffix", "status", "message"), PLAIN_ERRORS)
def test_bad_requests_get_tf_serving_status_and_message(rest, body, suffix, status, message):
    response = predict(rest, body, f"/v1/models/{MODEL}{suffix}")
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert message in response.json()["error"]
    assert set(response.json()) == {"error"}


def test_a_lone_low_surrogate_is_answered_with_its_bytes_not_a_dropped_connection(rest):
    """RapidJSON accepts "\\udc00" and writes it back as its 3 UTF-8 bytes (not valid UTF-8);
    the error quoting it once failed to encode, and the client got no answer at all."""
    body = b'{"signature_name": "pixels", "instances": ["\\udc00"]}'
    response = predict(rest, body, f"/v1/models/{MODEL}:predict")
    assert response.status_code == 400
    assert b"is not of expected type: uint8" in response.content
    assert b'\\"\xed\xb0\x80\\"' in response.content  # quoted inside the message


def test_a_bad_example_to_an_unknown_model_is_a_400_not_a_404(rest):
    """The examples are read before the model is looked up, as json_tensor.cc does."""
    response = predict(rest, {"examples": [5]}, "/v1/models/nope:classify")
    assert response.status_code == 400, response.text
    good = predict(rest, {"examples": [{"x": 1.5, "y": ["a", {"b64": "eA=="}]}]},
                   "/v1/models/nope:classify")  # fmt: skip
    assert good.status_code == 404


def test_unknown_model_is_404_but_malformed_json_to_it_is_400(rest):
    unknown = predict(rest, {"instances": ["x"]}, "/v1/models/nope:predict")
    assert (unknown.status_code, unknown.json()) == (
        404, {"error": "Servable not found for request: Latest(nope)"}
    )  # fmt: skip
    assert predict(rest, b"{", "/v1/models/nope:predict").status_code == 400


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("GET", f"/v1/models/{MODEL}:predict",
         f"Malformed request: GET /v1/models/{MODEL}:predict"),
        ("POST", f"/v1/models/{MODEL}", f"Malformed request: POST /v1/models/{MODEL}"),
        ("POST", f"/v1/models/{MODEL}/metadata", "Malformed request"),
        ("POST", f"/v1/models/{MODEL}:explain", "Malformed request"),
        ("POST", f"/v1/models/{MODEL}:PREDICT",
         f"Malformed request: POST /v1/models/{MODEL}:PREDICT"),
        ("GET", f"/v1/models/{MODEL}/version/1", "Malformed request"),
        ("GET", f"/v1/models/{MODEL}/versions/abc", "Malformed request"),
        ("GET", f"/v1/models/{MODEL}/versions/1/labels/x", "Malformed request"),
        ("GET", f"/v1/models/{MODEL}/", "Malformed request"),
        ("PUT", f"/v1/models/{MODEL}", f"Malformed request: PUT /v1/models/{MODEL}"),
        ("DELETE", f"/v1/models/{MODEL}", "Malformed request"),
        ("GET", "/v1/models", "Missing model name in request."),
    ],
)  # fmt: skip
def test_routing_errors_are_400_json(rest, method, path, message):
    response = rest(method, path, data=b"{}")
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_a_preflight_without_an_origin_is_a_bare_400(rest):
    """http_server.cc answers OPTIONS outside the JSON handler: no body, no JSON type."""
    response = rest("OPTIONS", f"/v1/models/{MODEL}")
    assert (response.status_code, response.content) == (400, b"")
    assert "application/json" not in response.headers.get("Content-Type", "")
    allowed = rest("OPTIONS", f"/v1/models/{MODEL}", headers={"Origin": "https://a.example"})
    assert (allowed.status_code, allowed.content) == (200, b"")


def test_paths_outside_v1_are_404_html_and_huge_versions_have_an_empty_body(rest):
    response = rest("GET", "/healthz")
    assert response.status_code == 404
    assert response.headers["Connection"] == "close"  # evhttp_send_page_
    assert response.text == (  # libevent's evhttp_send_error page, as the real server sends
        "<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n"
        "</BODY></HTML>\n"
    )
    assert rest("GET", f"//v1/models/{MODEL}").status_code == 404  # the /v1 pattern is anchored
    huge = rest("GET", f"/v1/models/{MODEL}/versions/99999999999999999999")
    assert (huge.status_code, huge.text) == (400, "")


def test_gzip_and_chunked_bodies_are_accepted(rest):
    body = json.dumps({"instances": [{"b64": B64_PNG}]}).encode()
    zipped = rest("POST", f"/v1/models/{MODEL}:predict", data=gzip.compress(body),
                  headers={"Content-Encoding": "gzip"})  # fmt: skip
    chunked = rest("POST", f"/v1/models/{MODEL}:predict", data=iter([body[:10], body[10:]]))
    assert zipped.status_code == chunked.status_code == 200
    assert zipped.json() == chunked.json()


def test_oversized_body_is_refused_and_the_server_keeps_serving(rest):
    big = json.dumps({"instances": [{"b64": "A" * (2 * 1024 * 1024)}]})
    response = predict(rest, big)
    assert response.status_code == 413
    assert "exceeds the limit" in response.json()["error"]
    assert predict(rest, {"instances": [{"b64": B64_PNG}]}).status_code == 200


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_far_over_the_limit_still_gets_its_413(api_server, chunked):
    """80 MiB against the 1 MiB limit, from http.client, which sends the whole body before it
    reads: the refused body is read and dropped before the answer. Closing with unread bytes
    made the client's send fail (broken pipe, reset) past 64 MiB, and a chunked body at once.
    (requests reads the early answer after such a failure; many clients do not.)"""
    piece = b"x" * (1 << 20)
    connection = http.client.HTTPConnection("127.0.0.1", api_server.rest_port, timeout=30)
    try:
        body = (piece for _ in range(80)) if chunked else piece * 80
        connection.request("POST", f"/v1/models/{MODEL}:predict", body, encode_chunked=chunked)
        response = connection.getresponse()
        assert response.status == 413
        assert b"exceeds the limit of 1048576 bytes" in response.read()
    finally:
        connection.close()


def test_a_refused_body_that_stalls_is_answered_when_the_drain_window_ends(api_server):
    """A 2 MiB chunk (the limit is 1 MiB) of which 1,000 bytes come: the drain gives up after
    its 10 s and answers 413. Its reads waited out the 50 s idle timeout instead, then closed
    without an answer."""
    with socket.create_connection(("127.0.0.1", api_server.rest_port), timeout=40) as sock:
        sock.sendall(
            f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: x\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n{2 << 20:x}\r\n{'x' * 1000}".encode()
        )
        started = time.monotonic()
        answer = sock.recv(4096).decode()
        waited = time.monotonic() - started
    assert answer.startswith("HTTP/1.1 413"), answer
    assert waited < 30, waited


def test_a_stalled_client_is_disconnected_after_the_idle_timeout(start_server, model_base_v1):
    """Each stalled connection held a server thread for ever (no read timeout)."""
    server = start_server(
        f"--model_name={MODEL}", f"--model_base_path={model_base_v1}",
        "--file_system_poll_wait_seconds=0", "--rest_idle_timeout_seconds=0.5",
    )  # fmt: skip
    request = f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: x\r\n"
    stalls = {
        "silent": b"",
        "headers half-sent": request.encode(),
        "body half-sent": f"{request}Content-Length: 100\r\n\r\n{'{' * 10}".encode(),
        "idle keep-alive": f"GET /v1/models/{MODEL} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    }
    sockets = {name: socket.create_connection(("127.0.0.1", server.rest_port), timeout=10)
               for name in stalls}  # fmt: skip
    for name, sent in stalls.items():
        sockets[name].sendall(sent)
    time.sleep(1.5)
    for name, sock in sockets.items():
        with sock:
            received = b""
            while chunk := sock.recv(65536):  # the server closing ends it; 10 s would raise
                received += chunk
        if name == "idle keep-alive":  # answered, then closed
            assert received.startswith(b"HTTP/1.1 200"), received[:200]
        else:  # closed without an answer
            assert received == b"", (name, received[:200])
    assert requests.get(f"{server.rest}/v1/models/{MODEL}", timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("header", "body", "message"),
    [
        ("Content-Length: -1", "", "Content-Length -1 is negative"),
        ("Transfer-Encoding: chunked", "-1\r\n", "chunk size b'-1' is not hexadecimal"),
        # a chunk-size line with no end (one byte over the limit, so nothing is left unread)
        ("Transfer-Encoding: chunked", "1" * 65537, "line is longer than 65536 bytes"),
    ],
)
def test_bad_body_framing_is_a_400_not_a_hang(api_server, header, body, message):
    """`rfile.read(-1)` read until the client closed, and `readline()` until a newline came:
    the request was never answered (and an endless line grew in memory)."""
    with socket.create_connection(("127.0.0.1", api_server.rest_port), timeout=10) as sock:
        sock.sendall(
            f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: x\r\n{header}\r\n\r\n"
            f"{body}".encode()
        )
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 400"), answer
    assert message in answer


def test_prometheus_page_counts_rest_requests(rest, api_server):
    # Counted from a page read first: the shared server has answered other tests already.
    counts = [
        ("request_count", 'model_name="cifar10",status="OK"'),
        ("request_latency_count", 'model_name="cifar10",API="predict",entrypoint="REST"'),
        ("request_count", 'model_name="cifar10",status="NOT_FOUND"'),
    ]
    before = rest("GET", "/monitoring/prometheus/metrics").text
    predict(rest, {"instances": [{"b64": B64_PNG}]})
    rest("GET", f"/v1/models/{MODEL}/versions/9/metadata")
    for name, labels in counts:
        api_server.wait_metric(name, labels, metric(before, name, labels) + 1)
    response = rest("GET", "/monitoring/prometheus/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain"
    page = response.text
    assert "# TYPE :tensorflow:serving:request_count counter" in page
    assert "# TYPE :tensorflow:serving:request_latency histogram" in page
    # Every metric of reference §5 is on the page, the two tf.Example counts included.
    assert "# TYPE :tensorflow:serving:request_example_counts histogram" in page
    assert "# TYPE :tensorflow:serving:request_example_count_total counter" in page
    # http_server.cc's handler serves the page whatever the method.
    assert rest("POST", "/monitoring/prometheus/metrics").status_code == 200
    # It is found by the path, then compares the path with the query (below).
    queried = rest("GET", "/monitoring/prometheus/metrics?x=1")
    assert (queried.status_code, queried.text) == (
        400, "Unexpected path: /monitoring/prometheus/metrics?x=1. "
        "Should be /monitoring/prometheus/metrics")  # fmt: skip


def test_a_query_string_is_part_of_the_path_the_api_matches(rest):
    """libevent's uri_path() holds the query, and TF Serving's routes match it: a cache-buster
    worked here and failed against the real server."""
    queried = predict(rest, {"instances": [{"b64": B64_PNG}]}, f"/v1/models/{MODEL}:predict?x=1")
    assert (queried.status_code, queried.json()) == (
        400, {"error": f"Malformed request: POST /v1/models/{MODEL}:predict?x=1"})  # fmt: skip
    status = rest("GET", f"/v1/models/{MODEL}?x=1")
    assert status.status_code == 404
    assert status.json()["error"].endswith(f"model {MODEL}?x=1")

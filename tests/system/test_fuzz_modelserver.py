"""Fuzzing the model server's REST request parsing: `modelserver.rest_json` in process, then
raw HTTP against the real server. Every refusal must be a 4xx with TF Serving's JSON error
body (except a version number beyond int64, which TF Serving refuses with an empty 400); no
input may produce a 5xx, an unanswered request or a dead process.

`:classify` and `:regress` are left out: the local server answers them 501 on purpose (not
implemented; the models have predict-style signatures)."""

from __future__ import annotations

import gzip
import http.client
import json
import re
from urllib.parse import quote

import pytest
from fuzz_inputs import b64, image_bytes, json_values, seed_files
from hypothesis import example, given
from hypothesis import strategies as st
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from modelserver import rest_json
from modelserver.status import ServingError

pytestmark = pytest.mark.slow  # hundreds of requests to a real server

SIGNATURES = {
    "serving_default": {"image_bytes": types_pb2.DT_STRING},
    "pixels": {"images": types_pb2.DT_UINT8},
}


def tensor_values() -> st.SearchStrategy:
    """What a client might put where a tensor goes: b64 images, pixel nests, anything."""
    pixel = st.integers(-300, 300)
    nests = st.recursive(st.lists(pixel, max_size=4), lambda inner: st.lists(inner, max_size=3),
                         max_leaves=40)  # fmt: skip
    images = st.lists(image_bytes().map(lambda d: {"b64": b64(d)}), min_size=1, max_size=3)
    return st.one_of(images, nests, json_values())


def documents() -> st.SearchStrategy[dict]:
    key = st.sampled_from(("instances", "inputs"))
    signature = st.sampled_from(("", "serving_default", "pixels", "nope"))
    return st.builds(
        lambda k, value, sig: {k: value, **({"signature_name": sig} if sig else {})},
        key, tensor_values(), signature,
    )  # fmt: skip


@given(st.one_of(documents().map(json.dumps).map(str.encode), st.binary(max_size=200)))
@example(b'{"instances": ' + b"[" * 5000 + b"1" + b"]" * 5000 + b"}")
@example(b'{"inputs": ' + b"[" * 70 + b"1" + b"]" * 70 + b"}")
@example(b"[" * 900 + b"]" * 900)
def test_parsing_raises_only_a_4xx_serving_error(body: bytes) -> None:
    for inputs in SIGNATURES.values():
        infos = {name: meta_graph_pb2.TensorInfo(dtype=dtype) for name, dtype in inputs.items()}
        try:
            document = rest_json.parse_document(body)
            rest_json.signature_name_of(document)
            rest_json.predict_inputs(document, infos)
        except ServingError as error:
            assert 400 <= error.http_status < 500, error


def _version_beyond_int64(path: str) -> bool:
    """ParseModelInfo refuses such a version before it writes any JSON (modelserver/rest_api.py)."""
    version = re.search(r"/versions/(\d+)", path)
    return bool(version) and int(version.group(1)) > 2**63 - 1


def paths() -> st.SearchStrategy[str]:
    name = st.one_of(st.just("cifar10"), st.text(max_size=8).map(lambda t: quote(t, safe="")))
    spec = st.one_of(
        st.just(""),
        st.integers(0, 2**70).map(lambda v: f"/versions/{v}"),
        st.text(max_size=8).map(lambda t: f"/labels/{quote(t, safe='')}"),
    )
    verb = st.sampled_from((":predict", "/metadata", ""))
    return st.builds(lambda n, s, v: f"/v1/models/{n}{s}{v}", name, spec, verb)


@pytest.fixture(scope="module")
def rest(system_stack):
    conn = http.client.HTTPConnection("127.0.0.1", system_stack.ports.rest_port, timeout=120)
    yield conn
    conn.close()


@given(
    method=st.sampled_from(("GET", "POST")),
    path=paths(),
    body=st.one_of(documents().map(json.dumps).map(str.encode), st.binary(max_size=300)),
    gzipped=st.booleans(),
)
@example(method="POST", path="/v1/models/cifar10:predict", gzipped=False,
         body=json.dumps({"instances": [{"b64": b64(seed_files()[0])}]}).encode())  # fmt: skip
@example(
    method="POST",
    path="/v1/models/cifar10:predict",
    gzipped=False,
    body=b'{"signature_name": "pixels", "inputs": ' + b"[" * 900 + b"1" + b"]" * 900 + b"}",
)
def test_no_rest_request_gets_a_5xx(system_stack, rest, method, path, body, gzipped) -> None:
    headers = {"Content-Type": "application/json"}
    if gzipped:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    try:
        rest.request(method, path, body if method == "POST" else None, headers)
        response = rest.getresponse()
        answer = response.read()
    except (OSError, http.client.HTTPException) as error:
        rest.close()
        pytest.fail(f"no answer to {method} {path}: {error!r}")
    assert response.status < 500, (response.status, answer[:300])
    if response.status >= 400 and (answer or not _version_beyond_int64(path)):
        assert "error" in json.loads(answer)  # only that refusal may come with an empty body
    assert system_stack.model_server.poll() is None

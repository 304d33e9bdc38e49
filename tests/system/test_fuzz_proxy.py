"""Fuzzing the proxy's upload decoding: in process (`imaging.decode`), then over HTTP
against the real stack (gunicorn proxy -> model server). No input may produce a 5xx or
take a process down."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import numpy as np
import pytest
from fuzz_inputs import b64, image_bytes, json_values, seed_files
from hypothesis import example, given
from hypothesis import strategies as st

from bench.soak_load import MULTIPART, Payload, Poster, multipart
from imaging.decode import ImageError, to_pixels

pytestmark = pytest.mark.slow  # hundreds of examples, some through the real stack

CONTENT_TYPES = (
    "application/json", "multipart/form-data", "multipart/form-data; boundary=x",
    "image/jpeg", "text/plain", "application/x-www-form-urlencoded", "",
)  # fmt: skip


@given(image_bytes())
def test_any_bytes_decode_to_a_tensor_or_an_image_error(data: bytes) -> None:
    try:
        pixels = to_pixels(data, max_pixels=4_000_000)
    except ImageError as error:
        assert 400 <= error.http_status < 500
        return
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8


def queries() -> st.SearchStrategy[str]:
    keys = st.sampled_from(("version", "label", "k", "x"))
    values = st.one_of(st.integers(-5, 2**70).map(str), st.text(max_size=12))
    return st.dictionaries(keys, values, max_size=3).map(lambda q: "?" + urlencode(q) if q else "")


def multipart_bodies() -> st.SearchStrategy[tuple[bytes, str]]:
    files = st.lists(st.tuples(st.text(max_size=12), image_bytes()), max_size=3)
    return files.map(lambda named: (multipart(named), MULTIPART))


def json_bodies() -> st.SearchStrategy[tuple[bytes, str]]:
    items = st.one_of(image_bytes().map(b64), json_values())
    documents = st.one_of(st.fixed_dictionaries({"images": st.lists(items, max_size=3)}),
                          json_values())  # fmt: skip
    return documents.map(lambda doc: (json.dumps(doc).encode(), "application/json"))


def raw_bodies() -> st.SearchStrategy[tuple[bytes, str]]:
    return st.tuples(st.one_of(st.binary(max_size=300), image_bytes()),
                     st.sampled_from(CONTENT_TYPES))  # fmt: skip


@pytest.fixture(scope="module")
def poster(system_stack):
    poster = Poster("127.0.0.1", system_stack.ports.proxy_port, timeout_s=60)
    yield poster
    poster.close()


@given(query=queries(), request=st.one_of(multipart_bodies(), json_bodies(), raw_bodies()))
@example(query="?version=%C2%B2", request=(multipart([("a.png", seed_files()[1])]), MULTIPART))
@example(query="?k=%C2%B2", request=(multipart([("a.png", seed_files()[1])]), MULTIPART))
@example(query="?version=99999999999999999999", request=(multipart([("a.png", seed_files()[1])]),
                                                          MULTIPART))  # fmt: skip
@example(query="", request=(b'{"images": ' + b"[" * 3000 + b"]" * 3000 + b"}", "application/json"))
def test_no_request_gets_a_5xx_from_the_proxy(system_stack, poster, query, request) -> None:
    body, content_type = request
    record = poster.post(Payload("fuzz", body, content_type, query), 0, 0.0)
    assert 200 <= record.status < 500, (record.status, record.error)
    if record.status != 200:
        assert json.loads(record.error)["error"]  # a message a person can read
    assert system_stack.proxy.poll() is None and system_stack.model_server.poll() is None

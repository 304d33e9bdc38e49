"""POST /api/predict, GET /api/model, /readyz, /metrics against a real local model server.

The proxy runs in-process (Flask test client) with its real REST or gRPC client; the model
server is `python -m modelserver` serving two tiny untrained versions (see conftest.py).
"""

from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
import pytest
import requests
from image_files import encode
from proxy_images import photo_like, png_header_only, solid
from proxy_servers import LABELS, proxy_config

from imaging.decode import to_pixels
from proxy.app import create_app
from training.data import CIFAR10_CLASSES

CLASSES = list(CIFAR10_CLASSES)


def post_files(client, files: dict[str, bytes], query: str = ""):
    data = {"file": [(io.BytesIO(body), name) for name, body in files.items()]}
    return client.post(f"/api/predict{query}", data=data, content_type="multipart/form-data")


def assert_error(response, status: int, kind: str, *fragments: str) -> None:
    """The status, the kind (the page branches on it: whether to offer "Try again", app.js)
    and fragments of the sentence."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error", "kind"} and body["error"] and body["kind"], body
    for fragment in fragments:
        assert fragment.lower() in body["error"].lower(), body["error"]
    assert body["kind"] == kind, body


def test_a_wrong_method_names_the_right_one_and_an_unknown_path_is_a_json_404(client) -> None:
    response = client.get("/api/predict")
    assert_error(response, 405, "method_not_allowed", "GET is not allowed here; use POST")
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}  # RFC 9110
    assert_error(client.post("/api/model"), 405, "method_not_allowed", "use GET")
    assert_error(client.get("/api/nope"), 404, "no_route", "/api/nope")


def test_a_views_own_404_message_is_kept() -> None:
    from flask import abort

    from proxy.app import create_app
    from proxy.config import ProxyConfig

    app = create_app(ProxyConfig())
    app.add_url_rule("/gone", "gone", lambda: abort(404, "version 7 was deleted"))
    assert_error(app.test_client().get("/gone"), 404, "not_found", "version 7 was deleted")


def test_a_chunked_json_body_over_the_limit_is_too_large_not_invalid(client) -> None:
    """Without a Content-Length, Werkzeug cuts the body at the limit; the cut JSON got a 400
    "not valid". (wsgi.input_terminated: gunicorn sets it, and Werkzeug reads a chunked body
    only with it.)"""
    limit = client.application.config["MAX_CONTENT_LENGTH"]
    body = json.dumps({"images": ["A" * limit]}).encode()
    response = client.post(
        "/api/predict",
        input_stream=io.BytesIO(body),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert_error(response, 413, "too_large", "larger than")


# ---------- predictions ----------


def test_one_image_gets_the_design_answer(client, sample_jpegs) -> None:
    response = post_files(client, {"photo0.jpg": sample_jpegs["photo0.jpg"]})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["model"] == {"name": "cifar10", "version": 2}  # highest served version
    assert body["elapsed_ms"] > 0
    [result] = body["results"]
    assert result["filename"] == "photo0.jpg"
    top = result["top"]
    assert len(top) == 3
    assert all(entry["label"] in CLASSES for entry in top)
    assert len({entry["label"] for entry in top}) == 3
    probabilities = [entry["probability"] for entry in top]
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0 < sum(probabilities) <= 1.0001


class _SlowUpload(io.BytesIO):
    """A client's upload that arrives slowly: the first read waits `delay_s`."""

    def __init__(self, data: bytes, delay_s: float) -> None:
        super().__init__(data)
        self._delay_s = delay_s

    def _wait(self) -> None:
        time.sleep(self._delay_s)
        self._delay_s = 0

    def read(self, size: int = -1) -> bytes:
        self._wait()
        return super().read(size)

    def readinto(self, buffer) -> int:  # what Werkzeug's LimitedStream calls
        self._wait()
        return super().readinto(buffer)


def test_the_time_a_slow_client_takes_to_upload_is_not_counted_as_decoding(
    client, sample_jpegs
) -> None:
    """timing_ms splits elapsed_ms into receive, preprocess and model_server; "preprocess"
    once included the upload, so a slow network showed up as seconds of server work."""
    body = json.dumps({"images": [base64.b64encode(sample_jpegs["photo0.jpg"]).decode()]})
    data = body.encode()
    response = client.post(
        "/api/predict",
        input_stream=_SlowUpload(data, 0.5),
        headers={"Content-Type": "application/json", "Content-Length": str(len(data))},
    )
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    timing = answer["timing_ms"]
    assert set(timing) == {"receive", "preprocess", "model_server"}
    assert timing["receive"] >= 500
    assert timing["preprocess"] < 500
    assert sum(timing.values()) <= answer["elapsed_ms"]


def test_answer_is_what_the_model_says_for_our_tensor(client, two_version_server, sample_jpegs):
    """The proxy's top-k equals the model server's own `pixels` answer for the same tensor."""
    data = sample_jpegs["photo1.jpg"]
    body = post_files(client, {"a.jpg": data}, "?k=10").get_json()
    pixels = to_pixels(data, 40_000_000)[None]
    direct = requests.post(
        f"{two_version_server.rest_url}/v1/models/cifar10/versions/2:predict",
        json={"signature_name": "pixels", "inputs": {"images": pixels.tolist()}},
        timeout=30,
    ).json()["outputs"]
    top = body["results"][0]["top"]
    assert [t["label"] for t in top] == direct["classes"][0]
    assert np.allclose([t["probability"] for t in top], direct["scores"][0], atol=1e-5)


def test_several_files_keep_their_order_and_names(client, sample_jpegs) -> None:
    response = post_files(client, sample_jpegs)
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [r["filename"] for r in results] == list(sample_jpegs)
    singles = [post_files(client, {n: d}).get_json()["results"][0] for n, d in sample_jpegs.items()]
    for batch, single in zip(results, singles, strict=True):
        assert [t["label"] for t in batch["top"]] == [t["label"] for t in single["top"]]


def test_one_unreadable_file_fails_its_request_by_name(client, sample_jpegs) -> None:
    """A request's images are one batch for the model server, so they succeed or fail together
    (as TF Serving's batch does); the sentence names the file to drop (proxy/README.md)."""
    files = dict(list(sample_jpegs.items())[:2])
    files["notes.jpg"] = b"shopping list, not a photo"
    response = post_files(client, files)
    assert response.status_code == 415, response.get_json()
    assert response.get_json()["kind"] == "unsupported_media"
    assert response.get_json()["error"].startswith("notes.jpg: ")


def test_json_base64_body(client, sample_jpegs) -> None:
    first, second = list(sample_jpegs.values())[:2]
    images = [
        base64.b64encode(first).decode(),
        "data:image/jpeg;base64," + base64.b64encode(second).decode(),
    ]
    response = client.post("/api/predict", json={"images": images})
    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    assert [r["filename"] for r in results] == ["image-1", "image-2"]
    multipart = post_files(client, {"x.jpg": second}).get_json()["results"][0]
    assert results[1]["top"] == multipart["top"]
    # Line-wrapped, as `base64 cat.jpg` and base64.encodebytes write it: was a 400.
    wrapped = client.post("/api/predict", json={"images": [base64.encodebytes(second).decode()]})
    assert wrapped.status_code == 200, wrapped.get_json()
    assert wrapped.get_json()["results"][0]["top"] == multipart["top"]


@pytest.mark.parametrize("k", [1, 5, 10])
def test_k_sets_the_list_length(client, sample_jpegs, k: int) -> None:
    body = post_files(client, {"a.jpg": sample_jpegs["photo0.jpg"]}, f"?k={k}").get_json()
    assert len(body["results"][0]["top"]) == k


# ---------- versions and labels ----------


def test_version_selection(client, sample_jpegs) -> None:
    data = {"a.jpg": sample_jpegs["photo2.jpg"]}
    answers = {}
    for version in (1, 2):
        body = post_files(client, data, f"?version={version}&k=10").get_json()
        assert body["model"] == {"name": "cifar10", "version": version}
        answers[version] = body["results"][0]["top"]
    assert answers[1] != answers[2], "versions 1 and 2 are different models"
    # Any int64 names a version, however it is written: a cap of 18 digits refused both.
    padded = post_files(client, data, f"?version={'0' * 30}1").get_json()
    assert padded["model"]["version"] == 1, padded
    largest = post_files(client, data, f"?version={2**63 - 1}")
    assert largest.status_code == 404, largest.get_json()


@pytest.mark.parametrize(("label", "version"), sorted(LABELS.items()))
def test_label_selection(client, sample_jpegs, label: str, version: int) -> None:
    body = post_files(client, {"a.jpg": sample_jpegs["photo0.jpg"]}, f"?label={label}").get_json()
    assert body["model"] == {"name": "cifar10", "version": version, "label": label}


def test_default_label_from_config(two_version_server, protocol, sample_jpegs) -> None:
    app = create_app(proxy_config(two_version_server, protocol, default_label="stable"))
    response = post_files(app.test_client(), {"a.jpg": sample_jpegs["photo0.jpg"]})
    assert response.get_json()["model"]["version"] == 1


def test_a_misspelt_query_parameter_is_refused_not_ignored(client, sample_jpegs) -> None:
    # ?lable=canary answered from the default version: a canary check that tested stable
    files = {"photo0.jpg": sample_jpegs["photo0.jpg"]}
    response = post_files(client, files, "?lable=canary")
    assert_error(response, 400, "bad_request", "unknown query parameter lable", "k, version, label")
    # Repeated, the first value answered and the second was dropped without a word.
    response = post_files(client, files, "?version=1&version=99")
    assert_error(response, 400, "bad_request", "query parameter version given more than once")
    # Empty, it answered from the default version: `?label=$LABEL` with LABEL unset.
    for query, empty in (("?label=", "label"), ("?version=&label=canary", "version"),
                         ("?k=", "k")):  # fmt: skip
        response = post_files(client, files, query)
        assert_error(response, 400, "bad_request", f"query parameter {empty} is empty")
    # /api/model describes every version: ?version=1 answered as if it had been heeded.
    response = client.get("/api/model?version=1")
    assert_error(
        response, 400, "bad_request", "unknown query parameter version", "takes no query parameters"
    )


def test_a_misspelt_body_field_is_refused_not_ignored(client, sample_jpegs) -> None:
    """`-F files=@a.jpg` was dropped without a word (its image lost), and `version` or `k` in
    the body answered from the default version, where only the query string counts."""
    image = sample_jpegs["photo0.jpg"]
    files = {"file": (io.BytesIO(image), "a.jpg"), "files": (io.BytesIO(image), "b.jpg")}
    response = client.post("/api/predict", data=files, content_type="multipart/form-data")
    assert_error(response, 400, "bad_request", "unknown form field 'files'", "query string")
    form = {"file": (io.BytesIO(image), "a.jpg"), "version": "99"}
    response = client.post("/api/predict", data=form, content_type="multipart/form-data")
    assert_error(response, 400, "bad_request", "unknown form field 'version'")
    body = {"images": [base64.b64encode(image).decode()], "k": 1, "label": "canary"}
    response = client.post("/api/predict", json=body)
    assert_error(response, 400, "bad_request", "unknown JSON key 'k', 'label'", "query string")


def test_unknown_version_and_label_are_404(client, sample_jpegs) -> None:
    files = {"a.jpg": sample_jpegs["photo0.jpg"]}
    # what was asked, and where to look: the model server's own words name its internals
    see = "GET /api/model lists"
    assert_error(
        post_files(client, files, "?version=9"), 404, "not_found", "version 9 of model", see
    )
    assert_error(
        post_files(client, files, "?label=nosuchlabel"),
        404,
        "not_found",
        "label 'nosuchlabel'",
        see,
    )


def test_model_info(client) -> None:
    body = client.get("/api/model").get_json()
    assert body["name"] == "cifar10"
    assert [(v["version"], v["state"]) for v in body["versions"]] == [
        (2, "AVAILABLE"),
        (1, "AVAILABLE"),
    ]
    assert body["labels"] == LABELS
    assert body["classes"] == CLASSES
    assert body["limits"]["top_k"] == 3


def test_ready_and_healthy(client) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["available_versions"] == [2, 1]
    assert ready.get_json()["default_version"] == 2
    assert client.get("/api/model").get_json()["default"] == {
        "version": None, "label": None, "serves": 2, "error": None,
    }  # fmt: skip


def test_a_default_label_is_what_readiness_and_the_model_info_describe(
    two_version_server, protocol
) -> None:
    """During a canary the newest version (2) is not what plain requests get (stable: 1)."""
    app = create_app(proxy_config(two_version_server, protocol, default_label="stable"))
    client = app.test_client()
    assert client.get("/readyz").get_json()["default_version"] == 1
    body = client.get("/api/model").get_json()
    assert body["default"] == {"version": None, "label": "stable", "serves": 1, "error": None}
    assert body["classes"] == CLASSES


@pytest.mark.parametrize(
    ("default", "fragment"),
    [
        ({"default_label": "nosuchlabel"}, "label 'nosuchlabel' (MODEL_LABEL) does not resolve"),
        ({"default_version": 9}, "default version 9 (MODEL_VERSION) is not AVAILABLE"),
    ],
)
def test_a_default_the_server_does_not_serve_is_reported_not_fatal(
    two_version_server, protocol, sample_jpegs, default: dict, fragment: str
) -> None:
    """Every plain request of such a proxy fails (404), but requests naming a version or a
    label still work, and every replica shares the setting: readiness stays (it would empty
    the Service) and says why; /api/model still lists what is served instead of failing."""
    client = create_app(proxy_config(two_version_server, protocol, **default)).test_client()
    plain = post_files(client, {"a.jpg": sample_jpegs["photo0.jpg"]})
    assert plain.status_code == 404 and plain.get_json()["kind"] == "not_found"  # no Retry-After
    # The client asked for no version: the answer names the setting that chose one.
    setting = "MODEL_LABEL=nosuchlabel" if "default_label" in default else "MODEL_VERSION=9"
    assert f"this proxy's default ({setting})" in plain.get_json()["error"]
    named = post_files(client, {"a.jpg": sample_jpegs["photo0.jpg"]}, "?version=1")
    assert named.get_json()["model"]["version"] == 1
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["default_version"] is None
    assert fragment in ready.get_json()["default_error"]
    info = client.get("/api/model")
    assert info.status_code == 200, info.get_data(as_text=True)
    body = info.get_json()
    assert [v["version"] for v in body["versions"]] == [2, 1]
    assert body["default"]["serves"] is None and fragment in body["default"]["error"]
    assert body["labels"] == LABELS


def test_a_model_name_the_server_does_not_know_is_a_404_not_a_retry(
    two_version_server, protocol, sample_jpegs
) -> None:
    """TF Serving answers an unknown model and a known one with no version loaded with the
    same NOT_FOUND; the second is worth retrying (503), a MODEL_NAME typo is not."""
    client = create_app(proxy_config(two_version_server, protocol, model_name="dogs")).test_client()
    answer = post_files(client, {"a.jpg": sample_jpegs["photo0.jpg"]})
    assert answer.status_code == 404 and "Retry-After" not in answer.headers
    assert answer.get_json()["kind"] == "not_found"
    assert "knows no model named 'dogs'" in answer.get_json()["error"]
    assert "check MODEL_NAME" in answer.get_json()["error"]
    # The page's badge asks /api/model, which said only the model server's own words.
    info = client.get("/api/model")
    assert_error(info, 404, "not_found", "knows no model named 'dogs'", "check MODEL_NAME")


# ---------- refused requests ----------


def test_one_request_decodes_at_most_max_pixels_in_all(two_version_server, protocol) -> None:
    """Each image under the limit, together over it: refused from the headers. JPEGs count
    at the size they decode to (a 900 x 900 one at half scale), so photos still go in
    batches."""
    config = proxy_config(two_version_server, protocol, max_pixels=1_000_000)
    client = create_app(config).test_client()
    png = encode(solid((200, 30, 30), (800, 800)))  # 0.64 megapixels, decoded whole
    assert post_files(client, {"a.png": png}).status_code == 200
    both = post_files(client, {"a.png": png, "b.png": png})
    assert_error(
        both, 413, "too_large", "the 2 images of this request decode to 1.3 megapixels together",
        "more than the 1 megapixels one request may decode", "separate requests",
    )  # fmt: skip
    photo = photo_like(1, (900, 900))  # 0.81 megapixels, decoded as 450 x 450
    photos = post_files(client, {f"{i}.jpg": photo for i in range(4)})
    assert photos.status_code == 200, photos.get_json()
    assert len(photos.get_json()["results"]) == 4


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("?k=0", "k must"),
        ("?k=11", "k must"),
        ("?k=three", "k must"),
        ("?version=abc", "whole number"),
        ("?version=-1", "whole number such as 3"),
        ("?version=%C2%B2", "whole number"),  # "²": str.isdigit() says yes, int() says no
        # Beyond int64: said as the rule it breaks, not as "not a whole number".
        ("?version=99999999999999999999", "version is above 9,223,372,036,854,775,807"),
        ("?version=9223372036854775808", "the largest a model server takes"),  # 2**63
        ("?k=%C2%B2", "k must"),
        ("?version=1&label=stable", "not both"),
        ("?label=has/slash", "label may only"),
        # Dots alone would be path segments in the REST client's URLs: ".." answered with
        # the latest version under the label "..", "." with a 500.
        ("?label=..", "label '..' is dots alone"),
        ("?label=.", "label '.' is dots alone"),
        (f"?label={'a' * 65}", "label has 65 characters; the most is 64"),
    ],
)
def test_bad_query_parameters_are_400(client, sample_jpegs, query: str, fragment: str) -> None:
    assert_error(
        post_files(client, {"a.jpg": sample_jpegs["photo0.jpg"]}, query),
        400,
        "bad_request",
        fragment,
    )


def test_bad_uploads(client, sample_jpegs) -> None:
    jpeg = sample_jpegs["photo0.jpg"]
    assert_error(
        post_files(client, {"notes.txt": b"just text"}),
        415,
        "unsupported_media",
        "notes.txt",
        "not an image",
    )
    assert_error(
        post_files(client, {"half.jpg": jpeg[: len(jpeg) // 3]}), 400, "bad_image", "half.jpg"
    )
    assert_error(post_files(client, {"empty.jpg": b""}), 400, "bad_image", "empty")
    assert_error(
        post_files(client, {"bomb.png": png_header_only(9000, 9000)}),
        413,
        "too_large",
        "megapixels",
    )
    both = post_files(client, {"ok.jpg": jpeg, "bad.txt": b"nope"})
    assert_error(both, 415, "unsupported_media", "bad.txt")
    # A name of kilobytes is shortened in the sentence (its start and its end kept).
    long_name = f"{'holiday-' * 500}last.txt"
    answer = post_files(client, {long_name: b"nope"})
    assert_error(
        answer, 415, "unsupported_media", "holiday-holiday-", "…", "y-last.txt: ", "not an image"
    )
    assert len(answer.get_json()["error"]) < 400
    # Under the body limit, Werkzeug's own form limits: said as such, not as the byte limit.
    parts = {f"field{i}": "x" for i in range(1001)}
    crowded = client.post("/api/predict", data=parts, content_type="multipart/form-data")
    assert_error(crowded, 413, "too_large", "more than 1000 parts")


def test_missing_or_malformed_bodies(client) -> None:
    assert_error(client.post("/api/predict"), 400, "bad_request", "no image in the request")
    assert_error(
        client.post("/api/predict", data=b"", content_type="image/jpeg"),
        400,
        "bad_request",
        "no image",
    )
    assert_error(
        client.post("/api/predict", data="x", content_type="text/plain"),
        415,
        "unsupported_media",
        "the request has Content-Type text/plain",
    )
    # What `curl -d @body.json` sends: the JSON as a form. The answer names the header to set.
    as_form = client.post(
        "/api/predict",
        data='{"images": ["aGk="]}',
        content_type="application/x-www-form-urlencoded",
    )
    assert_error(as_form, 415, "unsupported_media", "with Content-Type: application/json")
    empty_form = client.post("/api/predict", data={}, content_type="multipart/form-data")
    assert_error(empty_form, 400, "bad_request", "no image")
    # A multipart body Werkzeug cannot split reads as no parts at all: said as such, not as
    # "no image" (which told the client to send the `file` field it had sent).
    part = (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\nDATA\r\n")  # fmt: skip
    for content_type, body, fragment in (
        ("multipart/form-data", part + b"--xyz--\r\n", "names no boundary"),  # set by hand
        ("multipart/form-data; boundary=abc", part + b"--xyz--\r\n", "no part of the multipart"),
        ("multipart/form-data; boundary=xyz", part, "no part of the multipart"),  # cut short
    ):
        framed = client.post("/api/predict", data=body, content_type=content_type)
        assert_error(framed, 400, "bad_request", fragment, "let the HTTP library write")
    as_text = client.post(
        "/api/predict", data={"file": "cat.jpg"}, content_type="multipart/form-data"
    )
    assert_error(
        as_text, 400, "bad_request", 'form field "file" holds text, not a file', "-F file=@cat.jpg"
    )
    assert_error(client.post("/api/predict", json={"pictures": []}), 400, "bad_request", "json")
    # TF Serving's request body, sent to the proxy: named, not "not valid".
    tf_serving = {"instances": [{"b64": "aGk="}]}
    assert_error(
        client.post("/api/predict", json=tf_serving), 400, "bad_request",
        "unknown JSON key 'instances'", '{"images": ["<base64>", ...]}',
    )  # fmt: skip
    assert_error(client.post("/api/predict", json={"images": []}), 400, "bad_request", "no image")
    assert_error(
        client.post("/api/predict", json={"images": ["***"]}), 400, "bad_request", "base64"
    )
    assert_error(client.post("/api/predict", json={"images": [42]}), 400, "bad_request", "base64")
    bad_json = client.post("/api/predict", data="{nope", content_type="application/json")
    assert_error(bad_json, 400, "bad_request", "json")
    deep = "[" * 100_000 + "]" * 100_000  # the json module gives up with RecursionError
    assert_error(
        client.post("/api/predict", data=deep, content_type="application/json"), 400, "bad_request"
    )


def test_size_limits(two_version_server, protocol, sample_jpegs) -> None:
    config = proxy_config(two_version_server, protocol, max_upload_bytes=65_536, max_images=2)
    client = create_app(config).test_client()
    big = encode(solid((1, 2, 3), (10, 10)), "PNG") + b"\0" * 70_000
    assert_error(post_files(client, {"big.png": big}), 413, "too_large", "the 0.0625 MiB limit")
    as_json = client.post(
        "/api/predict", json={"images": [base64.b64encode(big[:50_000]).decode()]}
    )
    assert_error(
        as_json,
        413,
        "too_large",
        "the 0.0625 MiB limit",
        "a third larger",
        "multipart field `file`",
    )
    small = encode(solid((1, 2, 3), (10, 10)), "PNG")
    assert_error(
        post_files(client, {"a.png": small, "b.png": small, "c.png": small}), 413, "too_large", "2"
    )
    assert post_files(client, {"a.png": small, "b.png": small}).status_code == 200
    # Counted before any is decoded: a 10 MB list of empty strings took 700 MB and 7 s to
    # refuse (these three are not even base64, and still the count is what is said).
    many = client.post("/api/predict", json={"images": ["***", "***", "***"]})
    assert_error(many, 413, "too_large", "too many images")


def test_errors_are_json_everywhere(client) -> None:
    assert_error(client.get("/no/such/page"), 404, "no_route")
    assert_error(client.get("/api/predict"), 405, "method_not_allowed")
    assert_error(client.delete("/api/model"), 405, "method_not_allowed")


# ---------- metrics ----------


def test_metrics_count_requests_latency_and_errors(client, sample_jpegs) -> None:
    post_files(client, {"a.jpg": sample_jpegs["photo0.jpg"]})
    post_files(client, {"a.txt": b"text"})
    text = client.get("/metrics").get_data(as_text=True)
    assert (
        'proxy_http_requests_total{endpoint="/api/predict",method="POST",status="200"} 1.0' in text
    )
    assert 'proxy_errors_total{kind="unsupported_media"} 1.0' in text
    assert 'proxy_http_request_duration_seconds_count{endpoint="/api/predict"} 2.0' in text
    assert "proxy_model_server_duration_seconds_bucket" in text
    assert 'proxy_images_classified_total{version="2"} 1.0' in text  # a rollout shows here
    assert 'outcome="ok",protocol=' in text  # the model server's latency, by outcome


def test_a_wrong_method_on_a_route_is_counted_under_that_route(client) -> None:
    """A GET of /api/predict counted as "unmatched", with the unknown paths: a dashboard
    could not see clients using the wrong method."""
    client.get("/api/predict")
    client.get("/api/nothing")
    text = client.get("/metrics").get_data(as_text=True)
    assert (
        'proxy_http_requests_total{endpoint="/api/predict",method="GET",status="405"} 1.0' in text
    )
    assert 'proxy_http_requests_total{endpoint="unmatched",method="GET",status="404"} 1.0' in text


def test_made_up_http_methods_share_one_metrics_series(client) -> None:
    """Each method name a client makes up was a new series for good (212 KB of /metrics after
    3,000 requests, and the multiprocess files grew alike)."""
    for method in ("BREW", "WHEN", "XYZZY"):
        client.open("/api/nothing", method=method)
    text = client.get("/metrics").get_data(as_text=True)
    line = 'proxy_http_requests_total{endpoint="unmatched",method="other",status="404"} 3.0'
    assert line in text
    assert "BREW" not in text and "XYZZY" not in text

"""The page and the HTTP hygiene around it (no model server needed for these)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from proxy.security import HEADERS

STATIC = Path(__file__).resolve().parents[2] / "proxy"


def test_page_renders_with_settings_for_the_script(offline_client) -> None:
    response = offline_client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'data-max-upload-bytes="10485760"' in html and 'data-max-pixels="40000000"' in html
    assert "the 3 most likely classes" in html
    for needed in ('id="file-input"', 'id="dropzone"', 'aria-live="polite"', "/static/app.js"):
        assert needed in html


@pytest.mark.parametrize("path", ["/", "/static/app.css", "/static/app.js", "/api/model", "/x"])
def test_security_headers_everywhere(offline_client, path: str) -> None:
    response = offline_client.get(path)
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (path, name)
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp


@pytest.mark.parametrize(
    ("path", "stored"),
    [("/api/model", False), ("/healthz", False), ("/readyz", False), ("/metrics", False),
     ("/x", False), ("/static/app.js", True), ("/", True)],
)  # fmt: skip
def test_answers_about_this_moment_are_never_cached(offline_client, path, stored) -> None:
    response = offline_client.get(path)
    assert ("no-store" not in response.headers.get("Cache-Control", "")) == stored, path


def test_no_third_party_origin_and_no_inline_code() -> None:
    """Works offline: no CDN, no remote fonts; and the strict CSP needs no inline code."""
    files = [*STATIC.glob("templates/*.html"), *STATIC.glob("static/*")]
    assert files
    for path in files:
        text = path.read_text()
        remote = re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, flags=re.I)
        remote = [r for r in remote if not r.endswith("//www.w3.org")]  # SVG xmlns
        assert not remote, f"{path.name} refers to {remote}"
        if path.suffix == ".html":
            assert not re.search(r"<script(?![^>]*\bsrc=)", text), "inline <script>"
            assert not re.search(r"\sstyle=", text), "inline style attribute"
            assert not re.search(r"\son[a-z]+=", text), "inline event handler"


def test_uploads_never_touch_the_disk(offline_client, monkeypatch) -> None:
    """Werkzeug spools big multipart files to temp files; ours must stay in memory."""
    import werkzeug.formparser

    def no_temp_files(*args, **kwargs):
        raise AssertionError("an upload was about to be written to a temporary file")

    monkeypatch.setattr(werkzeug.formparser, "SpooledTemporaryFile", no_temp_files)
    big = b"not an image " * 200_000  # 2.6 MB, far past werkzeug's 500 kB spooling threshold
    response = offline_client.post(
        "/api/predict",
        data={"file": (io.BytesIO(big), "big.bin")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 415, response.get_json()


def test_model_server_down_is_a_clear_503(offline_client) -> None:
    from proxy_images import photo_like

    response = offline_client.post(
        "/api/predict",
        data={"file": (io.BytesIO(photo_like(0)), "a.jpg")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 503
    assert response.get_json()["error"] == (
        "The model server cannot be reached. Please try again in a moment."
    )
    assert offline_client.get("/readyz").status_code == 503
    assert offline_client.get("/api/model").status_code == 503
    assert offline_client.get("/healthz").status_code == 200

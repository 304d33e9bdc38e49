"""The web page: one template, static JS/CSS, no build step."""

from __future__ import annotations

from flask import Blueprint, render_template

from proxy.services import services

bp = Blueprint("page", __name__)


@bp.get("/")
def index() -> str:
    """The classifier page; settings reach the script through data- attributes (no inline JS)."""
    config = services().config
    return render_template(
        "index.html",
        model_name=config.model_name,
        top_k=config.top_k,
        max_upload_bytes=config.max_upload_bytes,
        max_pixels=config.max_pixels,
    )

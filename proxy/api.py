"""JSON API: POST /api/predict (images -> top-k) and GET /api/model (what is being served)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from flask import Blueprint, Response, jsonify, request

from imaging.decode import IMAGE_SIZE, ImageError, ImageTooLarge, decode_cost, to_pixels
from proxy.client import (
    ModelNotFound,
    ModelServerError,
    ModelServerUnavailable,
    ModelTarget,
    Prediction,
    class_names_in_index_order,
)
from proxy.config import MAX_TOP_K, ProxyConfig
from proxy.errors import ApiError
from proxy.services import (
    Services,
    available_versions,
    default_target,
    resolve_default,
    services,
)
from proxy.uploads import Upload, read_uploads

bp = Blueprint("api", __name__, url_prefix="/api")

LABEL_CHARACTERS = re.compile(r"[A-Za-z0-9_.-]+")
MAX_LABEL_LENGTH = 64
# ASCII digits only (str.isdigit also accepts "²", which int() rejects).
ASCII_DIGITS = re.compile(r"[0-9]+")
MAX_VERSION = 2**63 - 1  # ModelSpec.version is an int64


@bp.post("/predict")
def predict() -> Response:
    """Classify one or more uploaded images; answers DESIGN.md's "Proxy JSON API"."""
    started = time.perf_counter()
    svc = services()
    check_query(request.args)
    target = target_from_query(request.args, svc.config)
    k = top_k_from_query(request.args, svc.config.top_k)
    uploads = read_uploads(request, svc.config.max_images)
    received = time.perf_counter()  # the body arrives as it is parsed: a slow client's time
    max_pixels = svc.config.max_pixels
    if len(uploads) > 1:
        _check_decode_budget(uploads, max_pixels)
    pixels = np.stack([_of_file(upload, to_pixels, max_pixels) for upload in uploads])
    decoded = time.perf_counter()
    model_latency = svc.metrics.model_latency
    try:
        prediction = svc.client.predict(pixels, target)
    except ModelServerError as exc:  # failures too: a timeout's 5 s are model-server time
        outcome = exc.kind  # what the model server answered (or that it did not)
        model_latency.labels(svc.config.protocol, outcome).observe(time.perf_counter() - decoded)
        if isinstance(exc, ModelNotFound):  # its words name its internals; say what to do
            asked = bool(request.args.get("version") or request.args.get("label"))
            raise _not_served(svc, target, exc, asked) from exc
        raise
    answered = time.perf_counter()
    model_latency.labels(svc.config.protocol, "ok").observe(answered - decoded)
    svc.metrics.images.labels(str(prediction.version)).inc(len(uploads))
    model = {"name": prediction.name, "version": prediction.version}
    if target.label:
        model["label"] = target.label
    return jsonify(
        model=model,
        results=[
            {"filename": upload.filename, "top": top_k(prediction, row, k)}
            for row, upload in enumerate(uploads)
        ],
        elapsed_ms=round((time.perf_counter() - started) * 1000, 2),
        timing_ms={
            "receive": round((received - started) * 1000, 2),
            "preprocess": round((decoded - received) * 1000, 2),
            "model_server": round((answered - decoded) * 1000, 2),
        },
    )


def _unknown_model(name: str, exc: ModelServerError) -> ModelNotFound:
    """The model server has no status for the model: a MODEL_NAME typo, or no version folder
    found yet. Said so, with what to check; the server's own words are about its internals."""
    return ModelNotFound(
        f"the model server knows no model named {name!r}, or has not found any version of it "
        f"yet (check MODEL_NAME and the model's base path; it says: {exc})"
    )


def _not_served(
    svc: Services, target: ModelTarget, exc: ModelNotFound, asked: bool
) -> ModelServerError:
    """What to tell a client whose target the model server does not serve right now.

    The latest version, asked for by no one in particular, of a model the server knows, and
    none is served (every folder rolled back, or the first still loading): the service's fault,
    not the client's, as /readyz says too, so a 503 to retry. A version or label that is not
    served (also MODEL_VERSION, MODEL_LABEL), or a model the server has no status for (a
    MODEL_NAME typo, or a configured model none of whose version folders it has found yet;
    TF Serving answers a predict for either with the same NOT_FOUND as for a known model,
    its status call tells them apart) stays a 404: retrying will not help. A target the
    client did not `asked` for is named as the proxy's setting: the client never chose it."""
    if target.version is None and not target.label:
        try:
            svc.client.status(target.name)
        except ModelNotFound:
            return _unknown_model(target.name, exc)
        except Exception:  # noqa: BLE001 - gone meanwhile, or an odd answer: a 503 either way
            pass
        return ModelServerUnavailable(
            f"the model server has no version of model {target.name!r} to serve "
            f"(it says: {exc}); GET /api/model shows what is loading"
        )
    what = target.describe()
    if not asked:
        setting = (f"MODEL_VERSION={target.version}" if target.version is not None
                   else f"MODEL_LABEL={target.label}")  # fmt: skip
        what = f"{what}, this proxy's default ({setting}),"
    return ModelNotFound(
        f"{what} is not being served (the model server says: {exc}); "
        "GET /api/model lists the versions and labels that are"
    )


@bp.get("/model")
def model() -> Response:
    """Versions and their states, labels that resolve, class names, and the proxy's limits."""
    # It describes every version at once: `?version=3` would be ignored, so it is refused.
    check_query(request.args, allowed=())
    svc = services()
    config = svc.config
    try:
        versions = svc.client.status(config.model_name)
    except ModelNotFound as exc:
        raise _unknown_model(config.model_name, exc) from exc
    default = default_target(config)
    available = available_versions(versions)
    serves, problem = resolve_default(svc, available)
    return jsonify(
        name=config.model_name,
        protocol=config.protocol,
        versions=[{"version": v.version, "state": v.state, "error": v.error} for v in versions],
        labels=_resolve_labels(svc) if available else {},
        classes=_class_names(svc, ModelTarget(default.name, serves)) if serves is not None else [],
        # What a request without ?version or ?label gets: the version it resolves to now, or
        # why it resolves to none (a MODEL_LABEL the server does not know, ...).
        default={
            "version": default.version,
            "label": default.label,
            "serves": serves,
            "error": problem,
        },
        limits={
            "max_upload_bytes": config.max_upload_bytes,
            "max_pixels": config.max_pixels,
            "max_images": config.max_images,
            "top_k": config.top_k,
        },
    )


QUERY_PARAMETERS = ("k", "version", "label")


def check_query(args, allowed: tuple[str, ...] = QUERY_PARAMETERS) -> None:
    """A misspelt parameter (`?lable=canary`) would silently ask the default version, a
    repeated one (`?version=5&version=99`) answered with its first value, and an empty one
    (`?label=$LABEL` with LABEL unset) the default version: refuse all three."""
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        takes = f"takes {', '.join(allowed)}" if allowed else "takes no query parameters"
        raise ApiError(f"unknown query parameter {', '.join(unknown)}; this endpoint {takes}")
    repeated = sorted(name for name in args if len(args.getlist(name)) > 1)
    if repeated:
        raise ApiError(f"query parameter {', '.join(repeated)} given more than once")
    empty = sorted(name for name in args if not args[name])
    if empty:
        raise ApiError(f"query parameter {', '.join(empty)} is empty; give a value or leave it out")


def target_from_query(args: dict, config: ProxyConfig) -> ModelTarget:
    """`?version=N` or `?label=L` (not both); neither = the configured default."""
    version, label = args.get("version", ""), args.get("label", "")
    if version and label:
        raise ApiError("give either version or label, not both")
    if version:
        check_version(version)
        return ModelTarget(config.model_name, version=int(version))
    if label:
        check_label(label)
        return ModelTarget(config.model_name, label=label)
    return default_target(config)


def check_version(version: str) -> None:
    """Each refusal says the rule the value broke: a 19-digit number was told it was not a
    whole number."""
    if not ASCII_DIGITS.fullmatch(version):
        raise ApiError(f"version must be a whole number such as 3, not {_short_name(version)!r}")
    significant = version.lstrip("0") or "0"  # int() of thousands of digits is refused
    if len(significant) > len(str(MAX_VERSION)) or int(significant) > MAX_VERSION:
        raise ApiError(f"version is above {MAX_VERSION:,}, the largest a model server takes")


def check_label(label: str) -> None:
    if not LABEL_CHARACTERS.fullmatch(label):
        raise ApiError("label may only use letters, digits, '_', '-' and '.'")
    if len(label) > MAX_LABEL_LENGTH:
        raise ApiError(f"label has {len(label)} characters; the most is {MAX_LABEL_LENGTH}")
    # "." and ".." would be path segments in the REST client's /labels/<label>/ URLs
    # (resolved away by the HTTP library: another version, or a 500).
    if not label.strip("."):
        raise ApiError(f"label {label!r} is dots alone, which cannot name a label")


def top_k_from_query(args: dict, default: int) -> int:
    raw = args.get("k", "")
    if not raw:
        return default
    if not re.fullmatch(r"[0-9]{1,2}", raw) or not 1 <= int(raw) <= MAX_TOP_K:
        raise ApiError(f"k must be a whole number from 1 to {MAX_TOP_K}")
    return int(raw)


def top_k(prediction: Prediction, row: int, k: int) -> list[dict]:
    """The first k (label, probability) pairs of one image; rows are already sorted."""
    labels = prediction.classes[row][:k]
    scores = prediction.scores[row][:k]
    return [
        {"label": label, "probability": round(float(p), 6)}
        for label, p in zip(labels, scores, strict=True)
    ]


T = TypeVar("T")


def _of_file(upload: Upload, read: Callable[[bytes, int], T], max_pixels: int) -> T:
    """`read` of one upload; its errors name the file so a batch says which image failed."""
    try:
        return read(upload.data, max_pixels)
    except ImageError as exc:
        raise type(exc)(f"{_short_name(upload.filename)}: {exc}") from exc


def _short_name(filename: str, keep: int = 80) -> str:
    """A filename for an error message: a name of kilobytes (the multipart header allows
    8 KiB) buried the sentence; its start and its extension say which file it was."""
    if len(filename) <= keep:
        return filename
    return f"{filename[: keep - 20]}…{filename[-19:]}"


def _check_decode_budget(uploads: list[Upload], max_pixels: int) -> None:
    """A request decodes at most MAX_PIXELS in all, read from the headers before any image is
    decoded. The limit was per image: sixteen 39-megapixel PNGs (163 KB each) made one
    request decode 640 megapixels, and eight such requests held every worker thread for
    seconds while a small photo waited (a hostile-input audit)."""
    total = sum(_of_file(upload, decode_cost, max_pixels) for upload in uploads)
    if total > max_pixels:
        raise ImageTooLarge(
            f"the {len(uploads)} images of this request decode to {total / 1e6:.1f} megapixels "
            f"together, more than the {max_pixels / 1e6:g} megapixels one request may decode: "
            "send them in separate requests"
        )


def _resolve_labels(svc: Services) -> dict[str, int]:
    """Labels from the config that the model server currently resolves."""
    labels = {}
    for label in svc.config.known_labels:
        try:
            target = ModelTarget(svc.config.model_name, label=label)
            labels[label] = svc.client.resolve_version(target)
        except ModelServerError:
            continue
    return labels


def _class_names(svc: Services, target: ModelTarget) -> list[str]:
    """Class names in index order, from one prediction on a blank image (cached per version)."""
    version = svc.client.resolve_version(target)
    with svc.lock:
        cached = svc.class_names.get(version)
    if cached is None:
        blank = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        pinned = ModelTarget(target.name, version=version)
        cached = class_names_in_index_order(svc.client.predict(blank, pinned))
        with svc.lock:
            svc.class_names[version] = cached
    return cached

"""Getting image bytes out of a request, in memory only.

Werkzeug spools multipart files over 500 kB to a temporary file; `InMemoryRequest` keeps
them in RAM instead (the body is already capped by MAX_CONTENT_LENGTH), so an upload never
touches the disk.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import IO

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

from proxy.errors import ApiError

FILE_FIELD, JSON_KEY = "file", "images"
USAGE = (
    f'send images as multipart field "{FILE_FIELD}" or as JSON {{"{JSON_KEY}": ["<base64>", ...]}}'
)
# ASCII whitespace, which line-wrapped base64 (`base64 cat.jpg`, encodebytes) carries.
_WRAPPING = str.maketrans("", "", " \t\n\r\v\f")


class InMemoryRequest(Request):
    """A Flask request whose uploaded files live in BytesIO, never in a temp file."""

    def _get_file_stream(  # type: ignore[override]
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return io.BytesIO()


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


def read_uploads(request: Request, max_images: int) -> list[Upload]:
    """The images of a predict request: multipart `file` fields or JSON base64 strings."""
    if request.mimetype == "multipart/form-data":
        _refuse_unknown("form field", [*request.files, *request.form], FILE_FIELD)
        if FILE_FIELD in request.form:  # `curl -F file=cat.jpg` sends the name as text
            raise ApiError(
                f'form field "{FILE_FIELD}" holds text, not a file: with curl, '
                f"-F {FILE_FIELD}=@cat.jpg (the @ sends the file)"
            )
        uploads = [
            Upload(f.filename or f"image-{i + 1}", f.read())
            for i, f in enumerate(request.files.getlist(FILE_FIELD))
        ]
        if not uploads and not request.form:
            _check_multipart_framing(request)
    elif request.is_json:
        uploads = _from_json(_json_body(request), max_images)
    elif _body_is_empty(request):
        uploads = []  # no image, whatever its Content-Type says
    else:
        raise _unsupported(request.mimetype)
    if not uploads:
        raise ApiError(f"no image in the request: {USAGE}")
    if len(uploads) > max_images:
        raise _too_many(max_images)
    return uploads


def _check_multipart_framing(request: Request) -> None:
    """Werkzeug reads a multipart body it cannot split into no parts at all, without a word.
    The usual cause is a Content-Type set by hand (`-H "Content-Type: multipart/form-data"`,
    or `requests` with files= and that header): no boundary, or not the body's. "No image in
    the request" told such a client to send the `file` field it had sent."""
    fix = "let the HTTP library write the Content-Type header (curl -F, requests' files=)"
    boundary = request.mimetype_params.get("boundary")
    if not boundary:
        raise ApiError(f"the multipart Content-Type names no boundary: {fix}")
    # A form with no field at all is its closing boundary alone: "no image" says it.
    closing_only = len(f"\r\n--{boundary}--\r\n")
    length = request.content_length
    if length is None or length > closing_only:  # chunked bodies have no length to tell by
        raise ApiError(
            "no part of the multipart body could be read: its parts must be separated by the "
            f"boundary its Content-Type names and end with a closing one; {fix}"
        )


def _body_is_empty(request: Request) -> bool:
    """Without reading a body that is there (up to the upload limit) only to refuse it."""
    if request.content_length is not None:
        return request.content_length == 0
    return not request.stream.read(1)


def _unsupported(mimetype: str) -> ApiError:
    """The Content-Type named: `curl -d @body.json` sends its JSON as a form (and a raw image
    body is no form either), and a bare usage line told the client it had done what it did."""
    got = f"Content-Type {mimetype}" if mimetype else "no Content-Type"
    return ApiError(
        f"the request has {got}: {USAGE}, the JSON with Content-Type: application/json",
        415,
        "unsupported_media",
    )


def _too_many(max_images: int) -> ApiError:
    return ApiError(f"too many images in one request (limit {max_images})", 413, "too_large")


def _json_body(request: Request) -> object:
    """The parsed JSON body, None when it is not JSON. Deeply nested arrays make the json
    module raise RecursionError, which `silent=True` does not cover: a 400, not a 500."""
    limit = request.max_content_length
    # A chunked body has no length to refuse it by: Werkzeug cuts it at the limit, and the
    # cut JSON read as "not valid" (a 400). Full to the limit = too large.
    chunked = request.content_length is None and limit is not None
    if chunked and len(request.get_data(cache=True)) >= limit:
        raise RequestEntityTooLarge()
    try:
        return request.get_json(silent=True)
    except RecursionError:
        return None


def _refuse_unknown(what: str, names: list[str], known: str) -> None:
    """A misspelt field (`files`, or `version` sent in the body rather than the query) was
    dropped without a word: its images lost, or the default version answering."""
    unknown = sorted(set(names) - {known})
    if unknown:
        raise ApiError(
            f"unknown {what} {', '.join(map(repr, unknown))}: {USAGE}; options (k, version, "
            "label) go in the query string"
        )


def _from_json(body: object, max_images: int) -> list[Upload]:
    if isinstance(body, dict):  # first: TF Serving's {"instances": ...} is named as such
        _refuse_unknown("JSON key", list(body), JSON_KEY)
    if not isinstance(body, dict) or not isinstance(body.get(JSON_KEY), list):
        raise ApiError(f"the JSON body is not valid: {USAGE}")
    if len(body[JSON_KEY]) > max_images:  # before decoding millions of them
        raise _too_many(max_images)
    return [Upload(f"image-{i + 1}", _b64decode(item, i)) for i, item in enumerate(body[JSON_KEY])]


def _b64decode(item: object, index: int) -> bytes:
    """Standard base64, line-wrapped or not, with or without a `data:image/...;base64,`
    prefix."""
    if not isinstance(item, str):
        raise ApiError(f"images[{index}] is not a base64 string")
    if item.startswith("data:"):
        item = item.partition(",")[2]
    try:
        return base64.b64decode(item.translate(_WRAPPING), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(f"images[{index}] is not valid base64") from exc

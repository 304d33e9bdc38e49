"""What the soak run sends: real test images in many sizes and formats, hostile requests,
and the client threads that post them and record every answer.

Good payloads are CIFAR-10 test JPEGs upscaled to 32..1600 px and re-encoded as JPEG, PNG or
WebP. Hostile payloads each name the 4xx the proxy must answer; the fuzz tests cover the
space between them, these are the cases an operator would try by hand.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import random
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from training.config import SHARED_DATA

BOUNDARY = "soakboundary1fK9xQ7wZ2"
SIZES = (32, 96, 320, 800, 1600)
FORMATS = (("JPEG", "jpg", {"quality": 90}), ("PNG", "png", {}), ("WEBP", "webp", {"quality": 90}))
CANARY = "canary"  # the version label the soak adds with a config reload
CIFAR_TAR = SHARED_DATA


@dataclass(frozen=True)
class Payload:
    """One prepared request: body and headers, and what a correct answer looks like."""

    kind: str  # "good", "limit" (good, near the upload limit) or the hostile case's name
    body: bytes
    content_type: str
    query: str = ""
    label: str | None = None  # true class of a good image
    expect: int = 200  # the status a healthy stack answers with

    @property
    def good(self) -> bool:
        return self.expect == 200


@dataclass
class Record:
    """One answered (or failed) request; times in seconds since the run's t0."""

    kind: str
    index: int  # into the payload list it came from
    started: float
    elapsed: float
    status: int  # 0 = no HTTP answer (connection refused/reset, client timeout)
    expect: int
    top: list[dict] = field(default_factory=list)
    error: str = ""
    query: str = ""


# ----- payloads -----


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def multipart(files: Iterable[tuple[str, bytes]]) -> bytes:
    """A multipart/form-data body with one `file` part per (filename, bytes)."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def good_payloads(images: list[bytes], labels: list[str]) -> list[Payload]:
    """Each test image upscaled (bicubic) to a size and re-encoded in a format, round-robin."""
    payloads = []
    for i, (data, label) in enumerate(zip(images, labels, strict=True)):
        size = SIZES[i % len(SIZES)]
        fmt, suffix, options = FORMATS[(i // len(SIZES)) % len(FORMATS)]
        image = Image.open(io.BytesIO(data)).convert("RGB")
        image = image.resize((size, size), Image.Resampling.BICUBIC)
        body = multipart([(f"{label}-{i}.{suffix}", encode(image, fmt, **options))])
        payloads.append(Payload("good", body, MULTIPART, label=label))
    return payloads


def cifar_images(per_class: int, tar: Path = CIFAR_TAR) -> tuple[list[bytes], list[str]]:
    """`per_class` real test JPEGs of each class, with their class names."""
    from export.encoded import read_encoded

    sample = read_encoded(tar, "test").per_class(per_class)
    return sample.data, [sample.class_names[i] for i in sample.labels]


def limit_payloads(jpeg: bytes, max_upload_bytes: int) -> list[Payload]:
    """A valid JPEG padded after its end marker to just under the upload limit (decoders
    ignore trailing bytes: 200), and the same just over it (413)."""
    room = max_upload_bytes - len(multipart([("limit.jpg", b"")]))
    under = jpeg + b"\0" * (room - len(jpeg) - 1024)
    over = jpeg + b"\0" * (room - len(jpeg) + 1024)
    return [
        Payload("limit", multipart([("limit.jpg", under)]), MULTIPART),
        Payload("over_limit", multipart([("limit.jpg", over)]), MULTIPART, expect=413),
    ]


def png_bomb(width: int, height: int) -> bytes:
    """A real, complete grey PNG of width x height zero pixels: a few hundred kB on the wire,
    width*height bytes once decoded."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def hostile_payloads(jpeg: bytes, max_upload_bytes: int, max_pixels: int) -> list[Payload]:
    """Each request a careless or malicious client might send, with the answer it must get."""
    rng = random.Random(0)
    side = int(max_pixels**0.5) + 100
    json_type = "application/json"

    def files(*named: tuple[str, bytes], query: str = "", expect: int) -> tuple:
        return multipart(named), MULTIPART, query, expect

    cases = {
        "truncated_jpeg": files(("cut.jpg", jpeg[: len(jpeg) * 2 // 3]), expect=400),
        "random_bytes_as_jpg": files(("noise.jpg", rng.randbytes(5000)), expect=415),
        "text_as_jpg": files(("notes.jpg", b"Dear diary, this is not a photo.\n" * 20), expect=415),
        "oversized_upload": files(("big.jpg", os.urandom(max_upload_bytes + 4096)), expect=413),
        "decompression_bomb": files(("bomb.png", png_bomb(side, side)), expect=413),
        "too_many_images": files(*[(f"{i}.jpg", jpeg) for i in range(17)], expect=413),
        "empty_file": files(("empty.jpg", b""), expect=400),
        "unknown_version": files(("a.jpg", jpeg), query="?version=987654", expect=404),
        "unknown_label": files(("a.jpg", jpeg), query="?label=no-such-label", expect=404),
        "bad_query": files(("a.jpg", jpeg), query="?version=%C2%B2&k=99", expect=400),
        "malformed_json": (b'{"images": ["', json_type, "", 400),
        "json_not_base64": (b'{"images": ["%%% not base64 %%%"]}', json_type, "", 400),
        "json_deeply_nested": (
            b'{"images": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            json_type,
            "",
            400,
        ),
        "json_base64_text": (
            json.dumps({"images": [base64.b64encode(b"hi").decode()]}).encode(),
            json_type,
            "",
            415,
        ),
        "wrong_content_type": (jpeg, "text/plain", "", 415),
    }
    return [Payload(kind, body, ctype, query, expect=expect)
            for kind, (body, ctype, query, expect) in cases.items()]  # fmt: skip


# ----- clients -----


class Poster:
    """Posts payloads on one keep-alive connection; reconnects after a failure."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.address = (host, port)
        self.timeout_s = timeout_s
        self.conn: http.client.HTTPConnection | None = None

    def post(self, payload: Payload, index: int, t0: float, query: str = "") -> Record:
        started = time.monotonic()
        record = Record(payload.kind, index, started - t0, 0.0, 0, payload.expect,
                        query=query or payload.query)  # fmt: skip
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(*self.address, timeout=self.timeout_s)
            self._send(payload, query)
            response = self.conn.getresponse()
            body = response.read()
            record.status = response.status
            if response.status == 200:
                record.top = json.loads(body)["results"][0]["top"]
            else:
                record.error = body[:300].decode(errors="replace")
            # gunicorn closes the connection after a 413 it did not read the body of, while
            # its answer says keep-alive (tests/system/test_uploads.py): start afresh.
            if response.will_close or response.status == 413:
                self.close()
        except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            self.close()
        record.elapsed = time.monotonic() - started
        return record

    def _send(self, payload: Payload, query: str) -> None:
        """Send the request. A server may answer and close before reading all of a body it
        refuses (413): like a browser, go on to read that answer instead of giving up."""
        headers = {"Content-Type": payload.content_type}
        try:
            self.conn.request("POST", "/api/predict" + (query or payload.query), payload.body,
                              headers)  # fmt: skip
        except (BrokenPipeError, ConnectionResetError):
            if len(payload.body) < 1024 * 1024:
                raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class Load:
    """Client threads posting good payloads back to back and hostile ones at a trickle,
    until stopped or `max_requests` have been sent. Records are appended in answer order."""

    host: str
    port: int
    good: list[Payload]
    hostile: list[Payload]
    clients: int
    hostile_interval_s: float
    timeout_s: float
    max_requests: int
    t0: float = field(default_factory=time.monotonic)
    records: list[Record] = field(default_factory=list)
    canary: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for n in range(self.clients):
            self._spawn(self._good_loop, n)
        self._spawn(self._hostile_loop, self.clients)
        return self

    def stop(self) -> list[Record]:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        return self.records

    def now(self) -> float:
        return time.monotonic() - self.t0

    def add(self, record: Record) -> bool:
        """Keep a record; False once the request budget is spent."""
        with self._lock:
            self.records.append(record)
            return len(self.records) < self.max_requests

    def poster(self) -> Poster:
        return Poster(self.host, self.port, self.timeout_s)

    def _spawn(self, target: Callable[[int], None], n: int) -> None:
        thread = threading.Thread(target=target, args=(n,), name=f"soak-client-{n}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _good_loop(self, n: int) -> None:
        rng, poster = random.Random(n), self.poster()
        while not self._stop.is_set():
            index = rng.randrange(len(self.good))
            # Once the canary label exists, every third request asks for it by name.
            query = f"?label={CANARY}" if self.canary.is_set() and rng.random() < 1 / 3 else ""
            if not self.add(poster.post(self.good[index], index, self.t0, query)):
                break
        poster.close()

    def _hostile_loop(self, n: int) -> None:
        poster, count = self.poster(), 0
        while not self._stop.wait(self.hostile_interval_s):
            index = count % len(self.hostile)
            count += 1
            if not self.add(poster.post(self.hostile[index], index, self.t0)):
                break
        poster.close()

    def burst(self, payloads: list[Payload], rounds: int, concurrency: int) -> None:
        """Every payload from `concurrency` threads at once, `rounds` times: with one thread
        per proxy request thread, every one of them holds a body at the upload limit."""

        def one(n: int) -> None:
            poster = self.poster()
            for _ in range(rounds):
                for index, payload in enumerate(payloads):
                    self.add(poster.post(payload, index, self.t0))
            poster.close()

        threads = [threading.Thread(target=one, args=(n,)) for n in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

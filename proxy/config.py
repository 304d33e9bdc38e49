"""Every setting of the proxy's application, read from environment variables in one place.
The serving process's own (address, port, workers, threads, access log) are gunicorn's, read by
proxy/gunicorn_conf.py.

Defaults match DESIGN.md (model `cifar10`, gRPC 8500, REST 8501 on loopback), so
`create_app()` with no environment talks to a local model server.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from imaging.decode import MAX_PIXELS

PROTOCOLS = ("grpc", "rest")
MAX_TOP_K = 10  # TOP_K and a request's ?k= (the model has ten classes)

# The environment the proxy's processes must start with (glibc reads it once, at start-up):
# one malloc arena for all threads. With one arena each, a worker's four threads kept the
# freed buffers of their big decodes: 1,297 MiB after 40-megapixel PNGs, with one 0 MiB
# (`python -m bench.decode_memory`), at the same request latency (`python -m bench.proxy`;
# a fixed mmap threshold instead cost 1.4-2.6 ms a request). make serve (stack/serve.py)
# and proxy/Dockerfile set it; a deploy test keeps them equal.
PROCESS_ENV = {"MALLOC_ARENA_MAX": "1"}


@dataclass(frozen=True)
class ProxyConfig:
    """Settings of one proxy process; see `from_env` for the variable names."""

    grpc_address: str = "127.0.0.1:8500"
    rest_url: str = "http://127.0.0.1:8501"
    protocol: str = "grpc"
    model_name: str = "cifar10"
    # Which version answers when a request names none: a number, a label, or neither
    # (neither = the model server's highest AVAILABLE version).
    default_version: int | None = None
    default_label: str | None = None
    # Labels shown by GET /api/model (TF Serving has no call that lists them).
    known_labels: tuple[str, ...] = ("stable", "canary")
    timeout_s: float = 5.0
    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = MAX_PIXELS
    max_images: int = 16
    top_k: int = 3

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"PROXY_PROTOCOL must be one of {PROTOCOLS}, not {self.protocol!r}")
        if self.default_version is not None and self.default_label:
            raise ValueError("set MODEL_VERSION or MODEL_LABEL, not both")
        if not 1 <= self.top_k <= MAX_TOP_K:
            raise ValueError(f"TOP_K must be between 1 and {MAX_TOP_K}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProxyConfig:
        """Build the config from environment variables (unset or empty = default)."""
        env = os.environ if env is None else env
        d = cls()

        def get(name: str, default: str) -> str:
            return env.get(name) or default

        def number(name: str, default: float | None, kind: type = int, minimum: float = 1):
            """The variable as a number of at least `minimum`, or a start-up error that names
            it (int() alone said only "invalid literal for int() with base 10", and a limit of
            0 or a timeout of nan would have refused or failed every request)."""
            text = get(name, "" if default is None else str(default))
            if not text:
                return None
            try:
                value = kind(text)
            except ValueError:
                value = None
            if value is None or not math.isfinite(value) or value < minimum:
                what = "a whole number" if kind is int else "a number"
                raise ValueError(f"{name} must be {what} of at least {minimum:g}, not {text!r}")
            return value

        labels = get("MODEL_LABELS", ",".join(d.known_labels))
        return cls(
            grpc_address=get("MODEL_SERVER_GRPC", d.grpc_address),
            rest_url=get("MODEL_SERVER_REST", d.rest_url).rstrip("/"),
            protocol=get("PROXY_PROTOCOL", d.protocol).lower(),
            model_name=get("MODEL_NAME", d.model_name),
            default_version=number("MODEL_VERSION", None, minimum=0),
            default_label=env.get("MODEL_LABEL") or None,
            known_labels=tuple(x.strip() for x in labels.split(",") if x.strip()),
            timeout_s=number("MODEL_SERVER_TIMEOUT_S", d.timeout_s, float, minimum=0.001),
            max_upload_bytes=number("MAX_UPLOAD_BYTES", d.max_upload_bytes),
            max_pixels=number("MAX_PIXELS", d.max_pixels),
            max_images=number("MAX_IMAGES", d.max_images),
            top_k=number("TOP_K", d.top_k),
        )

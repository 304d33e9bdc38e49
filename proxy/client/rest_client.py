"""TF Serving's REST API with a pooled `requests.Session`.

REST predict answers carry no version, so the client first resolves latest/label to a number
through `/metadata` (cached for `cache_s`) and then calls `/versions/N:predict`; the version in
the answer is then the one that really ran. If N was unloaded in between (404), it resolves
again once.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import quote

import numpy as np
import requests
from requests.adapters import HTTPAdapter

from proxy.client.base import (
    PIXELS_INPUT,
    PIXELS_SIGNATURE,
    UNKNOWN_LABEL,
    ModelClient,
    ModelNotFound,
    ModelServerError,
    ModelServerTimeout,
    ModelServerUnavailable,
    ModelTarget,
    Prediction,
    VersionStatus,
    overloaded,
)


class RestClient(ModelClient):
    """Model server client over REST/JSON (`/v1/models/...`)."""

    def __init__(self, base_url: str, timeout_s: float, cache_s: float = 1.0) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = timeout_s
        self._cache_s = cache_s
        self._cache: dict[ModelTarget, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=64))
        self._session.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=64))

    def predict(self, pixels: np.ndarray, target: ModelTarget) -> Prediction:
        body = {"signature_name": PIXELS_SIGNATURE, "inputs": {PIXELS_INPUT: pixels.tolist()}}
        if target.version is not None:
            return self._predict_version(body, target.name, target.version)
        try:
            return self._predict_version(body, target.name, self.resolve_version(target))
        except ModelNotFound:
            self._forget(target)  # that version was unloaded since we looked: look again
            return self._predict_version(body, target.name, self.resolve_version(target))

    def status(self, name: str) -> list[VersionStatus]:
        rows = self._call("GET", self._model_path(ModelTarget(name)))["model_version_status"]
        return [
            VersionStatus(
                version=int(row["version"]),
                state=row["state"],
                error=row.get("status", {}).get("error_message", ""),
            )
            for row in rows
        ]

    def resolve_version(self, target: ModelTarget) -> int:
        if target.version is not None:
            return target.version
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(target)
        if cached and cached[1] > now:
            return cached[0]
        meta = self._call("GET", self._model_path(target) + "/metadata")
        version = int(meta["model_spec"]["version"])
        with self._lock:
            self._cache[target] = (version, now + self._cache_s)
        return version

    def close(self) -> None:
        self._session.close()

    def _predict_version(self, body: dict, name: str, version: int) -> Prediction:
        path = self._model_path(ModelTarget(name, version)) + ":predict"
        outputs = self._call("POST", path, body)["outputs"]
        return Prediction(
            name=name,
            version=version,
            classes=outputs["classes"],
            scores=np.asarray(outputs["scores"], dtype=np.float32),
            probabilities=np.asarray(outputs["probabilities"], dtype=np.float32),
        )

    def _forget(self, target: ModelTarget) -> None:
        with self._lock:
            self._cache.pop(target, None)

    @staticmethod
    def _model_path(target: ModelTarget) -> str:
        path = f"/v1/models/{quote(target.name, safe='')}"
        if target.version is not None:
            return f"{path}/versions/{target.version}"
        if target.label:
            return f"{path}/labels/{quote(target.label, safe='')}"
        return path

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        """One HTTP call; every failure becomes a ModelServerError subclass."""
        try:
            response = self._session.request(
                method, self._base + path, json=body, timeout=self._timeout
            )
        except requests.ConnectTimeout as exc:  # no connection at all: down, not slow
            raise ModelServerUnavailable("the model server cannot be reached") from exc
        except requests.Timeout as exc:
            raise ModelServerTimeout("the model server did not answer in time") from exc
        except requests.RequestException as exc:
            raise ModelServerUnavailable("the model server cannot be reached") from exc
        if response.status_code == 200:
            return response.json()
        raise _error_from_response(response)


def _error_from_response(response: requests.Response) -> ModelServerError:
    """Map TF Serving's status codes (tfserving-behaviour.md §3.2) to our errors."""
    try:
        message = response.json().get("error", "")
    except ValueError:
        message = response.text[:200]
    message = message or f"HTTP {response.status_code}"
    if response.status_code in (503, 429) and (busy := overloaded(message)):
        return busy
    if response.status_code == 404 or UNKNOWN_LABEL in message:
        return ModelNotFound(message)
    if response.status_code == 504:  # its own deadline passed (--rest_api_timeout_in_ms)
        return ModelServerTimeout(f"the model server did not answer in time ({message})")
    if response.status_code == 503:
        return ModelServerUnavailable(f"the model server is unavailable ({message})")
    return ModelServerError(message)

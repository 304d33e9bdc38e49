"""What the proxy needs from a model server, independent of the wire protocol.

Two implementations speak TF Serving's public APIs: `RestClient` (JSON over HTTP) and
`GrpcClient` (protobuf over gRPC). Both raise the errors below, so the web layer maps one
set of exceptions to HTTP statuses whatever the protocol.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

# The `pixels` signature of the exported SavedModel (DESIGN.md "Interfaces").
PIXELS_SIGNATURE = "pixels"
PIXELS_INPUT = "images"
OUTPUTS = ("classes", "scores", "probabilities")


@dataclass(frozen=True)
class ModelTarget:
    """Which servable should answer: a version number, a label, or neither (= latest)."""

    name: str
    version: int | None = None
    label: str | None = None

    def describe(self) -> str:
        """Human wording for error messages."""
        if self.version is not None:
            return f"version {self.version} of model {self.name!r}"
        if self.label:
            return f"label {self.label!r} of model {self.name!r}"
        return f"model {self.name!r}"


@dataclass(frozen=True)
class Prediction:
    """Outputs for a batch of N images; rows of classes/scores are sorted best first."""

    name: str
    version: int
    classes: list[list[str]]
    scores: np.ndarray  # float32 [N, C], descending per row
    probabilities: np.ndarray  # float32 [N, C], in class-index order


@dataclass(frozen=True)
class VersionStatus:
    """One row of GetModelStatus: a version, its state name and any load error."""

    version: int
    state: str
    error: str = ""


class ModelServerError(Exception):
    """The model server answered with an error the user cannot fix (502)."""

    http_status = 502
    kind = "model_error"


class ModelServerUnavailable(ModelServerError):
    """The model server cannot be reached, or has nothing to serve yet (503)."""

    http_status = 503
    kind = "model_unavailable"


class ModelServerTimeout(ModelServerUnavailable):
    """The model server did not answer within the proxy's deadline: a gateway timeout (504),
    as TF Serving's own REST API answers a run past its deadline. Still "unavailable" to
    callers that only ask whether the server can serve (readiness)."""

    http_status = 504
    kind = "model_timeout"


# TF Serving's words when its batching queue is overloaded (the local server's are the same,
# modelserver/batching.py): full (UNAVAILABLE, REST 503), or a request that waited there past
# its deadline (RESOURCE_EXHAUSTED, REST 429).
QUEUE_FULL = "batch scheduling queue"
QUEUE_WAIT = "waiting in batching queue"
# An unknown version label is INVALID_ARGUMENT (REST 400) in TF Serving, not NOT_FOUND
# (server_core.cc GetModelVersionForLabel): only its words say the model is not served so.
UNKNOWN_LABEL = "Unrecognized servable version label"


def overloaded(message: str) -> ModelServerUnavailable | None:
    """A busy model server is the service's state, not a refusal of this request: a 503 to
    retry, or the 504 of a run that waited too long; None for any other message."""
    if QUEUE_FULL in message:
        return ModelServerUnavailable(f"the model server is overloaded ({message})")
    if QUEUE_WAIT in message:
        return ModelServerTimeout(f"the model server did not answer in time: busy ({message})")
    return None


class ModelNotFound(ModelServerError):
    """The requested model, version or label is not being served (404)."""

    http_status = 404
    kind = "not_found"


class ModelClient(abc.ABC):
    """The calls the proxy makes; one instance per process, safe to share between threads."""

    @abc.abstractmethod
    def predict(self, pixels: np.ndarray, target: ModelTarget) -> Prediction:
        """Classify uint8 images [N,32,32,3] with the `pixels` signature."""

    @abc.abstractmethod
    def status(self, name: str) -> list[VersionStatus]:
        """Every version the server knows for `name`, newest first."""

    @abc.abstractmethod
    def resolve_version(self, target: ModelTarget) -> int:
        """The version number that `target` (a label, or latest) points at right now."""

    def close(self) -> None:  # noqa: B027 - optional hook, most clients hold nothing
        """Release connections."""


def class_names_in_index_order(prediction: Prediction) -> list[str]:
    """Recover the model's class list from one prediction row.

    `classes` is sorted by score; `probabilities` is in index order. A stable descending
    argsort of the probabilities gives the index behind each sorted position (ties keep the
    lower index first, as tf.math.top_k does).
    """
    order = np.argsort(-prediction.probabilities[0], kind="stable")
    names = [""] * len(order)
    for rank, index in enumerate(order):
        names[int(index)] = prediction.classes[0][rank]
    return names

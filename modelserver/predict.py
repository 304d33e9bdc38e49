"""The Predict call shared by the gRPC and REST front ends: pick the servable, check the
request against the signature, run it (through the batcher when batching is on)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from modelserver.deadlines import Deadline
from modelserver.metrics import Metrics
from modelserver.servable import Servable, Signature, validate_inputs
from modelserver.status import invalid_argument
from modelserver.versions import VersionManager


@dataclass(frozen=True)
class PredictResult:
    servable: Servable
    signature: Signature
    outputs: dict[str, np.ndarray]  # in signature output order, filtered


class Predictor:
    def __init__(self, manager: VersionManager, metrics: Metrics) -> None:
        self.manager = manager
        self.metrics = metrics

    def servable(self, name: str, version: int | None, label: str | None) -> Servable:
        """Resolves a ModelSpec; the empty-name check is server_core.cc's."""
        if not name:
            raise invalid_argument("ModelSpec has no name specified.")
        return self.manager.lookup(name, version, label)

    def predict(
        self,
        servable: Servable,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        deadline: Deadline = None,
    ) -> PredictResult:
        """servables/tensorflow/predict_util.cc RunPredict, minus the session; `deadline` plays
        the part of RunOptions.timeout_in_ms (modelserver.deadlines)."""
        validate_inputs(signature, inputs)
        aliases = _output_aliases(signature, output_filter)
        started = time.perf_counter()
        if servable.batcher is not None:
            outputs = servable.batcher.submit(signature, inputs, deadline)
        else:
            outputs = servable.run(signature, inputs, deadline)
        self.metrics.runtime_latency.observe(
            (time.perf_counter() - started) * 1e6, servable.name, "Predict", "TF1"
        )
        return PredictResult(servable, signature, {alias: outputs[alias] for alias in aliases})


def _output_aliases(signature: Signature, output_filter: Sequence[str]) -> list[str]:
    if not output_filter:
        return signature.output_names
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in signature.definition.outputs:
            raise invalid_argument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be "
                f"in the set {{{','.join(signature.output_names)}}}."
            )
        if alias in seen:
            raise invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return list(output_filter)

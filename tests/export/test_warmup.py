"""The warm-up file is TF Serving's format and its requests run against the model."""

from __future__ import annotations

import pytest

tf = pytest.importorskip("tensorflow")

from export.warmup import read_warmup_requests  # noqa: E402


def test_warmup_records_parse_and_replay(tiny_model_base):
    version = tiny_model_base / "1"
    logs = read_warmup_requests(version / "assets.extra" / "tf_serving_warmup_requests")
    requests = [log.predict_log.request for log in logs]
    assert all(log.WhichOneof("log_type") == "predict_log" for log in logs)
    assert {r.model_spec.signature_name for r in requests} == {"serving_default", "pixels"}
    assert all(r.model_spec.name == "cifar10" for r in requests)
    loaded = tf.saved_model.load(str(version))
    for request in requests:
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        out = loaded.signatures[request.model_spec.signature_name](**inputs)
        assert out["probabilities"].shape == (1, 10)

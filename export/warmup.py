"""TF Serving warm-up records: one Predict request per signature, replayed before AVAILABLE.

TF Serving reads ``assets.extra/tf_serving_warmup_requests``, a TFRecord file of
``PredictionLog`` protos, and runs each request once before it marks a version AVAILABLE, so
the first real request does not pay for graph initialisation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from export.config import (
    BYTES_INPUT,
    IMAGE_SIZE,
    MODEL_NAME,
    PIXELS_INPUT,
    PIXELS_SIGNATURE,
    SERVING_SIGNATURE,
    WARMUP_FILE,
)


def _sample_jpeg() -> bytes:
    """A small non-square photo-like JPEG, so warm-up also exercises crop and resize."""
    gradient = np.linspace(0, 255, 48 * 40 * 3).reshape(40, 48, 3).astype(np.uint8)
    return tf.io.encode_jpeg(gradient).numpy()


def warmup_requests(model_name: str = MODEL_NAME) -> list[predict_pb2.PredictRequest]:
    """One `serving_default` request (a JPEG) and one `pixels` request (a black image)."""

    def request(signature: str, name: str, value: np.ndarray) -> predict_pb2.PredictRequest:
        req = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
        )
        req.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        return req

    pixels = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    return [
        request(SERVING_SIGNATURE, BYTES_INPUT, np.array([_sample_jpeg()], dtype=object)),
        request(PIXELS_SIGNATURE, PIXELS_INPUT, pixels),
    ]


def write_warmup_requests(saved_model_dir: str | Path, model_name: str = MODEL_NAME) -> Path:
    path = Path(saved_model_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for req in warmup_requests(model_name):
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=req)
            )
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(path: str | Path) -> list[prediction_log_pb2.PredictionLog]:
    """Parse a warm-up file back, as a check that it is what TF Serving reads (tests use it;
    the local model server replays the file with its own reader, modelserver/servable.py)."""
    return [
        prediction_log_pb2.PredictionLog.FromString(record.numpy())
        for record in tf.data.TFRecordDataset(str(path))
    ]

"""TFLite models for mobile: float32 and int8 post-training quantised, with their accuracy.

Both take float32 pixels 0..255 [N, 32, 32, 3] (RGB, the same centre-crop + resize as
`serving_default` is the caller's job) and return softmax probabilities [N, C] in class-index
order; no TTA (a phone pays for every extra pass). The int8 model quantises weights and
activations, calibrated on training images; ops without an int8 kernel stay float.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from export.config import IMAGE_SIZE

CALIBRATION_IMAGES = 500
TFLITE_DIR = "tflite"
FILE_NAMES = {"float32": "model_float32.tflite", "int8": "model_int8.tflite"}


def _probabilities_fn(model: keras.Model):
    spec = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32, name="pixels")

    @tf.function(input_signature=[spec])
    def probabilities(pixels: tf.Tensor) -> tf.Tensor:
        return tf.nn.softmax(tf.cast(model(pixels, training=False), tf.float32), axis=-1)

    # Frozen to constants: the converter leaves Keras 3 variables as READ_VARIABLE ops that the
    # interpreter cannot resolve (NaN outputs, failed int8 calibration).
    return convert_variables_to_constants_v2(probabilities.get_concrete_function())


def convert(model: keras.Model, calibration: np.ndarray | None = None) -> bytes:
    """A .tflite flatbuffer: float32 without `calibration`, int8 with it (uint8 images)."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions([_probabilities_fn(model)])
    if calibration is not None:

        def representative() -> Iterator[list[np.ndarray]]:
            for image in calibration:
                yield [image[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]
    return converter.convert()


def tflite_probabilities(flatbuffer: bytes, images: np.ndarray, batch_size: int = 250):
    """Run a .tflite model over uint8 images [N, 32, 32, 3] -> probabilities [N, C]."""
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].astype(np.float32)
        interpreter.resize_tensor_input(input_index, batch.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()
        out.append(interpreter.get_tensor(output_index).copy())
    return np.concatenate(out)


def export_tflite(
    model: keras.Model,
    out_dir: str | Path,
    calibration: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
) -> dict:
    """Write both models into `out_dir`/tflite/ with report.json; return the report."""
    folder = Path(out_dir) / TFLITE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    flatbuffers = {"float32": convert(model), "int8": convert(model, calibration)}
    report = {"test_images": len(test_labels), "calibration_images": len(calibration)}
    for kind, flatbuffer in flatbuffers.items():
        (folder / FILE_NAMES[kind]).write_bytes(flatbuffer)
        predicted = tflite_probabilities(flatbuffer, test_images).argmax(1)
        report[kind] = {
            "file": f"{TFLITE_DIR}/{FILE_NAMES[kind]}",
            "bytes": len(flatbuffer),
            "test_accuracy": float(np.mean(predicted == test_labels)),
        }
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def calibration_sample(train_images: np.ndarray, count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """A fixed random sample of training images for int8 calibration."""
    rng = np.random.default_rng(0)
    return train_images[rng.choice(len(train_images), min(count, len(train_images)), replace=False)]

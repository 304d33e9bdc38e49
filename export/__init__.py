"""Export: finished run folder -> numbered SavedModel version (`python -m export`, `make export`).

Module map:
  __main__.py    the CLI
  export_run.py  one export: load in serving form, choose the TTA level, write, publish, report
  savedmodel.py  the SavedModel: the `serving_default` (encoded images) and `pixels`
                 signatures, assets
  image_graph.py the in-graph decoding of `serving_default`: limits, formats, crop, resize
  warmup.py      the TF Serving warm-up records written beside it
  info.py        assets/model_info.json: what a version was exported from, read without TensorFlow
  tta.py         which test-time augmentation to bake in (--tta auto)
  publish.py     atomic numbered versions in a base path, --keep, rolled-back numbers
  tflite.py      float32 and int8 TFLite models with their accuracy (--tflite)
  evaluation.py  a SavedModel's accuracy, and its agreement with the Keras model
  encoded.py     the original image files the `serving_default` figures are measured on
  model_card.py  `python -m export.model_card`: MODEL_CARD.md from a run and its version
  predict.py     `python -m export.predict photo.jpg`: top-3 classes from a SavedModel
  untrained.py   a small untrained model with real signatures, for tests and the proxy bench
  config.py      names (DESIGN.md's contract), limits and defaults of the export area
"""

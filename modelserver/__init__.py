"""A local, TF-Serving-compatible model server (`python -m modelserver`).

Production runs the real tensorflow/serving; this stands in for it on a laptop and in CI with the
same flags, config files (serving_config/), gRPC services, REST paths, JSON and errors. The
behaviour it copies is documented, with sources, in ../shared/reference/tfserving-behaviour.md
(comments cite it as "reference §N").

Module map (one job each):
  __main__.py   flags -> ModelServer; signal handling
  flags.py      ServerOptions: every flag, tensorflow_model_server's names
  config_files.py  the text-proto config files (models, batching, monitoring), base-path mapping
  server.py     wiring: version manager + gRPC + REST; config-file polling
  versions.py   base-path polling, version policies, load/unload, routing table, labels
  version_names.py  which base-path children are versions (TF Serving's rule; no TensorFlow)
  servable.py   one loaded SavedModel version: signatures, direct calls, warm-up, input checks
  batching.py   --enable_batching: merges concurrent requests into one model call
  deadlines.py  gRPC deadline / REST timeout carried into the model run (cancelled when past)
  predict.py    the Predict call shared by gRPC and REST
  grpc_api.py   PredictionService + ModelService (+ grpc.health.v1 when enabled)
  rest_api.py   REST routes and the threaded HTTP server
  rest_json.py  JSON <-> tensors (json_tensor.cc rules and messages)
  tensors.py    TensorProto <-> numpy
  metrics.py    Prometheus page with TF Serving's metric names
  status.py     ServingError: one status code, shown as gRPC code and HTTP status
  protos/       BatchingParameters / MonitoringConfig .proto copies (compiled: protos_gen/)

Local extensions (not in tensorflow_model_server): --model_base_path_prefix_map (or env
MODELSERVER_BASE_PATH_PREFIX_MAP), --max_request_bytes, --host, --rest_idle_timeout_seconds;
fractional poll intervals.
The real binary's other flags (GPU, TLS, TFLite...) are accepted without effect, with a
warning (config.INERT_FLAGS), so its command lines run here unchanged.
"""

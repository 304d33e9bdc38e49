"""Hand-written .proto subsets of TensorFlow Serving's API; `python -m proxy.protos.build`
compiles them into proxy/protos_gen/ (committed, so nobody needs grpcio-tools to run)."""

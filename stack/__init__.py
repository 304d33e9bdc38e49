"""The local stack: the model server and the proxy started, watched and stopped together
(`serve.py`, `make serve`), and the process code the benchmarks and tests share with it
(`processes.py`)."""

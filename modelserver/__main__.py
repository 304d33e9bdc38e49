"""`python -m modelserver`: a local stand-in for tensorflow_model_server (see server.py)."""

from __future__ import annotations

import logging
import os
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # before TensorFlow is imported
    logging.basicConfig(
        level=os.environ.get("MODELSERVER_LOG_LEVEL", "INFO"),
        format="%(asctime)s.%(msecs)03d %(levelname).1s %(name)s] %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
    if argv is None:
        argv = sys.argv[1:]
    if "--version" in argv:
        import tensorflow as tf

        print(f"TensorFlow ModelServer: modelserver (local)\nTensorFlow Library: {tf.__version__}")
        return 0

    from modelserver.config import parse_flags

    options = parse_flags(argv)  # before TensorFlow loads: --help and flag errors come at once

    from modelserver.server import ModelServer, configure_tensorflow
    from modelserver.status import ServingError

    configure_tensorflow(options)
    server = None
    try:
        server = ModelServer(options)
        signal.signal(signal.SIGTERM, lambda *_: server.stop())
        signal.signal(signal.SIGINT, lambda *_: server.stop())
        server.start()
    except ServingError as error:
        logging.getLogger("modelserver").error("%s: %s", error.code.name, error.message)
        if server is not None:
            server.stop()
        return 1
    server.wait()
    return 0


if __name__ == "__main__":
    code = main()
    # Past the stop's grace, requests still running are abandoned (ModelServer.stop): the
    # interpreter's exit would otherwise join their threads and keep the process, and every
    # connection made to it meanwhile, waiting for them.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

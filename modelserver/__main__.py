"""`python -m modelserver`: a local stand-in for tensorflow_model_server (see server.py)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

SHUTDOWN_SIGNALS = {signal.SIGTERM, signal.SIGINT}


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

    from modelserver.flags import parse_flags

    options = parse_flags(argv)  # before TensorFlow loads: --help and flag errors come at once
    from modelserver.cpu_math import apply_fpmath

    logging.getLogger("modelserver").info(apply_fpmath())  # before TensorFlow runs an op
    # Before any other thread exists (TensorFlow's and gRPC's come with the imports below), so
    # that every thread inherits the block and only the "signals" thread takes them. A Python
    # handler runs on the main thread only, when it next runs Python code: a SIGTERM that the
    # kernel gave another thread went unhandled while the main thread slept, for good (about
    # one stop in three under load); and a handler that stops the server must not take the
    # locks of the code it interrupted.
    signal.pthread_sigmask(signal.SIG_BLOCK, SHUTDOWN_SIGNALS)

    from modelserver.server import ModelServer, configure_tensorflow
    from modelserver.status import ServingError

    configure_tensorflow(options)
    server = None
    try:
        server = ModelServer(options)
        signals = threading.Thread(target=_stop_on_signal, args=(server,), name="signals")
        signals.daemon = True  # it waits for a signal that may never come
        signals.start()
        server.start()
    except ServingError as error:
        logging.getLogger("modelserver").error("%s: %s", error.code.name, error.message)
        if server is not None:
            server.stop()
        return 1
    server.wait()
    return 0


def _stop_on_signal(server) -> None:
    signal.sigwait(SHUTDOWN_SIGNALS)
    server.stop()


if __name__ == "__main__":
    code = main()
    # Past the stop's grace, requests still running are abandoned (ModelServer.stop): the
    # interpreter's exit would otherwise join their threads and keep the process, and every
    # connection made to it meanwhile, waiting for them.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

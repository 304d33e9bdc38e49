"""Errors as TF Serving reports them: one canonical status code, shown as gRPC code and HTTP code.

Every layer raises `ServingError`; the gRPC and REST front ends translate it once, so both APIs
agree on codes and messages (reference §3.2, §4).
"""

from __future__ import annotations

import logging
import re

import grpc

# tensorflow_serving/model_servers/http_server.cc ToHTTPStatusCode (reference §3.2).
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

# Codes by their numeric value, for tensorflow.error.Code fields in protos and TF exceptions.
_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}

_GRPC_MESSAGE_LIMIT = 1024  # model_servers/grpc_status_util.cc


class ServingError(Exception):
    """A request or load failure with the status code TF Serving would use."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return http_status(self.code)

    @property
    def grpc_message(self) -> str:
        """The message cut the way TF Serving cuts long gRPC error messages (reference §4)."""
        if len(self.message) <= _GRPC_MESSAGE_LIMIT:
            return self.message
        return self.message[:_GRPC_MESSAGE_LIMIT] + "...TRUNCATED"

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


def http_status(code: grpc.StatusCode) -> int:
    return _HTTP_STATUS.get(code, 500)


def code_from_number(number: int) -> grpc.StatusCode:
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)


def handler_error(error: Exception, log: logging.Logger, what: str) -> ServingError:
    """What a handler's exception answers: its own status, or, for a bug in this server (any
    other exception, logged with its traceback), INTERNAL, the code TF Serving's own
    unexpected failures carry (never grpcio's UNKNOWN "Exception calling application")."""
    if isinstance(error, ServingError):
        return error
    log.exception("%s failed", what)
    return ServingError(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")


def kernel_message(message: str) -> str:
    """The kernel's own text, as TF Serving's session run reports it, without the Python
    eager wrapper ("Graph execution error: ... Detected at node ...", "[Op:__inference_...]")."""
    if message.startswith("Graph execution error:"):
        marker = "<stack traces unavailable>\n"
        message = message.split(marker, 1)[1] if marker in message else message.split("\n\n", 1)[-1]
    return re.sub(r"\s*\[Op:[^\]]*\]\s*$", "", message).strip()


# tf.saved_model.load's advice when the variables file is missing, which is about distributed
# devices; here the file is missing because the version folder is incomplete.
_IO_DEVICE_HINT = "You may be trying to load on a different device"


def from_load_exception(error: BaseException) -> ServingError:
    """A failed version load's status: from_exception, and the codes TensorFlow's own loader
    gives where a Python error stands for them (only here: at request time a Python
    IndexError is a bug, UNKNOWN)."""
    if isinstance(error, PermissionError):
        return ServingError(grpc.StatusCode.PERMISSION_DENIED, str(error))
    # TF's Python bindings raise an OUT_OF_RANGE status as IndexError (pybind11_status.h),
    # e.g. reading a truncated variables shard.
    if isinstance(error, IndexError):
        return ServingError(grpc.StatusCode.OUT_OF_RANGE, str(error))
    return from_exception(error)


def from_exception(error: BaseException) -> ServingError:
    """Maps TensorFlow / Python failures (model load, graph run) to a status."""
    if isinstance(error, ServingError):
        return error
    error_code = getattr(error, "error_code", None)  # tf.errors.OpError
    if isinstance(error_code, int):
        message = kernel_message(getattr(error, "message", str(error)))
        return ServingError(code_from_number(error_code), message)
    if isinstance(error, FileNotFoundError):
        return ServingError(grpc.StatusCode.NOT_FOUND, str(error).split(_IO_DEVICE_HINT)[0].strip())
    if type(error).__name__ == "DecodeError":  # google.protobuf.message.DecodeError
        return ServingError(grpc.StatusCode.DATA_LOSS, f"Can't parse SavedModel: {error}")
    if isinstance(error, (ValueError, TypeError)):
        return ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(error))
    return ServingError(grpc.StatusCode.UNKNOWN, f"{type(error).__name__}: {error}")

"""Model server clients: one interface (`ModelClient`), REST and gRPC implementations."""

from proxy.client.base import (
    ModelClient,
    ModelNotFound,
    ModelServerError,
    ModelServerTimeout,
    ModelServerUnavailable,
    ModelTarget,
    Prediction,
    VersionStatus,
    class_names_in_index_order,
)
from proxy.config import ProxyConfig

__all__ = [
    "ModelClient",
    "ModelNotFound",
    "ModelServerError",
    "ModelServerTimeout",
    "ModelServerUnavailable",
    "ModelTarget",
    "Prediction",
    "VersionStatus",
    "class_names_in_index_order",
    "make_client",
]


def make_client(config: ProxyConfig) -> ModelClient:
    """The client for `config.protocol`; imports only the transport it needs."""
    if config.protocol == "rest":
        from proxy.client.rest_client import RestClient

        return RestClient(config.rest_url, config.timeout_s)
    from proxy.client.grpc_client import GrpcClient

    return GrpcClient(config.grpc_address, config.timeout_s)

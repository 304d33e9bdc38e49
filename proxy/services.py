"""The per-app objects the views share (config, model client, metrics, small caches)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from flask import current_app

from proxy.client import ModelClient, ModelServerError, ModelTarget
from proxy.config import ProxyConfig
from proxy.metrics import Metrics


@dataclass
class Services:
    """Created once per app by `create_app`, reached from views through `services()`."""

    config: ProxyConfig
    client: ModelClient
    metrics: Metrics
    class_names: dict[int, list[str]] = field(default_factory=dict)  # by model version
    lock: threading.Lock = field(default_factory=threading.Lock)


def services() -> Services:
    """The Services of the app handling the current request."""
    return current_app.extensions["proxy"]


def default_target(config: ProxyConfig) -> ModelTarget:
    return ModelTarget(config.model_name, config.default_version, config.default_label)


def available_versions(versions: list) -> list[int]:
    """The numbers of the versions that answer requests (the model server's VersionStatus)."""
    return [v.version for v in versions if v.state == "AVAILABLE"]


def resolve_default(svc: Services, available: list[int]) -> tuple[int | None, str | None]:
    """The AVAILABLE version a request without ?version or ?label goes to, or why there is
    none: what /readyz reports and the page's badge shows (during a canary, not the newest)."""
    target = default_target(svc.config)
    if not available:
        return None, f"model {target.name!r} has no AVAILABLE version"
    if target.version is not None:
        if target.version in available:
            return target.version, None
        return None, f"the default version {target.version} (MODEL_VERSION) is not AVAILABLE"
    if not target.label:  # latest = the highest AVAILABLE version: no second call (readyz)
        return max(available), None
    try:
        return svc.client.resolve_version(target), None
    except ModelServerError as exc:
        return None, f"the default label {target.label!r} (MODEL_LABEL) does not resolve: {exc}"

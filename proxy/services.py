"""The per-app objects the views share (config, model client, metrics, small caches)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from flask import current_app

from proxy.client import ModelClient
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

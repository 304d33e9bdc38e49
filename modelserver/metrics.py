"""Prometheus metrics with TF Serving's names, labels and text layout (reference §5).

Hand-rolled instead of prometheus_client because TF Serving's page differs from that library's
conventions (`:tensorflow:serving:request_count` without a `_total` suffix, `_sum`/`_count`
lines with braces even when there are no labels: util/prometheus_exporter.cc).
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Sequence


def prometheus_name(name: str) -> str:
    """`/tensorflow/serving/request_count` -> `:tensorflow:serving:request_count`."""
    return re.sub(r"[^a-zA-Z0-9_]", ":", name)


def _escape(value: str) -> str:
    # The text format's three escapes. TF Serving's exporter escapes only the first two, and a
    # request for a model named "a\nb" then breaks its whole page for the scraper; this page
    # stays readable (one label value differs from TF Serving's, on an error path only).
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_number(value: float) -> str:
    return f"{value:g}"  # absl::StrCat(double): six significant digits


def exponential_buckets(scale: float, growth: float, count: int) -> list[float]:
    """monitoring::Buckets::Exponential limits (the last bucket runs to +Inf)."""
    return [scale * growth**i for i in range(count)]


class Counter:
    def __init__(self, name: str, labels: Sequence[str]) -> None:
        self.name, self.labels = prometheus_name(name), tuple(labels)
        self._values: dict[tuple[str, ...], int] = {}
        self._lock = threading.Lock()

    def inc(self, *label_values: str, amount: int = 1) -> None:
        with self._lock:
            self._values[label_values] = self._values.get(label_values, 0) + amount

    def render(self) -> list[str]:
        lines = [f"# TYPE {self.name} counter"]
        with self._lock:
            for values, count in sorted(self._values.items()):
                lines.append(f"{self.name}{{{_labels(self.labels, values)}}} {count}")
        return lines


class Histogram:
    def __init__(self, name: str, labels: Sequence[str], limits: list[float]) -> None:
        self.name, self.labels, self.limits = prometheus_name(name), tuple(labels), limits
        self._points: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, *label_values: str) -> None:
        index = bisect.bisect_right(self.limits, value)
        with self._lock:
            buckets, total = self._points.setdefault(
                label_values, ([0] * (len(self.limits) + 1), [0.0])
            )
            buckets[index] += 1
            total[0] += value

    def render(self) -> list[str]:
        lines = [f"# TYPE {self.name} histogram"]
        with self._lock:
            for values, (buckets, total) in sorted(self._points.items()):
                labels = _labels(self.labels, values)
                prefix = f"{self.name}_bucket{{{labels}{',' if labels else ''}"
                cumulative = 0
                for i, count in enumerate(buckets):
                    cumulative += count
                    limit = _format_number(self.limits[i]) if i < len(self.limits) else "+Inf"
                    lines.append(f'{prefix}le="{limit}"}} {cumulative}')
                lines.append(f"{self.name}_sum{{{labels}}} {_format_number(total[0])}")
                lines.append(f"{self.name}_count{{{labels}}} {cumulative}")
        return lines


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    return ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))


class Metrics:
    """The metrics this server records (names from servables/tensorflow/util.cc and
    batching/batching_session.cc; `batching:*` follows TF's BatchFunction op metrics)."""

    def __init__(self) -> None:
        latency = exponential_buckets(10, 1.8, 33)
        self.request_count = Counter("/tensorflow/serving/request_count", ["model_name", "status"])
        self.request_latency = Histogram(
            "/tensorflow/serving/request_latency", ["model_name", "API", "entrypoint"], latency
        )
        self.runtime_latency = Histogram(
            "/tensorflow/serving/runtime_latency", ["model_name", "API", "runtime"], latency
        )
        # Counted by TF Serving for Classify/Regress/MultiInference (tf.Examples), which answer
        # UNIMPLEMENTED here: both stay empty, but their TYPE lines are on the page as there.
        self.example_counts = Histogram(
            "/tensorflow/serving/request_example_counts", ["model"], exponential_buckets(1, 2, 15)
        )
        self.example_count_total = Counter(
            "/tensorflow/serving/request_example_count_total", ["model"]
        )
        self.queuing_latency = Histogram(
            "/tensorflow/serving/batching_session/queuing_latency",
            ["thread_pool_name"],
            exponential_buckets(100, 1.2, 52),
        )
        self.wrapped_run_count = Counter(
            "/tensorflow/serving/batching_session/wrapped_run_count", []
        )
        sizes = exponential_buckets(1, 2, 14)
        self.processed_batch_size = Histogram(
            "/tensorflow/serving/batching/processed_batch_size", ["model_name", "op_name"], sizes
        )
        self.padding_size = Histogram(
            "/tensorflow/serving/batching/padding_size", ["model_name", "op_name"], sizes
        )
        self.input_batch_size = Histogram(
            "/tensorflow/serving/batching/input_batch_size", ["model_name", "op_name"], sizes
        )
        self._all = [
            self.request_count, self.request_latency, self.runtime_latency, self.example_counts,
            self.example_count_total, self.queuing_latency, self.wrapped_run_count,
            self.processed_batch_size, self.padding_size, self.input_batch_size,
        ]  # fmt: skip

    def render(self) -> str:
        """The Prometheus page (Content-Type text/plain)."""
        lines: list[str] = []
        for metric in self._all:
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"

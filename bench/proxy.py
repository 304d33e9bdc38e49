"""Proxy benchmark: the whole path browser -> proxy -> model server, against a naive baseline.

    python -m bench.proxy                  # the real run: shipped model + runs/default
    python -m bench.proxy --quick          # tiny untrained model, few requests (checks it works)

Measures in one run, beside the CPU model and its SIMD flags:
  * proxy start-up (import + create_app in a fresh interpreter) and its peak RSS, next to what
    importing TF Serving's own API stubs would cost;
  * end-to-end latency of one 640x480 JPEG upload at concurrency 1 (p50/p90/p99, targets
    p50 <= 15 ms, p99 <= 40 ms) and throughput at concurrency 16 (zero errors required),
    for the proxy's gRPC client and its REST client (gunicorn, gthread workers, as `make serve`);
  * RSS of every gunicorn worker (target <= 150 MB);
  * the naive baseline: one Flask process that loads the Keras model and calls
    `model.predict` per request (target: the proxy does >= 3x its throughput).

The load generator posts a pre-built multipart body over keep-alive `http.client` connections
from threads, so the clients cost little CPU next to the servers on a small machine.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.procmem import rss_mb
from bench.soak_load import MULTIPART, multipart
from export.config import DEFAULT_BASE_PATH
from modelserver.cpu_math import choose_fpmath
from runtime.cpu import cpu_info, describe_cpu
from stack import processes
from stack.processes import children_of, free_port

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"p50_ms": 15.0, "p99_ms": 40.0, "rss_mb": 150.0, "startup_s": 1.0, "speedup": 3.0}


@dataclass
class LoadResult:
    """One configuration's figures."""

    name: str
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput_rps: float
    errors: int
    requests: int
    rss_mb: list[float]


# ---------- the request ----------


def sample_jpeg(size: tuple[int, int] = (640, 480)) -> bytes:
    """A 640x480 photo-like JPEG (smooth colour field + sensor-like noise, quality 90)."""
    rng = np.random.default_rng(0)
    field = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    array = np.asarray(field.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    array += rng.normal(0, 6, array.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# ---------- start-up ----------


def startup_cost(code: str, runs: int = 3) -> tuple[float, float]:
    """Median wall time of `python -c code` (interpreter included) and its peak RSS in MB
    (VmHWM: unlike ru_maxrss it is not inherited from the forking parent)."""
    times, peaks = [], []
    probe = (
        f"{code}\n"
        "import pathlib\n"
        "status = pathlib.Path('/proc/self/status').read_text().split('VmHWM:')[1]\n"
        "print(int(status.split()[0]))"
    )
    for _ in range(runs):
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
        )
        times.append(time.perf_counter() - started)
        peaks.append(int(out.stdout.split()[-1]) / 1024)  # kB -> MB
    return statistics.median(times), max(peaks)


# ---------- load generation ----------


def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    headers = {"Content-Type": MULTIPART}
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status, time.perf_counter() - started


def latency(port: int, path: str, body: bytes, count: int) -> list[float]:
    """Sequential requests on one keep-alive connection; seconds each (200s only)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    samples = []
    for _ in range(count):
        status, seconds = post(conn, path, body)
        if status == 200:
            samples.append(seconds)
    conn.close()
    return samples


def throughput(
    port: int, path: str, body: bytes, count: int, concurrency: int
) -> tuple[float, int]:
    """`count` requests from `concurrency` threads; (requests per second, errors)."""
    remaining = iter(range(count))
    lock = threading.Lock()
    errors = [0]

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if next(remaining, None) is None:
                    break
            try:
                status, _ = post(conn, path, body)
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            if status != 200:
                with lock:
                    errors[0] += 1
        conn.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(concurrency):
            pool.submit(worker)
    return count / (time.perf_counter() - started), errors[0]


def measure(name: str, port: int, path: str, args, pids: list[int]) -> LoadResult:
    body = multipart([("photo.jpg", sample_jpeg())])
    latency(port, path, body, args.warmup)
    samples = np.array(latency(port, path, body, args.requests)) * 1000
    rps, errors = throughput(port, path, body, args.throughput_requests, args.concurrency)
    missing = args.requests - len(samples)
    return LoadResult(
        name=name,
        p50_ms=float(np.percentile(samples, 50)) if len(samples) else float("nan"),
        p90_ms=float(np.percentile(samples, 90)) if len(samples) else float("nan"),
        p99_ms=float(np.percentile(samples, 99)) if len(samples) else float("nan"),
        throughput_rps=rps,
        errors=errors + missing,
        requests=args.requests + args.throughput_requests,
        rss_mb=[rss_mb(pid) for pid in pids],
    )


# ---------- the systems under test ----------


def run_proxy(
    protocol: str, stack: processes.Stack, args, log, model_server: subprocess.Popen
) -> LoadResult:
    env = processes.proxy_env(stack, tempfile.mkdtemp(prefix="bench-metrics-"))
    env.update(
        PROXY_PROTOCOL=protocol,
        GUNICORN_WORKERS=str(args.workers),
        GUNICORN_THREADS=str(args.threads),
    )
    proxy = processes.start(processes.proxy_command(), env, log)
    try:
        both = {"the model server": model_server, "the proxy": proxy}  # ready needs both
        processes.wait_for(lambda: processes.proxy_ready(stack), both, "the proxy")
        workers = children_of(proxy.pid)
        return measure(f"proxy, {protocol} client", stack.proxy_port, "/api/predict", args, workers)
    finally:
        processes.stop(proxy)
        shutil.rmtree(env["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def run_baseline(run_dir: Path, args, log) -> LoadResult:
    port = free_port()
    command = [sys.executable, "-m", "bench.proxy", "--baseline-server", str(port), "--run-dir"]
    baseline = processes.start([*command, str(run_dir)], None, log)
    try:
        url = f"http://127.0.0.1:{port}/ready"
        processes.wait_for(
            lambda: processes.get_json(url) is not None, {"the baseline": baseline}, "the baseline"
        )
        return measure("naive Flask + model.predict", port, "/predict", args, [baseline.pid])
    finally:
        processes.stop(baseline)


def serve_baseline(port: int, run_dir: Path) -> None:
    """The naive way: one Flask process, Keras in-process, model.predict per request."""
    import keras
    from flask import Flask, jsonify, request

    from training.run_model import load_for_inference

    model, meta = load_for_inference(run_dir)
    names = meta["class_names"]
    app = Flask("naive_baseline")

    @app.get("/ready")
    def ready():
        return jsonify(ready=True)

    @app.post("/predict")
    def predict():
        image = Image.open(request.files["file"].stream).convert("RGB").resize((32, 32))
        logits = model.predict(np.asarray(image, np.float32)[None], verbose=0)
        probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits))[0]
        top = np.argsort(-probabilities)[:3]
        return jsonify(
            top=[{"label": names[i], "probability": float(probabilities[i])} for i in top]
        )

    app.run(host="127.0.0.1", port=port, threaded=True)


# ---------- report ----------


def report(results: list[LoadResult], startup: dict, cpu: str, served: str, args) -> str:
    lines = [
        f"CPU: {cpu}",
        served,
        f"proxy: gunicorn {args.workers} workers x {args.threads} threads (gthread); "
        f"{args.requests} sequential + {args.throughput_requests} concurrent requests "
        f"(concurrency {args.concurrency}), 640x480 JPEG {len(sample_jpeg()) // 1024} KiB",
        "",
        f"start-up, fresh interpreter: proxy {startup['proxy_s']:.2f} s / "
        f"{startup['proxy_mb']:.0f} MB peak RSS; importing tensorflow_serving.apis.predict_pb2 "
        f"instead: {startup['tfs_s']:.2f} s / {startup['tfs_mb']:.0f} MB",
        "",
        f"| configuration | p50 ms, 1 client | p90 ms | p99 ms | req/s, {args.concurrency} clients "
        "| errors | RSS MB per process |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        rss = ", ".join(f"{x:.0f}" for x in r.rss_mb)
        lines.append(
            f"| {r.name} | {r.p50_ms:.1f} | {r.p90_ms:.1f} | {r.p99_ms:.1f} | "
            f"{r.throughput_rps:.1f} | {r.errors} | {rss} |"
        )
    baseline = next((r for r in results if r.name.startswith("naive")), None)
    best = max((r for r in results if r.name.startswith("proxy")), key=lambda r: r.throughput_rps)
    lines += ["", f"fastest proxy client: {best.name}"]
    lines.append(verdict("p50", best.p50_ms, TARGETS["p50_ms"], "ms"))
    lines.append(verdict("p99", best.p99_ms, TARGETS["p99_ms"], "ms"))
    lines.append(verdict("worker RSS", max(best.rss_mb), TARGETS["rss_mb"], "MB"))
    lines.append(verdict("start-up", startup["proxy_s"], TARGETS["startup_s"], "s"))
    if baseline:
        speedup = best.throughput_rps / baseline.throughput_rps
        ok = "OK " if speedup >= TARGETS["speedup"] else "MISS"
        lines.append(f"[{ok}] throughput {speedup:.1f}x the naive baseline (target >= 3x)")
    errors = sum(r.errors for r in results if r.name.startswith("proxy"))
    lines.append(f"[{'OK ' if errors == 0 else 'MISS'}] proxy errors: {errors} (target 0)")
    return "\n".join(lines)


def verdict(what: str, value: float, target: float, unit: str) -> str:
    ok = "OK " if value <= target else "MISS"
    return f"[{ok}] {what} {value:.2f} {unit} (target <= {target:g} {unit})"


# ---------- main ----------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.proxy", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny untrained model, few requests")
    parser.add_argument("--model-base-path", type=Path, default=ROOT / DEFAULT_BASE_PATH)
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=ROOT / "runs" / "default",
        help="run folder the naive baseline loads (model weights + meta.json)",
    )
    parser.add_argument(
        "--protocols", nargs="+", default=["grpc", "rest"], choices=["grpc", "rest"]
    )
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--requests", type=int, default=500, help="sequential requests (latency)")
    parser.add_argument("--throughput-requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--baseline-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.throughput_requests, args.warmup = 30, 64, 5
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.baseline_server:
        serve_baseline(args.baseline_server, args.run_dir)
        return 0
    mode, why = choose_fpmath(dict(os.environ), cpu_info()["flags"])  # what the server picks
    cpu = f"{describe_cpu()}; the model server's oneDNN float32 math: {mode} ({why})"
    print(f"CPU: {cpu}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    run_dir, base = args.run_dir, args.model_base_path
    if args.quick:
        from export.untrained import write_untrained_run

        run_dir, base = write_untrained_run(workdir)
    startup = measure_startup()
    stack = processes.Stack(base.resolve(), free_port(), free_port(), free_port(), "127.0.0.1")
    results = []
    with (workdir / "servers.log").open("w") as log:
        model_server = processes.start(stack.model_server_command(), None, log)
        try:
            processes.wait_for(
                lambda: processes.model_available(stack),
                {"the model server": model_server},
                "the model server",
            )
            newest = processes.available_versions(stack.rest_port)[-1]
            served = f"served: {base}, version {newest}; the naive baseline: weights of {run_dir}"
            print(served, flush=True)
            for protocol in args.protocols:
                results.append(run_proxy(protocol, stack, args, log, model_server))
                print(results[-1], flush=True)
        finally:
            processes.stop(model_server)  # the baseline runs alone, as it would in production
        if not args.no_baseline:
            results.append(run_baseline(run_dir, args, log))
            print(results[-1], flush=True)
    print()
    print(report(results, startup, cpu, served, args))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "cpu": cpu,
                    "served": served,
                    "startup": startup,
                    "results": [asdict(r) for r in results],
                },
                indent=2,
            )
        )
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def measure_startup() -> dict:
    proxy_s, proxy_mb = startup_cost("from proxy.app import create_app; create_app()")
    tfs_s, tfs_mb = startup_cost("from tensorflow_serving.apis import predict_pb2", runs=1)
    return {"proxy_s": proxy_s, "proxy_mb": proxy_mb, "tfs_s": tfs_s, "tfs_mb": tfs_mb}


if __name__ == "__main__":
    sys.exit(main())

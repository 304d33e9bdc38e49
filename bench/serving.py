"""Model-server benchmark: latency and throughput of `python -m modelserver` on this machine.

    python -m bench.serving                      # the real run (quiet machine, a few minutes)
    python -m bench.serving --quick              # tiny settings, to check that it works

Measures, in one run and beside the CPU model and its flags:
  * the in-process ceiling: the SavedModel's `pixels` signature called directly at batch 256
    (and batch 1), in a separate process with the server's TF thread settings;
  * single-image latency p50/p99, one blocking client, over gRPC and REST, through `pixels`
    and `serving_default` (a JPEG), and gRPC `pixels` once more from the asyncio client below;
  * gRPC throughput (images/s) with 1, 8 and 32 concurrent clients, batching off and on.

The server and the ceiling run in the same oneDNN math mode, chosen as `python -m modelserver`
chooses it (modelserver/cpu_math.py: bfloat16 on a CPU with AMX); the report prints it.

Load generation is kept cheap so that, on 2 cores shared with the server, the clients are not
the bottleneck: requests are serialised once up front and sent as raw bytes through a generic
gRPC method (client processes import neither TensorFlow nor the protos), and concurrency comes
from asyncio coroutines inside a couple of `spawn`ed processes rather than from threads.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import multiprocessing as mp
import queue
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from export.config import DEFAULT_BASE_PATH, MODEL_NAME
from modelserver.cpu_math import apply_fpmath
from runtime.cpu import describe_cpu
from stack import processes

ROOT = Path(__file__).resolve().parents[1]
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"


@dataclass(frozen=True)
class Settings:
    model_base_path: Path
    model_name: str
    batching_file: Path
    clients: tuple[int, ...]
    duration_s: float
    latency_requests: int
    ceiling_iterations: int
    client_processes: int
    intra_op: int
    inter_op: int


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serving", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model_base_path", type=Path, default=ROOT / DEFAULT_BASE_PATH)
    parser.add_argument("--model_name", default=MODEL_NAME)
    parser.add_argument(
        "--batching_parameters_file", type=Path, default=ROOT / "serving_config" / "batching.config"
    )
    parser.add_argument("--clients", default="1,8,32", help="concurrency levels")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per throughput cell")
    parser.add_argument("--latency_requests", type=int, default=300)
    parser.add_argument("--ceiling_iterations", type=int, default=20)
    parser.add_argument("--client_processes", type=int, default=2)
    parser.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0)
    parser.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny settings (a smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.latency_requests, args.ceiling_iterations = 1.5, 30, 2
    return Settings(
        model_base_path=args.model_base_path.resolve(),
        model_name=args.model_name,
        batching_file=args.batching_parameters_file.resolve(),
        clients=tuple(int(c) for c in args.clients.split(",")),
        duration_s=args.duration,
        latency_requests=args.latency_requests,
        ceiling_iterations=args.ceiling_iterations,
        client_processes=args.client_processes,
        intra_op=args.tensorflow_intra_op_parallelism,
        inter_op=args.tensorflow_inter_op_parallelism,
    )


# ----- machine description ----------------------------------------------------------------------


# ----- requests, serialised once ----------------------------------------------------------------


def sample_images(count: int) -> tuple[list, bytes]:
    """`count` 32x32 RGB images (uint8 nested lists) and one JPEG of the first."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels[0]).save(buffer, format="JPEG", quality=90)
    return pixels, buffer.getvalue()


def grpc_payloads(model: str, pixels, jpeg: bytes) -> dict[str, bytes]:
    """Serialised PredictRequests (one image each) for both signatures."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    def request(signature: str, name: str, tensor) -> bytes:
        message = predict_pb2.PredictRequest()
        message.model_spec.name = model
        message.model_spec.signature_name = signature
        message.inputs[name].CopyFrom(tensor)
        return message.SerializeToString()

    return {
        "pixels": request("pixels", "images", tf.make_tensor_proto(pixels[:1])),
        "serving_default": request(
            "serving_default", "image_bytes", tf.make_tensor_proto([jpeg], dtype=tf.string)
        ),
    }


def rest_payloads(pixels, jpeg: bytes) -> dict[str, bytes]:
    b64 = base64.b64encode(jpeg).decode()
    return {
        "pixels": json.dumps(
            {"signature_name": "pixels", "instances": pixels[:1].tolist()}
        ).encode(),
        "serving_default": json.dumps({"instances": [{"b64": b64}]}).encode(),
    }


# ----- the server under test --------------------------------------------------------------------


class Server(processes.ModelServer):
    """The model server under test, in its own process, started and stopped as `make serve`
    does it."""

    def __init__(self, settings: Settings, batching: bool) -> None:
        flags = [
            *processes.model_flags(settings.model_base_path, settings.model_name),
            "--file_system_poll_wait_seconds=0",
            f"--tensorflow_intra_op_parallelism={settings.intra_op}",
            f"--tensorflow_inter_op_parallelism={settings.inter_op}",
        ]
        if batching:
            flags += ["--enable_batching", f"--batching_parameters_file={settings.batching_file}"]
        super().__init__(flags)
        self.model = settings.model_name
        self.start()

    def wait_ready(self) -> float:
        """Seconds until the model's status answers (the ports open once it has loaded)."""
        return super().wait_ready(lambda port: bool(processes.model_states(port, self.model)))


# ----- clients ----------------------------------------------------------------------------------


def _grpc_client_process(target, payload, concurrency, duration, count, start_at, results) -> None:
    """Child process: `concurrency` coroutines sending the same serialised request."""
    import grpc

    async def run() -> tuple[int, int, list[float]]:
        async with grpc.aio.insecure_channel(target) as channel:
            call = channel.unary_unary(PREDICT_METHOD)  # bytes in, bytes out
            await call(payload, timeout=60)  # connect before the clock starts
            await asyncio.sleep(max(0.0, start_at - time.time()))
            end = time.time() + duration
            done, errors, latencies = 0, 0, []

            async def loop() -> None:
                nonlocal done, errors
                while (count and done + errors < count) or (not count and time.time() < end):
                    started = time.perf_counter()
                    try:
                        await call(payload, timeout=60)
                        ok = True
                    except grpc.RpcError:
                        ok = False
                    errors += not ok  # a failure is one whenever it came
                    if not count and time.time() > end:
                        break  # finished after the deadline: not part of the measured seconds
                    done += ok
                    if ok:
                        latencies.append(time.perf_counter() - started)

            await asyncio.gather(*(loop() for _ in range(concurrency)))
            return done, errors, latencies

    results.put(asyncio.run(run()))


def grpc_load(port: int, payload: bytes, clients: int, settings: Settings, count: int = 0):
    """(requests done, errors, latencies) of `clients` concurrent closed-loop clients."""
    context = mp.get_context("spawn")
    results = context.Queue()
    processes = max(1, min(settings.client_processes, clients))
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    start_at = time.time() + 3.0  # after every child has imported grpc and connected
    children = [
        context.Process(
            target=_grpc_client_process,
            args=(
                f"127.0.0.1:{port}",
                payload,
                share,
                settings.duration_s,
                count,
                start_at,
                results,
            ),
        )
        for share in shares
    ]
    for child in children:
        child.start()
    outcomes = []
    while len(outcomes) < len(children):
        try:
            outcomes.append(results.get(timeout=1))
        except queue.Empty:
            if any(child.exitcode not in (None, 0) for child in children):
                raise RuntimeError("a load-generator process failed") from None
    for child in children:
        child.join()
    latencies = [x for _, _, lat in outcomes for x in lat]
    return sum(o[0] for o in outcomes), sum(o[1] for o in outcomes), latencies


def _timed_calls(send, count: int) -> list[float]:
    """Seconds of each of `count` blocking calls of `send()`, after 5 that warm the connection."""
    latencies = []
    for index in range(count + 5):
        started = time.perf_counter()
        send()
        if index >= 5:
            latencies.append(time.perf_counter() - started)
    return latencies


def grpc_latencies(port: int, payload: bytes, count: int) -> list[float]:
    """One blocking client, as TF Serving's example clients call (`stub.Predict(request, 10)`).

    The asyncio client used for load adds its own event-loop time to every call; measured
    beside it in the same run (the "asyncio client" row of the report).
    """
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(PREDICT_METHOD)  # bytes in, bytes out
        return _timed_calls(lambda: call(payload, timeout=60), count)


def rest_latencies(port: int, path: str, body: bytes, count: int) -> list[float]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": "application/json"}

    def send() -> None:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"REST {response.status}")

    try:
        return _timed_calls(send, count)
    finally:
        connection.close()


def percentiles(latencies: list[float]) -> tuple[float, float]:
    """p50 and p99 in ms, numpy's interpolated percentiles as the other benchmarks take them."""
    import numpy as np

    p50, p99 = np.percentile(latencies, [50, 99])
    return float(p50) * 1e3, float(p99) * 1e3


# ----- in-process ceiling -----------------------------------------------------------------------


def _ceiling_process(path: str, intra: int, inter: int, iterations: int, results) -> None:
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    function = tf.saved_model.load(path).signatures["pixels"]
    rates = {}
    for batch in (1, 256):
        images = tf.constant(
            np.random.default_rng(0).integers(0, 256, (batch, 32, 32, 3), np.uint8)
        )
        for _ in range(3):
            function(images=images)
        runs = iterations if batch == 256 else iterations * 50
        started = time.perf_counter()
        for _ in range(runs):
            function(images=images)["probabilities"].numpy()
        rates[batch] = batch * runs / (time.perf_counter() - started)
    results.put(rates)


def in_process_ceiling(settings: Settings) -> dict[int, float]:
    from export.publish import latest_version_dir

    context = mp.get_context("spawn")
    results = context.Queue()
    version = str(latest_version_dir(settings.model_base_path))
    child = context.Process(
        target=_ceiling_process,
        args=(version, settings.intra_op, settings.inter_op, settings.ceiling_iterations, results),
    )
    child.start()
    rates = results.get(timeout=900)
    child.join()
    return rates


# ----- the run ----------------------------------------------------------------------------------


def measure_server(settings: Settings, batching: bool, grpc_requests, rest_requests) -> dict:
    server = Server(settings, batching)
    try:
        startup = server.wait_ready()
        figures: dict = {"startup_s": startup, "latency": {}, "throughput": {}}
        figures["versions"] = processes.available_versions(server.rest_port, server.model)
        for signature, payload in grpc_requests.items():
            latencies = grpc_latencies(server.grpc_port, payload, settings.latency_requests)
            figures["latency"][("gRPC", signature)] = percentiles(latencies)
        done, errors, latencies = grpc_load(
            server.grpc_port, grpc_requests["pixels"], 1, settings, settings.latency_requests
        )
        figures["latency"][("gRPC (asyncio client)", "pixels")] = percentiles(latencies)
        figures["errors"] = errors
        path = f"/v1/models/{settings.model_name}:predict"
        for signature, body in rest_requests.items():
            latencies = rest_latencies(server.rest_port, path, body, settings.latency_requests)
            figures["latency"][("REST", signature)] = percentiles(latencies)
        for clients in settings.clients:
            done, errors, _ = grpc_load(
                server.grpc_port, grpc_requests["pixels"], clients, settings
            )
            figures["throughput"][clients] = done / settings.duration_s
            figures["errors"] += errors
        return figures
    finally:
        server.stop()


def report(settings: Settings, ceiling: dict[int, float], off: dict, on: dict, fpmath: str) -> str:
    lines = [
        f"Model server benchmark ({time.strftime('%Y-%m-%d %H:%M')}), model "
        f"{settings.model_base_path}, version {_versions(off, on)}",
        f"CPU: {describe_cpu()}",
        fpmath,
        f"TF threads: intra {settings.intra_op or 'auto'}, inter {settings.inter_op or 'auto'}; "
        f"batching file {settings.batching_file.name}; {settings.duration_s:g} s per cell",
        "",
        f"In-process ceiling (pixels): batch 256 {ceiling[256]:.0f} img/s, "
        f"batch 1 {ceiling[1]:.0f} img/s",
        f"Start-up to AVAILABLE: {off['startup_s']:.1f} s (batching off), "
        f"{on['startup_s']:.1f} s (on)",
        "",
        "| latency, 1 client | batching off p50 / p99 ms | batching on p50 / p99 ms |",
        "|---|---|---|",
    ]
    for key in off["latency"]:
        (p50_off, p99_off), (p50_on, p99_on) = off["latency"][key], on["latency"][key]
        lines.append(
            f"| {key[0]} {key[1]} | {p50_off:.2f} / {p99_off:.2f} | {p50_on:.2f} / {p99_on:.2f} |"
        )
    lines += ["", "| gRPC pixels, clients | off img/s | on img/s | on / off | on / ceiling |",
              "|---|---|---|---|---|"]  # fmt: skip
    for clients in settings.clients:
        rate_off, rate_on = off["throughput"][clients], on["throughput"][clients]
        lines.append(
            f"| {clients} | {rate_off:.0f} | {rate_on:.0f} | {rate_on / max(rate_off, 1e-9):.2f}x "
            f"| {100 * rate_on / ceiling[256]:.0f} % |"
        )
    lines.append(f"\nFailed requests: {off['errors'] + on['errors']}")
    return "\n".join(lines)


def _versions(*runs: dict) -> str:
    """The version(s) the servers answered from: the base path's newest changes over time."""
    return " and ".join(sorted({", ".join(map(str, run["versions"])) for run in runs}))


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    # Before TensorFlow loads here: the ceiling's process inherits the server's math mode.
    fpmath = apply_fpmath()
    print(f"CPU: {describe_cpu()}\n{fpmath}", flush=True)
    pixels, jpeg = sample_images(1)
    grpc_requests = grpc_payloads(settings.model_name, pixels, jpeg)
    rest_requests = rest_payloads(pixels, jpeg)
    print("in-process ceiling ...", flush=True)
    ceiling = in_process_ceiling(settings)
    print("batching off ...", flush=True)
    off = measure_server(settings, False, grpc_requests, rest_requests)
    print("batching on ...", flush=True)
    on = measure_server(settings, True, grpc_requests, rest_requests)
    print()
    print(report(settings, ceiling, off, on, fpmath))
    return 0


if __name__ == "__main__":
    sys.exit(main())

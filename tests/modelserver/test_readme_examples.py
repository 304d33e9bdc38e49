"""README's "Serve and query" examples, run as written: both ways it starts the model server
(on the shipped model), its curl lines and its gRPC client. Only the ports are changed (free
ones, not 8500/8501) and the photo is a real CIFAR-10 test cat saved as cat.jpg."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from readme_blocks import block_after, json_documents

from stack.processes import free_port, model_states, start, stop, wait_for

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "cifar10"
NEWEST = max(int(p.name) for p in SHIPPED.iterdir() if p.name.isdigit())

pytestmark = [pytest.mark.slow, pytest.mark.fulldata]  # two servers; a real photo


def start_commands() -> list[str]:
    """The two ways README starts the model server alone (split at its '# or with' line)."""
    block = block_after("To run the model server alone:")
    first, second = re.split(r"\n# or with[^\n]*\n", block)
    return [first, second]


@pytest.fixture(params=["base path", "config files"])
def readme_server(request, cat_jpg):
    """The README command, with free ports (replaced where it names them, added where it
    leaves them at TF Serving's defaults) and this test run's Python for `.venv/bin/python`
    (make test VENV=... may name another). Started after the photo: no data, no server."""
    grpc, rest = free_port(), free_port()
    command = start_commands()[request.param == "config files"]
    assert command.startswith(".venv/bin/python -m modelserver"), command
    command = command.replace(".venv/bin/python", sys.executable, 1)
    # Every value joined by "=", the only form tensorflow_model_server's flag parser reads (a
    # "--port 8500" there is an unknown argument, and the server starts on its default).
    assert not re.search(r"--\w+ [^-\s\\]", command), command
    if "--port" in command:
        assert "--port=8500" in command and "--rest_api_port=8501" in command, command
        command = command.replace("--port=8500", f"--port={grpc}")
        command = command.replace("--rest_api_port=8501", f"--rest_api_port={rest}")
    else:
        command += f" --port={grpc} --rest_api_port={rest}"
    child = start(["bash", "-c", f"exec {command}"], own_session=False)
    try:
        wait_for(lambda: bool(model_states(rest)), {"the model server": child}, "README's server")
        yield grpc, rest
    finally:
        stop(child)


@pytest.fixture
def cat_jpg(tmp_path, cifar_sample) -> Path:
    cat = cifar_sample.class_names.index("cat")
    first = list(cifar_sample.labels).index(cat)
    (tmp_path / "cat.jpg").write_bytes(cifar_sample.data[first])
    return tmp_path


def test_readme_rest_and_grpc_examples_answer_as_it_says(readme_server, cat_jpg) -> None:
    grpc, rest = readme_server
    curl = block_after("REST, exactly as TF Serving answers it:").replace(
        "localhost:8501", f"localhost:{rest}"
    )
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", curl],
        cwd=cat_jpg, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    status, metadata, prediction = json_documents(done.stdout)
    assert {"version": str(NEWEST), "state": "AVAILABLE"}.items() <= (
        status["model_version_status"][0].items()
    )
    assert "serving_default" in metadata["metadata"]["signature_def"]["signature_def"]
    (row,) = prediction["predictions"]
    assert len(row["classes"]) == len(row["scores"]) == 10

    client = block_after("gRPC, in the style of").replace("localhost:8500", f"localhost:{grpc}")
    done = subprocess.run(
        [sys.executable, "-c", client], cwd=cat_jpg, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    version, classes, scores = re.fullmatch(r"(\d+) (\[.*?\]) (\[.*\])\n", done.stdout).groups()
    assert int(version) == NEWEST
    # The same photo, the same model: gRPC's top three are REST's.
    assert [c.decode() for c in ast.literal_eval(classes)] == row["classes"][:3]
    assert ast.literal_eval(scores) == pytest.approx(row["scores"][:3], abs=1e-6)

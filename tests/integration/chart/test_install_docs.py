"""docs/install.md, run: every block marked `<!-- tested -->` is executed with
bash against the real control plane, in a fresh namespace instead of
`nico-flow`, with helm, kubectl, flow and kubectl-flow on PATH."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from chart_support import REPO_ROOT, Helm

from nicoflow.devstack.controlplane import ControlPlane

DOC = REPO_ROOT / "docs" / "install.md"
BLOCK = re.compile(r"<!-- tested -->\n```sh\n(.*?)```", re.DOTALL)
# the namespace, wherever a command names it (not the release or chart name)
NAMESPACE = re.compile(r"(-n |--namespace[ =]|create namespace )nico-flow\b")


def _tested_blocks() -> list[str]:
    return BLOCK.findall(DOC.read_text())


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certs(directory: Path) -> None:
    directory.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
             "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.crt", cwd=directory)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=nico-flow",
             "-keyout", "tls.key", "-out", "tls.csr", cwd=directory)  # fmt: skip
    _openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "1", "-out", "tls.crt", cwd=directory)  # fmt: skip


@pytest.fixture
def docs_namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = f"docs-{uuid.uuid4().hex[:8]}"
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def argocd_cm(control_plane: ControlPlane) -> None:
    """What an Argo CD installation provides: the argocd namespace and argocd-cm."""
    if control_plane.kubectl("get", "namespace", "argocd", check=False).returncode != 0:
        control_plane.kubectl("create", "namespace", "argocd")
    if control_plane.kubectl("get", "cm", "argocd-cm", "-n", "argocd", check=False).returncode:
        control_plane.kubectl("create", "configmap", "argocd-cm", "-n", "argocd")


def _racks(control_plane: ControlPlane) -> set[str]:
    out = control_plane.kubectl("get", "racks", "-o", "name").stdout
    return set(out.split())


@pytest.mark.usefixtures("crds_installed", "argocd_cm")
def test_install_doc_commands(
    control_plane: ControlPlane,
    cluster_helm: Helm,
    docs_namespace: str,
    tmp_path: Path,
) -> None:
    blocks = _tested_blocks()
    assert len(blocks) >= 8
    for link in ("charts", "docs"):
        (tmp_path / link).symlink_to(REPO_ROOT / link)
    _certs(tmp_path / "certs")
    env = cluster_helm.env()
    env["PATH"] = os.pathsep.join(
        [str(cluster_helm.binary.parent), str(Path(sys.executable).parent), env["PATH"]]
    )
    env["COLUMNS"] = "200"
    racks_before = _racks(control_plane)
    outputs = []
    try:
        for block in blocks:
            script = NAMESPACE.sub(lambda m: m.group(1) + docs_namespace, block)
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert result.returncode == 0, f"{script}\n--- stderr:\n{result.stderr}"
            outputs.append(result.stdout)
        text = "\n".join(outputs)

        def get(*args: str) -> str:
            return control_plane.kubectl("get", *args, "-n", docs_namespace).stdout

        db = json.loads(get("secret", "nico-flow-database", "-o", "json"))
        assert set(db["data"]) == {"DATABASE_URL"}
        tls = json.loads(get("secret", "nico-flow-tls", "-o", "json"))
        assert set(tls["data"]) == {"ca.crt", "tls.crt", "tls.key"}
        assert "deployment.apps/nico-flow-operator serverside-applied (server dry run)" in text
        assert "customresourcedefinition.apiextensions.k8s.io/tasks.flow.nico.io" in text
        assert {"rack.flow.nico.io/rack-a01", "rack.flow.nico.io/rack-a02"} <= _racks(control_plane)
        assert f"TaskSpec {docs_namespace}/power-on-a01: power_on" in text
        cancel = get("taskspec", "power-on-a01", "-o", "jsonpath={.spec.cancel}")
        assert cancel == "true"
        cm = json.loads(
            control_plane.kubectl("get", "cm", "argocd-cm", "-n", "argocd", "-o", "json").stdout
        )
        assert "resource.customizations.health.flow.nico.io_Task" in cm["data"]
    finally:
        for rack in _racks(control_plane) - racks_before:
            control_plane.kubectl("delete", rack, "--wait=false", check=False)

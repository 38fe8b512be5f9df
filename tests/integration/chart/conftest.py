"""Fixtures for the Helm chart tests: a real helm binary (hack/get-helm.sh,
cached), for rendering and against the local control plane."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from chart_support import REPO_ROOT, Helm

from nicoflow.devstack.controlplane import ControlPlane


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    out = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "get-helm.sh")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return Path(out.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def helm(helm_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm for rendering; no cluster."""
    return Helm(helm_binary, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def cluster_helm(
    helm_binary: Path, tmp_path_factory: pytest.TempPathFactory, control_plane: ControlPlane
) -> Helm:
    """helm against the local control plane."""
    return Helm(helm_binary, tmp_path_factory.mktemp("helm-home"), control_plane.kubeconfig)

"""Shared fixtures: a real control plane and a real PostgreSQL per test session,
a fresh namespace and a fresh database per test.

Tests under tests/unit are marked `unit` and never start a process; tests under
tests/integration are marked `integration`, those under tests/dst (deterministic
simulation: one process, the simulator over loopback gRPC) `dst`. `pytest -m unit`
runs in seconds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nicoflow.api import admission
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.postgres import Postgres

REPO_ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = REPO_ROOT / "crds"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "unit" in parts:
            item.add_marker(pytest.mark.unit)
        elif "integration" in parts:
            item.add_marker(pytest.mark.integration)
        elif "dst" in parts:
            item.add_marker(pytest.mark.dst)


@pytest.fixture(scope="session")
def stack_dir() -> Iterator[Path]:
    # Short path: PostgreSQL's unix socket path must stay under ~100 bytes.
    path = Path(tempfile.mkdtemp(prefix="nf-"))
    os.chmod(path, 0o755)
    yield path
    if not os.environ.get("NICO_FLOW_KEEP_STACK"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def control_plane(stack_dir: Path) -> Iterator[ControlPlane]:
    with ControlPlane(stack_dir / "k8s") as cp:
        yield cp


@pytest.fixture(scope="session")
def crds_installed(control_plane: ControlPlane) -> list[str]:
    """Apply every generated CRD and the admission policies beside them, and wait
    until the apiserver serves the CRDs."""
    files = sorted(CRD_DIR.glob("*.yaml"))
    if not files:
        pytest.fail("no CRDs under crds/: run `flow crds`")
    control_plane.kubectl("apply", "--server-side", *[f"-f={f}" for f in files])
    names = [f.name.removesuffix(".yaml") for f in files if f.name != admission.FILENAME]
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names]
    )
    return names


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def postgres(stack_dir: Path) -> Iterator[Postgres]:
    with Postgres(stack_dir / "pg") as pg:
        yield pg


@pytest.fixture
def database_url(postgres: Postgres) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(name)
    yield url
    postgres.drop_database(name)

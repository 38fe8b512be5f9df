"""`kubectl flow` with the credentials real clusters hand out: an exec credential
plugin returning a token (as EKS, GKE and OIDC login helpers do) or a client
certificate, and client-certificate data inline in the kubeconfig. The
apiserver checks them for real (a ServiceAccount token, certificates from its
client CA, RBAC per user), and the plugin leaves no key file behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from nicoflow.devstack.controlplane import ControlPlane, kubectl_binary

BIN = Path(sys.executable).parent

EXEC_PLUGIN = """\
#!{python}
# An exec credential plugin: prints an ExecCredential, counts its runs.
import json, os, pathlib
calls = pathlib.Path({calls!r})
calls.write_text(str(int(calls.read_text() or 0) + 1) if calls.exists() else "1")
info = json.loads(os.environ.get("KUBERNETES_EXEC_INFO") or "{{}}")
print(json.dumps({{
    "apiVersion": "client.authentication.k8s.io/v1",
    "kind": "ExecCredential",
    "status": {status},
}}))
"""


@pytest.fixture(scope="module")
def reader_namespace(control_plane: ControlPlane, crds_installed: list[str]) -> Iterator[str]:
    """A namespace with a TaskSpec, readable by the ServiceAccount `reader` and
    by the certificate user `carol`; nobody else but the admin."""
    ns = f"plug-{uuid.uuid4().hex[:6]}"
    cp = control_plane
    cp.kubectl("create", "namespace", ns)

    cp.kubectl("create", "serviceaccount", "reader", "-n", ns)
    cp.kubectl(
        "create", "role", "flow-reader", "--verb=get,list,watch",
        "--resource=taskspecs.flow.nico.io,tasks.flow.nico.io", "-n", ns,
    )  # fmt: skip
    cp.kubectl(
        "create", "rolebinding", "flow-reader", "--role=flow-reader",
        f"--serviceaccount={ns}:reader", "--user=carol", "-n", ns,
    )  # fmt: skip
    taskspec = json.dumps(
        {
            "apiVersion": "flow.nico.io/v1alpha1",
            "kind": "TaskSpec",
            "metadata": {"name": "nightly-restart"},
            "spec": {"operation": "restart", "targets": {"racks": ["r1"]}, "suspend": True},
        }
    )
    # freshly established CRDs answer 429 "storage is (re)initializing" for a moment
    deadline = time.monotonic() + 60
    while True:
        made = cp.kubectl("create", "-n", ns, "-f", "-", input=taskspec, check=False)
        if made.returncode == 0:
            break
        assert time.monotonic() < deadline, made.stderr
        time.sleep(0.5)
    yield ns
    cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _kubeconfig(cp: ControlPlane, path: Path, ns: str, user: dict[str, object]) -> Path:
    ca = (cp.workdir / "certs" / "apiserver.crt").read_bytes()
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {
                            "server": cp.server,
                            "certificate-authority-data": b64encode(ca).decode(),
                            "tls-server-name": "localhost",
                        },
                    }
                ],
                "users": [{"name": "someone", "user": user}],
                "contexts": [
                    {
                        "name": "local",
                        "context": {"cluster": "local", "user": "someone", "namespace": ns},
                    }
                ],
                "current-context": "local",
            }
        )
    )
    path.chmod(0o600)
    return path


def _exec_user(tmp: Path, status: dict[str, str]) -> dict[str, object]:
    script = tmp / "credential-helper"
    script.write_text(
        EXEC_PLUGIN.format(python=sys.executable, calls=str(tmp / "calls"), status=repr(status))
    )
    script.chmod(0o755)
    return {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(script),
            "interactiveMode": "Never",
        }
    }


def run_plugin(kubeconfig: Path, tmpdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["KUBECONFIG"] = str(kubeconfig)
    env["TMPDIR"] = str(tmpdir)
    env["COLUMNS"] = "200"
    return subprocess.run(
        [kubectl_binary(), "flow", *args], capture_output=True, text=True, env=env, timeout=60
    )


def _fresh(tmp_path: Path, name: str) -> Path:
    d = tmp_path / name
    d.mkdir()
    return d


def test_exec_plugin_token(
    control_plane: ControlPlane, reader_namespace: str, tmp_path: Path
) -> None:
    token = control_plane.kubectl(
        "create", "token", "reader", "-n", reader_namespace, "--duration=1h"
    ).stdout.strip()
    user = _exec_user(tmp_path, {"token": token, "expirationTimestamp": "2099-01-01T00:00:00Z"})
    kc = _kubeconfig(control_plane, tmp_path / "exec-token.kubeconfig", reader_namespace, user)
    tmpdir = _fresh(tmp_path, "tmp")
    shown = run_plugin(kc, tmpdir, "status", "taskspec/nightly-restart")
    assert shown.returncode == 0, shown.stderr
    assert f"TaskSpec {reader_namespace}/nightly-restart: restart" in shown.stdout
    assert int((tmp_path / "calls").read_text()) >= 1
    # the ServiceAccount may read, not cancel: the apiserver judged the exec token
    refused = run_plugin(kc, tmpdir, "cancel", "taskspec/nightly-restart")
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr.lower()
    assert f"system:serviceaccount:{reader_namespace}:reader" in refused.stderr
    assert list(tmpdir.iterdir()) == []


def test_exec_plugin_client_certificate_leaves_no_key_file(
    control_plane: ControlPlane, reader_namespace: str, tmp_path: Path
) -> None:
    cert, key = control_plane.issue_client_cert("carol", ("tenants",))
    user = _exec_user(
        tmp_path, {"clientCertificateData": cert.decode(), "clientKeyData": key.decode()}
    )
    kc = _kubeconfig(control_plane, tmp_path / "exec-cert.kubeconfig", reader_namespace, user)
    tmpdir = _fresh(tmp_path, "tmp")
    shown = run_plugin(kc, tmpdir, "status", "taskspec/nightly-restart")
    assert shown.returncode == 0, shown.stderr
    assert "nightly-restart" in shown.stdout
    assert list(tmpdir.iterdir()) == [], "credential files were left behind"


def test_inline_client_certificate_data_leaves_no_key_file(
    control_plane: ControlPlane, reader_namespace: str, tmp_path: Path
) -> None:
    cert, key = control_plane.issue_client_cert("carol")
    user = {
        "client-certificate-data": b64encode(cert).decode(),
        "client-key-data": b64encode(key).decode(),
    }
    kc = _kubeconfig(control_plane, tmp_path / "inline.kubeconfig", reader_namespace, user)
    tmpdir = _fresh(tmp_path, "tmp")
    for _ in range(2):
        shown = run_plugin(kc, tmpdir, "status", "taskspec/nightly-restart")
        assert shown.returncode == 0, shown.stderr
    assert list(tmpdir.iterdir()) == [], "credential files were left behind"
    # someone the CA never signed for gets nothing
    stranger = _kubeconfig(
        control_plane, tmp_path / "nobody.kubeconfig", reader_namespace, {"token": "not-a-token"}
    )
    denied = run_plugin(stranger, tmpdir, "status", "taskspec/nightly-restart")
    assert denied.returncode != 0
    assert "401" in denied.stderr or "Unauthorized" in denied.stderr

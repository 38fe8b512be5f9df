"""Kubeconfig loading (nicoflow.kube.config) through the kubernetes client's loader:
contexts and namespaces, merged files, exec plugins, and credential data kept
only in the private directory."""

from __future__ import annotations

import base64
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nicoflow.kube import config


def _write(path: Path, users: dict[str, dict[str, Any]], current: str = "a") -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": n, "user": u} for n, u in users.items()],
                "contexts": [
                    {"name": n, "context": {"cluster": "c", "user": n, "namespace": f"ns-{n}"}}
                    for n in users
                ],
                "current-context": current,
            }
        )
    )
    return path


def test_token_context_and_namespace(tmp_path: Path) -> None:
    kc = _write(tmp_path / "kc", {"a": {"token": "tok-a"}, "b": {"token": "tok-b"}})
    loaded = config.from_kubeconfig(kc)
    assert loaded.server == "https://127.0.0.1:6443"
    assert loaded.bearer() == "tok-a"
    assert loaded.namespace == "ns-a"
    other = config.from_kubeconfig(kc, context="b")
    assert (other.bearer(), other.namespace) == ("tok-b", "ns-b")


def test_files_joined_by_the_path_separator_are_merged(tmp_path: Path) -> None:
    first = _write(tmp_path / "one", {"a": {"token": "tok-a"}}, current="a")
    second = _write(tmp_path / "two", {"b": {"token": "tok-b"}}, current="b")
    loaded = config.from_kubeconfig(f"{first}{os.pathsep}{second}")
    assert loaded.bearer() == "tok-a"  # the first file's current-context wins, as in kubectl


def test_exec_plugin_token(tmp_path: Path) -> None:
    script = tmp_path / "helper"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json\n"
        'print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", '
        '"kind": "ExecCredential", "status": {"token": "from-exec"}}))\n'
    )
    script.chmod(0o755)
    exec_user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(script),
            "interactiveMode": "Never",
        }
    }
    kc = _write(tmp_path / "kc", {"a": exec_user})
    assert config.from_kubeconfig(kc).bearer() == "from-exec"


def test_credential_data_lives_only_in_the_private_directory(tmp_path: Path) -> None:
    key = b"-----BEGIN PRIVATE KEY-----\nnot really\n-----END PRIVATE KEY-----\n"
    user = {
        "client-certificate-data": base64.b64encode(b"cert").decode(),
        "client-key-data": base64.b64encode(key).decode(),
    }
    loaded = config.from_kubeconfig(_write(tmp_path / "kc", {"a": user}))
    assert loaded.client_key is not None
    assert loaded.client_cert is not None
    private = config.private_dir()
    assert loaded.client_key.parent == private
    assert loaded.client_key.read_bytes() == key
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    config.remove_private_dir()
    assert not private.exists()
    # loading again writes the files anew (the loader forgot the removed ones)
    again = config.from_kubeconfig(_write(tmp_path / "kc", {"a": user}))
    assert again.client_key is not None
    assert again.client_key.read_bytes() == key
    config.remove_private_dir()


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(config.KubeConfigError, match="no such file"):
        config.from_kubeconfig(tmp_path / "absent")
    broken = tmp_path / "broken"
    broken.write_text("apiVersion: v1\nkind: Config\ncurrent-context: nowhere\n")
    with pytest.raises(config.KubeConfigError, match="kubeconfig"):
        config.from_kubeconfig(broken)

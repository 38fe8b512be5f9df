"""Where the Kubernetes API is and how to authenticate: a kubeconfig file
(KUBECONFIG or ~/.kube/config) or the in-cluster ServiceAccount."""

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeConfigError(Exception):
    pass


@dataclass(frozen=True)
class KubeConfig:
    server: str
    token: str | None = None
    token_file: Path | None = None  # re-read on every request: projected tokens rotate
    ca_file: Path | None = None
    insecure: bool = False
    client_cert: Path | None = None
    client_key: Path | None = None
    namespace: str = "default"

    def bearer(self) -> str | None:
        if self.token_file is not None:
            return self.token_file.read_text().strip()
        return self.token


def load(path: str | os.PathLike[str] | None = None) -> KubeConfig:
    """Explicit path > KUBECONFIG > in-cluster ServiceAccount > ~/.kube/config."""
    if path is None:
        env = os.environ.get("KUBECONFIG")
        if env:
            path = env.split(os.pathsep)[0]
        elif (SA_DIR / "token").exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return in_cluster()
        else:
            default = Path.home() / ".kube" / "config"
            if not default.exists():
                raise KubeConfigError(
                    "no Kubernetes configuration: set KUBECONFIG, pass --kubeconfig, "
                    "or run inside a cluster"
                )
            path = default
    return from_kubeconfig(Path(path))


def in_cluster() -> KubeConfig:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:
        host = f"[{host}]"
    namespace = (SA_DIR / "namespace").read_text().strip()
    return KubeConfig(
        server=f"https://{host}:{port}",
        token_file=SA_DIR / "token",
        ca_file=SA_DIR / "ca.crt",
        namespace=namespace,
    )


def from_kubeconfig(path: Path) -> KubeConfig:
    try:
        doc: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise KubeConfigError(f"cannot read kubeconfig {path}: {exc}") from exc
    current = doc.get("current-context")
    if not current:
        raise KubeConfigError(f"kubeconfig {path} has no current-context")
    context = _named(doc, "contexts", current, path)["context"]
    cluster = _named(doc, "clusters", context["cluster"], path)["cluster"]
    user = _named(doc, "users", context["user"], path).get("user") or {}
    return KubeConfig(
        server=cluster["server"],
        token=user.get("token"),
        token_file=Path(user["tokenFile"]) if user.get("tokenFile") else None,
        ca_file=_file_or_data(cluster, "certificate-authority", path.parent),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        client_cert=_file_or_data(user, "client-certificate", path.parent),
        client_key=_file_or_data(user, "client-key", path.parent),
        namespace=context.get("namespace") or "default",
    )


def _named(doc: dict[str, Any], section: str, name: str, path: Path) -> dict[str, Any]:
    for item in doc.get(section) or []:
        if item.get("name") == name:
            found: dict[str, Any] = item
            return found
    raise KubeConfigError(f"kubeconfig {path}: no {section[:-1]} named {name!r}")


def _file_or_data(section: dict[str, Any], key: str, base: Path) -> Path | None:
    if section.get(key):
        p = Path(section[key])
        return p if p.is_absolute() else base / p
    data = section.get(f"{key}-data")
    if not data:
        return None
    # ssl wants files; keep decoded material in a private temporary file
    fd, name = tempfile.mkstemp(prefix="nicoflow-kube-", suffix=".pem")
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64decode(data))
    return Path(name)

"""Where the Kubernetes API is and how to authenticate: a kubeconfig file
(KUBECONFIG, several joined by the path separator, or ~/.kube/config) or the
in-cluster ServiceAccount.

Kubeconfigs are read by the official `kubernetes` client's loader, so
everything kubectl understands works: tokens and token files, client
certificates, exec credential plugins (EKS, GKE, OIDC login helpers) and
auth providers. Credentials that arrive as data (client-key-data, an exec
plugin's clientKeyData) must be files for `ssl`: they are written only into
one private directory (mode 0700) that is removed when the process exits."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable
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
    # a fresh token when the one loaded may expire (exec plugins, auth providers)
    refresh: Callable[[], str | None] | None = None

    def bearer(self) -> str | None:
        if self.token_file is not None:
            return self.token_file.read_text().strip()
        if self.refresh is not None:
            return self.refresh()
        return self.token


def load(path: str | os.PathLike[str] | None = None) -> KubeConfig:
    """Explicit path > KUBECONFIG > in-cluster ServiceAccount > ~/.kube/config."""
    if path is None:
        env = os.environ.get("KUBECONFIG")
        if env:
            return from_kubeconfig(env)
        if (SA_DIR / "token").exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return in_cluster()
        default = Path.home() / ".kube" / "config"
        if not default.exists():
            raise KubeConfigError(
                "no Kubernetes configuration: set KUBECONFIG, pass --kubeconfig, "
                "or run inside a cluster"
            )
        path = default
    return from_kubeconfig(str(path))


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


def from_kubeconfig(paths: str | Path, context: str | None = None) -> KubeConfig:
    """The current (or named) context of one kubeconfig, or of several merged
    as kubectl merges them (`paths` joined by os.pathsep)."""
    from kubernetes import client as kclient
    from kubernetes import config as kconfig

    text = str(paths)
    missing = [p for p in text.split(os.pathsep) if p and not Path(p).expanduser().exists()]
    if missing and len(missing) == len([p for p in text.split(os.pathsep) if p]):
        raise KubeConfigError(f"cannot read kubeconfig {text}: no such file")
    configuration = kclient.Configuration()
    if context is None:
        context = _first_current_context(text)
    try:
        kconfig.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=text,
            context=context,
            client_configuration=configuration,
            persist_config=False,
            temp_file_path=str(private_dir()),
        )
        contexts, current = kconfig.list_kube_config_contexts(text)  # type: ignore[no-untyped-call]
    except (kconfig.ConfigException, OSError, ValueError, KeyError) as exc:
        raise KubeConfigError(f"kubeconfig {text}: {exc}") from None
    if context is not None:
        current = next((c for c in contexts if c.get("name") == context), current)
    namespace = ((current or {}).get("context") or {}).get("namespace") or "default"
    return KubeConfig(
        server=str(configuration.host),
        token=_bearer(configuration),
        ca_file=Path(configuration.ssl_ca_cert) if configuration.ssl_ca_cert else None,
        insecure=not configuration.verify_ssl,
        client_cert=Path(configuration.cert_file) if configuration.cert_file else None,
        client_key=Path(configuration.key_file) if configuration.key_file else None,
        namespace=str(namespace),
        refresh=_refresher(configuration),
    )


def _first_current_context(paths: str) -> str | None:
    """kubectl's rule for merged files: the first one that names a current-context
    wins (the client library would take the last)."""
    for path in paths.split(os.pathsep):
        file = Path(path).expanduser()
        if not path or not file.is_file():
            continue
        try:
            doc = yaml.safe_load(file.read_text()) or {}
        except (OSError, yaml.YAMLError):
            return None  # the loader reports it
        if isinstance(doc, dict) and doc.get("current-context"):
            return str(doc["current-context"])
    return None


def _bearer(configuration: Any) -> str | None:
    value = (configuration.api_key or {}).get("BearerToken") or (configuration.api_key or {}).get(
        "authorization"
    )
    if not value:
        return None
    text = str(value)
    return text.split(" ", 1)[1] if text.lower().startswith("bearer ") else text


def _refresher(configuration: Any) -> Callable[[], str | None] | None:
    hook = getattr(configuration, "refresh_api_key_hook", None)
    if hook is None:
        return None

    def refresh() -> str | None:
        hook(configuration)  # reloads the credential only when it has expired
        return _bearer(configuration)

    return refresh


_private: Path | None = None


def private_dir() -> Path:
    """This process's directory for credential files (0700), removed at exit."""
    global _private
    if _private is None or not _private.is_dir():
        _private = Path(tempfile.mkdtemp(prefix="nicoflow-kube-"))
        _private.chmod(0o700)
        atexit.register(remove_private_dir)
    return _private


def remove_private_dir() -> None:
    global _private
    if _private is None:
        return
    shutil.rmtree(_private, ignore_errors=True)
    # the loader remembers the files it wrote, by content; forget ours
    try:
        from kubernetes.config import kube_config
    except ImportError:  # pragma: no cover - a dependency
        pass
    else:
        prefix = str(_private)
        for key, name in list(kube_config._temp_files.items()):
            if str(name).startswith(prefix):
                del kube_config._temp_files[key]
    _private = None

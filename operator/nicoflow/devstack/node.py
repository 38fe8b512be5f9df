"""A local Kubernetes node beside the control plane, so the chart's Pods run:
containerd and runc (Debian's), the CNI bridge plugin (Debian's), kubelet,
kube-scheduler and kube-proxy (built from the Kubernetes Go modules), CoreDNS
for Service names, and the images of hack/build-images.sh imported into
containerd's k8s.io namespace.

The node takes machine-wide things (devstack/machine.py), so one runs per
machine at a time, and `teardown` gives them back. It needs root. Its
configuration files are in devstack/node_config.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from nicoflow.devstack import machine
from nicoflow.devstack import node_config as config
from nicoflow.devstack.controlplane import REPO_ROOT, ControlPlane
from nicoflow.devstack.machine import NODE_IP
from nicoflow.devstack.node_config import NODE_NAME
from nicoflow.devstack.processes import free_port, spawn, stop_pid, stop_pids, wait_until

VOLUMES = 8
# the node's processes, as `pids` names them (teardown stops them in its own order)
SERVICES = ("kubelet", "kube-proxy", "coredns", "kube-scheduler", "containerd")
DEBIAN_PACKAGES = {
    "containerd": Path("/usr/bin/containerd"),
    "runc": Path("/usr/sbin/runc"),
    "containernetworking-plugins": config.CNI_BIN / "bridge",
    "iptables": Path("/usr/sbin/iptables"),
}
NODE_BUILD = REPO_ROOT / "hack" / "build-control-plane.sh"
TOOLS_BUILD = REPO_ROOT / "hack" / "build-node-tools.sh"
IMAGES_BUILD = REPO_ROOT / "hack" / "build-images.sh"
# what the processes of the node find on PATH (runc, the shim, iptables, mount)
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Image:
    role: str
    ref: str
    archive: Path


def build_images() -> dict[str, Image]:
    """The node's images by role (python, project, pause, postgres); built by
    hack/build-images.sh unless its cache already holds them."""
    images = {}
    for line in _run_script(IMAGES_BUILD).splitlines():
        role, ref, archive = line.split()
        images[role] = Image(role, ref, Path(archive))
    return images


def node_binaries() -> tuple[Path, Path]:
    """(kubelet/kube-scheduler/kube-proxy dir, coredns/crictl dir), built and cached."""
    return Path(_run_script(NODE_BUILD, "node")), Path(_run_script(TOOLS_BUILD))


def _run_script(script: Path, *args: str) -> str:
    result = subprocess.run(["bash", str(script), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{script.name} failed:\n{result.stderr[-4000:]}")
    return result.stdout.strip()


def check_host() -> None:
    """Fail early, saying how to fix it, when this machine cannot run the node."""
    if os.geteuid() != 0:
        raise RuntimeError("the local node needs root: containerd, iptables, mounts and cgroups")
    missing = [pkg for pkg, path in DEBIAN_PACKAGES.items() if not path.exists()]
    if missing:
        raise RuntimeError(
            f"missing Debian packages for the local node: {' '.join(missing)} "
            "(hack/setup.sh installs them)"
        )
    if not machine.cgroup_v1_hierarchies():
        raise RuntimeError(
            "the local node runs on cgroup v1 hierarchies (/sys/fs/cgroup/memory, ...); "
            "this machine has none"
        )


@dataclass
class Node:
    """`prepare()` before the control plane starts (it creates the address the
    control plane listens on), `start()` after; the control plane must run
    with `address=NODE_IP, run_pods=True`."""

    workdir: Path
    cp: ControlPlane
    images: Sequence[Image] = ()
    claim_timeout: float = 1800.0
    kubelet_bin: Path | None = None
    tools_bin: Path | None = None
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def layout(self) -> config.Layout:
        return config.Layout(self.workdir)

    def log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self._procs.items()}

    def prepare(self) -> Self:
        """Claim the machine, create the bridge whose address the control plane
        then listens on, set the sysctls, make the cgroup root."""
        check_host()
        if self.kubelet_bin is None or self.tools_bin is None:
            self.kubelet_bin, self.tools_bin = node_binaries()
        self.workdir.mkdir(parents=True, exist_ok=True)
        machine.claim(self.workdir, self.claim_timeout, clean_up=_clean_up_stale)
        try:
            machine.set_sysctls(
                self.workdir,
                {"net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1"},
            )
            machine.make_bridge()
            machine.make_cgroup_root()
        except BaseException:
            self.stop()
            raise
        return self

    def start(self) -> Self:
        """containerd, the images, kube-scheduler, kubelet, kube-proxy, CoreDNS
        and the volumes, against the running control plane."""
        if self.cp.address != NODE_IP or not self.cp.run_pods:
            raise ValueError(f"the control plane must run with address={NODE_IP}, run_pods=True")
        if self.kubelet_bin is None:
            self.prepare()
        try:
            self._start_containerd()
            self._import_images()
            self._start_scheduler()
            self._start_kubelet()
            self._start_proxy()
            self._start_coredns()
            self._create_storage()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        teardown(self.workdir, self.pids, tools_bin=self.tools_bin, kubelet_bin=self.kubelet_bin)
        self._procs.clear()

    # -- processes -------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        proc = spawn(argv, self.log(name), env={**os.environ, "PATH": PATH})
        self._procs[name] = proc
        return proc

    def _start_containerd(self) -> None:
        pause = next((i.ref for i in self.images if i.role == "pause"), "")
        if not pause:
            raise ValueError("the node needs a pause image (hack/build-images.sh)")
        toml = self.layout.path("containerd.toml")
        toml.write_text(config.containerd_toml(self.layout, pause))
        net_d = self.layout.path("cni", "net.d")
        net_d.mkdir(parents=True, exist_ok=True)
        conflist = json.dumps(config.cni_conflist(self.layout), indent=1)
        (net_d / "10-nico-flow.conflist").write_text(conflist)
        proc = self._spawn("containerd", ["containerd", f"--config={toml}"])
        wait_until(
            lambda: self.crictl("info", check=False).returncode == 0,
            timeout=60,
            what="containerd",
            proc=proc,
            log=self.log("containerd"),
            interval=0.3,
        )

    def _import_images(self) -> None:
        for image in self.images:
            if image.role == "python":
                continue  # only the base of the project image
            subprocess.run(
                [
                    "ctr",
                    f"--address={self.layout.socket}",
                    "--namespace=k8s.io",
                    "images",
                    "import",
                    str(image.archive),
                ],
                check=True,
                capture_output=True,
                timeout=600,
            )

    def _start_scheduler(self) -> None:
        assert self.kubelet_bin is not None
        kubeconfig = self.layout.kubeconfig
        self.cp.write_kubeconfig(kubeconfig, self.cp.token, user="node")
        port = free_port()
        proc = self._spawn(
            "kube-scheduler",
            [
                str(self.kubelet_bin / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--leader-elect=false",
                "--v=0",
            ],
        )
        wait_until(
            lambda: _ok(f"https://127.0.0.1:{port}/healthz"),
            timeout=60,
            what="kube-scheduler",
            proc=proc,
            log=self.log("kube-scheduler"),
            interval=0.3,
        )

    def _start_kubelet(self) -> None:
        assert self.kubelet_bin is not None
        for sub in ("logs/pods", "kubelet"):
            self.layout.path(sub).mkdir(parents=True, exist_ok=True)
        self.layout.path("resolv.conf").write_text("")
        kubelet_yaml = self.layout.path("kubelet.yaml")
        settings = config.kubelet_config(
            self.layout,
            port=free_port(NODE_IP),
            healthz_port=free_port(),
            client_ca=self.cp.kubelet_client_ca,
        )
        kubelet_yaml.write_text(json.dumps(settings, indent=1))
        proc = self._spawn(
            "kubelet",
            [
                str(self.kubelet_bin / "kubelet"),
                f"--config={kubelet_yaml}",
                f"--kubeconfig={self.layout.kubeconfig}",
                f"--root-dir={self.layout.path('kubelet')}",
                f"--cert-dir={self.layout.path('kubelet', 'pki')}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--v=0",
            ],
        )
        wait_until(
            self._node_ready,
            timeout=120,
            what="kubelet (node Ready)",
            proc=proc,
            log=self.log("kubelet"),
            interval=0.5,
        )

    def _node_ready(self) -> bool:
        ready = 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'
        result = self.cp.kubectl("get", "node", NODE_NAME, "-o", ready, check=False)
        return result.stdout.strip() == "True"

    def _start_proxy(self) -> None:
        assert self.kubelet_bin is not None
        healthz = free_port()
        proxy_yaml = self.layout.path("kube-proxy.yaml")
        settings = config.kube_proxy_config(
            self.layout, healthz_port=healthz, metrics_port=free_port()
        )
        proxy_yaml.write_text(json.dumps(settings, indent=1))
        proc = self._spawn(
            "kube-proxy", [str(self.kubelet_bin / "kube-proxy"), f"--config={proxy_yaml}"]
        )
        wait_until(
            lambda: _ok(f"http://127.0.0.1:{healthz}/healthz"),
            timeout=60,
            what="kube-proxy",
            proc=proc,
            log=self.log("kube-proxy"),
            interval=0.3,
        )

    def _start_coredns(self) -> None:
        assert self.tools_bin is not None
        ready = free_port()
        corefile = self.layout.path("Corefile")
        corefile.write_text(config.corefile(self.layout, ready_port=ready))
        proc = self._spawn("coredns", [str(self.tools_bin / "coredns"), f"-conf={corefile}"])
        wait_until(
            lambda: _ok(f"http://127.0.0.1:{ready}/ready"),
            timeout=60,
            what="coredns",
            proc=proc,
            log=self.log("coredns"),
            interval=0.3,
        )

    def _create_storage(self) -> None:
        for i in range(VOLUMES):
            path = config.volume_dir(self.layout, i)
            path.mkdir(parents=True, exist_ok=True)
            # world-writable: a hostPath volume ignores fsGroup, and the bundled
            # PostgreSQL runs as its own uid
            path.chmod(0o777)
        objects = {"apiVersion": "v1", "kind": "List"}
        items = config.storage_objects(self.layout, VOLUMES)
        self.cp.kubectl("apply", "-f", "-", input=json.dumps({**objects, "items": items}))

    def crictl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.tools_bin is not None
        return crictl(self.tools_bin, self.layout.socket, *args, check=check)


def crictl(
    tools_bin: Path, socket: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    endpoint = f"unix://{socket}"
    return subprocess.run(
        [
            str(tools_bin / "crictl"),
            f"--runtime-endpoint={endpoint}",
            f"--image-endpoint={endpoint}",
            "--timeout=30s",
            *args,
        ],
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


# -- teardown --------------------------------------------------------------------


def teardown(
    workdir: Path,
    pids: dict[str, int],
    *,
    tools_bin: Path | None = None,
    kubelet_bin: Path | None = None,
) -> None:
    """Stop everything a node started from `workdir` and give back what it took
    from the machine. Safe to run twice, and after a crash."""
    stop_node(workdir, pids, tools_bin=tools_bin)
    release_machine(workdir, kubelet_bin=kubelet_bin)


def stop_node(workdir: Path, pids: dict[str, int], *, tools_bin: Path | None = None) -> None:
    """Remove the Pods and stop the node's processes. The network stays, so a
    control plane listening on the node's address can still stop cleanly."""
    socket = config.Layout(workdir).socket
    # the kubelet first, so it restarts nothing
    if "kubelet" in pids:
        stop_pid(pids["kubelet"])
    bins = tools_bin or _cached(TOOLS_BUILD)
    if socket.exists() and bins is not None:
        # stopping the Pod sandboxes runs the CNI DEL: veths, IP leases, masquerade rules
        crictl(bins, socket, "rmp", "--all", "--force", check=False)
    rest = ("kube-proxy", "coredns", "kube-scheduler", "containerd")
    stop_pids([pids[name] for name in rest if name in pids], timeout=10)
    stop_pids(machine.shim_pids(socket), timeout=5)


def release_machine(
    workdir: Path, *, kubelet_bin: Path | None = None, release_claim: bool = True
) -> None:
    """Give back what the node took: iptables rules, mounts, the bridge,
    cgroups, sysctls, the claim. After `stop_node`. Only the mounts below
    `workdir` when another node holds the machine (this one never got it)."""
    machine.unmount_under(workdir)
    if machine.held_by_another(workdir):
        return
    bins = kubelet_bin or _cached(NODE_BUILD, "node")
    if bins is not None and (bins / "kube-proxy").exists():
        subprocess.run([str(bins / "kube-proxy"), "--cleanup"], capture_output=True, timeout=60)
    machine.remove_kube_chains()
    machine.remove_bridge()
    machine.remove_cgroups()
    machine.remove_containerd_leftovers()
    machine.restore_sysctls(workdir)
    if release_claim:
        machine.release_claim(workdir)


def _clean_up_stale(workdir: Path) -> None:
    """What a node whose processes died left behind (the claim passes on)."""
    stop_node(workdir, {})
    release_machine(workdir, release_claim=False)


def _cached(script: Path, *args: str) -> Path | None:
    """A build script's bin directory, from its cache (or a build)."""
    with contextlib.suppress(RuntimeError, OSError):
        return Path(_run_script(script, *args))
    return None


def _ok(url: str) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=3, context=ctx):
            return True
    except (urllib.error.URLError, OSError):
        return False

"""A local Kubernetes node beside the control plane, so the chart's Pods run:
containerd and runc (Debian's), a CNI bridge (Debian's plugins), kubelet,
kube-scheduler and kube-proxy (built from the Kubernetes Go modules), CoreDNS
for Service names, and the images of hack/build-images.sh imported into
containerd.

The node owns machine-wide things — a bridge, iptables rules, cgroups, a few
sysctls — so one runs per machine at a time (a claim file under /run), and
`teardown` gives all of it back: Pods, processes, mounts, the bridge, the
rules, the cgroups, the sysctls. It needs root.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from nicoflow.devstack.controlplane import REPO_ROOT, ControlPlane
from nicoflow.devstack.processes import free_port, spawn, stop_pid, stop_pids, wait_until

NODE_NAME = "nico-flow-node"
BRIDGE = "nf0"
POD_CIDR = "10.244.0.0/24"
# the bridge's own address: the node's InternalIP, where the apiserver, kubelet
# and CoreDNS listen for Pods
NODE_IP = "10.244.0.1"
CLUSTER_DOMAIN = "cluster.local"
# every Pod's cgroup lives below this one, so teardown knows what is ours
CGROUP_ROOT = "nico-flow"
CGROUPS = Path("/sys/fs/cgroup")
CLAIM_DIR = Path("/run/nico-flow-node")
STORAGE_CLASS = "local"
VOLUMES = 8
CNI_BIN = Path("/usr/lib/cni")
# what the node changes and teardown puts back (kubelet sets the vm/kernel ones)
SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
# the node's processes, as `pids` names them (teardown stops them in its own order)
SERVICES = ("kubelet", "kube-proxy", "coredns", "kube-scheduler", "containerd")
DEBIAN_PACKAGES = {
    "containerd": Path("/usr/bin/containerd"),
    "runc": Path("/usr/sbin/runc"),
    "containernetworking-plugins": CNI_BIN / "bridge",
    "iptables": Path("/usr/sbin/iptables"),
}
NODE_BUILD = REPO_ROOT / "hack" / "build-control-plane.sh"
TOOLS_BUILD = REPO_ROOT / "hack" / "build-node-tools.sh"
IMAGES_BUILD = REPO_ROOT / "hack" / "build-images.sh"


@dataclass(frozen=True)
class Image:
    role: str
    ref: str
    archive: Path


def build_images() -> dict[str, Image]:
    """The node's images by role (python, project, pause, postgres); built by
    hack/build-images.sh unless its cache already holds them."""
    out = _run_script(IMAGES_BUILD)
    images = {}
    for line in out.splitlines():
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
    if not (CGROUPS / "memory").is_dir():
        raise RuntimeError("the local node expects cgroup v1 hierarchies under /sys/fs/cgroup")


@dataclass
class Node:
    """Start with `Node(workdir, control_plane, images).start()`; the control
    plane must run with `address=NODE_IP, run_pods=True`."""

    workdir: Path
    cp: ControlPlane
    images: Sequence[Image] = ()
    name: str = NODE_NAME
    claim_timeout: float = 1800.0
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    kubelet_bin: Path | None = None
    tools_bin: Path | None = None

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd.sock"

    def log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self._procs.items()}

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def prepare(self) -> Self:
        """Claim the machine, create the bridge whose address the control plane
        then listens on, set the sysctls, make the cgroup root. Before the
        control plane starts."""
        check_host()
        if self.kubelet_bin is None or self.tools_bin is None:
            self.kubelet_bin, self.tools_bin = node_binaries()
        self.workdir.mkdir(parents=True, exist_ok=True)
        claim(self.workdir, timeout=self.claim_timeout)
        try:
            save_sysctls(self.workdir)
            write_sysctl("net/ipv4/ip_forward", "1")
            write_sysctl("net/bridge/bridge-nf-call-iptables", "1")
            make_bridge()
            make_cgroup_root()
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
            self._write_configs()
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

    # -- configuration -------------------------------------------------------------

    def _write_configs(self) -> None:
        d = self.workdir
        for sub in ("cni/net.d", "cni/ipam", "logs/pods", "kubelet", "volumes"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "containerd.toml").write_text(self._containerd_config())
        (d / "cni" / "net.d" / "10-nico-flow.conflist").write_text(
            json.dumps(self._cni(), indent=1)
        )
        (d / "kubelet.yaml").write_text(json.dumps(self._kubelet_config(), indent=1))
        (d / "kube-proxy.yaml").write_text(json.dumps(self._proxy_config(), indent=1))
        (d / "resolv.conf").write_text("")
        self.cp.write_kubeconfig(d / "node.kubeconfig", self.cp.token, user="node")

    def _containerd_config(self) -> str:
        d = self.workdir
        pause = next((i.ref for i in self.images if i.role == "pause"), "")
        if not pause:
            raise ValueError("the node needs a pause image (hack/build-images.sh)")
        cri = '[plugins."io.containerd.grpc.v1.cri"]'
        runc = f"{cri[:-1]}.containerd.runtimes.runc]"
        return f"""version = 2
root = "{d / "containerd" / "root"}"
state = "{d / "containerd" / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "containerd" / "opt"}"
{cri}
  sandbox_image = "{pause}"
  disable_apparmor = true
  # root here lacks CAP_SYS_RESOURCE: no oom_score_adj below containerd's own
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  stream_server_address = "127.0.0.1"
  [{cri[1:-1]}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
  {runc}
    runtime_type = "io.containerd.runc.v2"
  {runc[:-1]}.options]
    SystemdCgroup = false
    Root = "{d / "containerd" / "runc"}"
  [{cri[1:-1]}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{d / "cni" / "net.d"}"
    max_conf_num = 1
"""

    def _cni(self) -> dict[str, Any]:
        return {
            "cniVersion": "1.0.0",
            "name": "nico-flow",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "isDefaultGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                        "dataDir": str(self.workdir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }

    def _kubelet_config(self) -> dict[str, Any]:
        self._kubelet_port = free_port(NODE_IP)
        self._kubelet_healthz = free_port()
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # cgroups v1 here: deprecated since 1.35, refused unless allowed
            "failCgroupV1": False,
            # no systemd; containerd 1.6 cannot tell the kubelet its driver
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{CGROUP_ROOT}",
            "address": NODE_IP,
            "port": self._kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self._kubelet_healthz,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.cp.kubelet_client_ca)},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDomain": CLUSTER_DOMAIN,
            "clusterDNS": [NODE_IP],
            "resolvConf": str(self.workdir / "resolv.conf"),
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "podLogsDirectory": str(self.workdir / "logs" / "pods"),
            "volumePluginDir": str(self.workdir / "kubelet" / "volume-plugins"),
            "failSwapOn": False,
            "registerNode": True,
            # images cannot be pulled again here: never collect them
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            # a shared development machine: evict only when nearly out of room
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "2%",
                "imagefs.available": "2%",
                "nodefs.inodesFree": "2%",
            },
            "serializeImagePulls": False,
            "maxPods": 60,
            "nodeStatusReportFrequency": "10s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "0s",
            "shutdownGracePeriod": "0s",
        }

    def _proxy_config(self) -> dict[str, Any]:
        self._proxy_healthz = free_port()
        return {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.workdir / "node.kubeconfig")},
            "hostnameOverride": self.name,
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "bindAddress": NODE_IP,
            "healthzBindAddress": f"127.0.0.1:{self._proxy_healthz}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            "nodePortAddresses": [f"{NODE_IP}/32"],
            # leave the machine's conntrack settings alone
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "iptables": {"localhostNodePorts": False},
        }

    # -- processes -------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
        proc = spawn(argv, self.log(name), env=env)
        self._procs[name] = proc
        return proc

    def _start_containerd(self) -> None:
        proc = self._spawn(
            "containerd", ["containerd", f"--config={self.workdir / 'containerd.toml'}"]
        )
        wait_until(
            lambda: self._crictl("info", check=False).returncode == 0,
            timeout=60,
            what="containerd",
            proc=proc,
            log=self.log("containerd"),
            interval=0.3,
        )

    def _import_images(self) -> None:
        for image in self.images:
            if image.role == "python":
                continue  # only a base of the project image
            subprocess.run(
                [
                    "ctr",
                    f"--address={self.socket}",
                    "--namespace=k8s.io",
                    "images",
                    "import",
                    "--no-unpack=false",
                    str(image.archive),
                ],
                check=True,
                capture_output=True,
                timeout=600,
            )

    def _start_scheduler(self) -> None:
        assert self.kubelet_bin is not None
        config = self.workdir / "node.kubeconfig"
        port = free_port()
        proc = self._spawn(
            "kube-scheduler",
            [
                str(self.kubelet_bin / "kube-scheduler"),
                f"--kubeconfig={config}",
                f"--authentication-kubeconfig={config}",
                f"--authorization-kubeconfig={config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--leader-elect=false",
                "--v=0",
            ],
        )
        wait_until(
            lambda: _https_ok(f"https://127.0.0.1:{port}/healthz"),
            timeout=60,
            what="kube-scheduler",
            proc=proc,
            log=self.log("kube-scheduler"),
            interval=0.3,
        )

    def _start_kubelet(self) -> None:
        assert self.kubelet_bin is not None
        proc = self._spawn(
            "kubelet",
            [
                str(self.kubelet_bin / "kubelet"),
                f"--config={self.workdir / 'kubelet.yaml'}",
                f"--kubeconfig={self.workdir / 'node.kubeconfig'}",
                f"--root-dir={self.workdir / 'kubelet'}",
                f"--cert-dir={self.workdir / 'kubelet' / 'pki'}",
                f"--hostname-override={self.name}",
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
        result = self.cp.kubectl(
            "get",
            "node",
            self.name,
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
            check=False,
        )
        return result.stdout.strip() == "True"

    def _start_proxy(self) -> None:
        assert self.kubelet_bin is not None
        proc = self._spawn(
            "kube-proxy",
            [str(self.kubelet_bin / "kube-proxy"), f"--config={self.workdir / 'kube-proxy.yaml'}"],
        )
        wait_until(
            lambda: _http_ok(f"http://127.0.0.1:{self._proxy_healthz}/healthz"),
            timeout=60,
            what="kube-proxy",
            proc=proc,
            log=self.log("kube-proxy"),
            interval=0.3,
        )

    def _start_coredns(self) -> None:
        assert self.tools_bin is not None
        ready = free_port()
        corefile = self.workdir / "Corefile"
        # answers the cluster's names only: nothing leaves the machine
        corefile.write_text(
            f""".:53 {{
    bind {NODE_IP}
    errors
    ready 127.0.0.1:{ready}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {self.workdir / "node.kubeconfig"}
        pods insecure
        ttl 5
    }}
    cache 5
    loadbalance
}}
"""
        )
        proc = self._spawn("coredns", [str(self.tools_bin / "coredns"), f"-conf={corefile}"])
        wait_until(
            lambda: _http_ok(f"http://127.0.0.1:{ready}/ready"),
            timeout=60,
            what="coredns",
            proc=proc,
            log=self.log("coredns"),
            interval=0.3,
        )

    def _create_storage(self) -> None:
        """A default StorageClass with a few node-local volumes: the bundled
        PostgreSQL's claim binds one. Directories are world-writable because a
        hostPath volume ignores fsGroup and the database runs as its own uid."""
        docs: list[dict[str, Any]] = [
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {
                    "name": STORAGE_CLASS,
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                },
                "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "WaitForFirstConsumer",
                "reclaimPolicy": "Retain",
            }
        ]
        for i in range(VOLUMES):
            path = self.workdir / "volumes" / f"pv{i}"
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o777)
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": f"{self.name}-pv{i}"},
                    "spec": {
                        "capacity": {"storage": "10Gi"},
                        "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "storageClassName": STORAGE_CLASS,
                        "hostPath": {"path": str(path), "type": "Directory"},
                    },
                }
            )
        self.cp.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"kind": "List", "apiVersion": "v1", "items": docs}),
        )

    def _crictl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.tools_bin is not None
        return crictl(self.tools_bin, self.socket, *args, check=check)

    def import_image(self, archive: Path) -> None:
        """Import one more image archive (tests load what they built)."""
        subprocess.run(
            [
                "ctr",
                f"--address={self.socket}",
                "--namespace=k8s.io",
                "images",
                "import",
                str(archive),
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )


# -- machine-wide state ----------------------------------------------------------


def claim(workdir: Path, timeout: float) -> None:
    """Make this workdir the machine's one node, waiting while another node
    runs; the leftovers of a node whose processes died are torn down first."""
    CLAIM_DIR.mkdir(parents=True, exist_ok=True)
    owner = CLAIM_DIR / "owner"
    deadline = time.monotonic() + timeout
    while True:
        with _locked(CLAIM_DIR / "lock"):
            current = Path(owner.read_text().strip()) if owner.exists() else None
            if current is None or current == workdir:
                owner.write_text(str(workdir))
                return
            if not _node_alive(current):
                teardown(current, {})
                owner.write_text(str(workdir))
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"another local node ({current}) still runs after {timeout:.0f}s")
        time.sleep(5)


def _node_alive(workdir: Path) -> bool:
    """Some process still runs from this node's workdir (containerd, kubelet ...)."""
    marker = str(workdir).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker in (proc / "cmdline").read_bytes():
                return True
    return False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def make_bridge() -> None:
    """The Pods' bridge with the node's address, made before the CNI plugin
    sees it (which then only attaches Pods)."""
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode != 0:
        subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
    addrs = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", BRIDGE], capture_output=True, text=True
    ).stdout
    if f" {NODE_IP}/" not in addrs:
        prefix = POD_CIDR.split("/")[1]
        subprocess.run(["ip", "addr", "add", f"{NODE_IP}/{prefix}", "dev", BRIDGE], check=True)
    subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name


def write_sysctl(name: str, value: str) -> None:
    _sysctl_path(name).write_text(value)


def save_sysctls(workdir: Path) -> None:
    saved = workdir / "sysctl-before.json"
    if saved.exists():
        return
    values = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = _sysctl_path(name).read_text().strip()
    saved.write_text(json.dumps(values, indent=1))


def restore_sysctls(workdir: Path) -> None:
    saved = workdir / "sysctl-before.json"
    if not saved.exists():
        return
    for name, value in json.loads(saved.read_text()).items():
        with contextlib.suppress(OSError):
            write_sysctl(name, value)
    saved.unlink()


def _cgroup_hierarchies() -> list[Path]:
    """The cgroup v1 hierarchies (cpu, memory, name=systemd ...), not cgroup2."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if parts[2] == "cgroup":
            found.append(Path(parts[1]))
    return found


def make_cgroup_root() -> None:
    for hierarchy in _cgroup_hierarchies():
        path = hierarchy / CGROUP_ROOT
        path.mkdir(exist_ok=True)
        if (hierarchy / "cpuset.cpus").exists():
            for key in ("cpuset.cpus", "cpuset.mems"):
                if not (path / key).read_text().strip():
                    (path / key).write_text((hierarchy / key).read_text())


def remove_cgroups() -> None:
    """rmdir our cgroups bottom-up; an empty cgroup directory removes cleanly."""
    for hierarchy in _cgroup_hierarchies():
        top = hierarchy / CGROUP_ROOT
        if not top.is_dir():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for path in [*dirs, top]:
            with contextlib.suppress(OSError):
                path.rmdir()


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


def _mounts_under(prefix: Path) -> list[str]:
    """Mount points at or below `prefix`, deepest first."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(prefix) or point.startswith(f"{prefix}/"):
            points.append(point)
    return sorted(set(points), key=lambda p: -p.count("/"))


def _shim_pids(socket: Path) -> list[int]:
    """containerd's shims for this socket: they outlive containerd by design."""
    marker = f"-address\0{socket}\0".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
    return pids


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
    """Remove the Pods and stop the node's processes; the network stays, so a
    control plane listening on the node's address can still stop cleanly."""
    socket = workdir / "containerd.sock"
    # the kubelet first, so it restarts nothing
    stop_pid_if(pids.get("kubelet"))
    if socket.exists():
        bins = tools_bin or _cached_tools()
        if bins is not None:
            # stopping Pod sandboxes runs the CNI DEL: veths, IP leases, masquerade rules
            crictl(bins, socket, "rmp", "--all", "--force", check=False)
    rest = [
        pids[name]
        for name in ("kube-proxy", "coredns", "kube-scheduler", "containerd")
        if name in pids
    ]
    stop_pids(rest, timeout=10)
    stop_pids(_shim_pids(socket), timeout=5)


def release_machine(workdir: Path, *, kubelet_bin: Path | None = None) -> None:
    """Give back what the node took: iptables rules, mounts, the bridge,
    cgroups, sysctls, the claim. After `stop_node`."""
    kube_proxy = (kubelet_bin or _cached_node_bin() or Path("/nonexistent")) / "kube-proxy"
    if kube_proxy.exists():
        subprocess.run([str(kube_proxy), "--cleanup"], capture_output=True, timeout=60)
    remove_kube_chains()
    for point in _mounts_under(workdir):
        subprocess.run(["umount", "--lazy", point], capture_output=True)
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
    remove_cgroups()
    # containerd keeps shim sockets in a fixed place; leave it as found
    for leftover in ("s", "fifo", ""):
        with contextlib.suppress(OSError):
            (Path("/run/containerd") / leftover).rmdir()
    restore_sysctls(workdir)
    owner = CLAIM_DIR / "owner"
    with contextlib.suppress(OSError), _locked(CLAIM_DIR / "lock"):
        if owner.exists() and owner.read_text().strip() == str(workdir):
            owner.unlink()


def remove_kube_chains() -> None:
    """Drop the KUBE-* chains (and the jumps to them) that kubelet and kube-proxy
    leave behind; `kube-proxy --cleanup` removes only its own."""
    for tool in ("iptables", "ip6tables"):
        dump = subprocess.run([f"{tool}-save"], capture_output=True, text=True).stdout
        table = ""
        rules: list[tuple[str, list[str]]] = []
        chains: list[tuple[str, str]] = []
        for line in dump.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":KUBE-"):
                chains.append((table, line[1:].split()[0]))
            elif line.startswith("-A ") and "KUBE-" in line:
                args = shlex.split(line)
                if not args[1].startswith("KUBE-"):
                    rules.append((table, ["-D", *args[1:]]))
        for table, rule in rules:
            subprocess.run([tool, "-w", "-t", table, *rule], capture_output=True)
        for flag in ("-F", "-X"):
            for table, chain in chains:
                subprocess.run([tool, "-w", "-t", table, flag, chain], capture_output=True)


def stop_pid_if(pid: int | None) -> None:
    if pid is not None:
        stop_pid(pid)


def _cached_tools() -> Path | None:
    with contextlib.suppress(RuntimeError, OSError):
        return Path(_run_script(TOOLS_BUILD))
    return None


def _cached_node_bin() -> Path | None:
    with contextlib.suppress(RuntimeError, OSError):
        return Path(_run_script(NODE_BUILD, "node"))
    return None


def _http_ok(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=3):
            return True
    except (urllib.error.URLError, OSError):
        return False


def _https_ok(url: str) -> bool:
    import ssl
    import urllib.error
    import urllib.request

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=3, context=ctx):
            return True
    except (urllib.error.URLError, OSError):
        return False


def remove_workdir(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)

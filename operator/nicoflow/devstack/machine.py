"""What a local node takes from the machine, and gives back: the claim that
makes it the machine's only node, the Pods' bridge, a few sysctls, a cgroup
subtree, the KUBE-* iptables chains, mounts, and containerd's shims."""

from __future__ import annotations

import contextlib
import fcntl
import json
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

BRIDGE = "nf0"
POD_CIDR = "10.244.0.0/24"
# the bridge's own address: the node's InternalIP, where the apiserver, kubelet
# and CoreDNS listen for Pods
NODE_IP = "10.244.0.1"
# every Pod's cgroup lives below this one, so removal knows what is ours
CGROUP_ROOT = "nico-flow"
CLAIM_DIR = Path("/run/nico-flow-node")
# what the node changes and gives back (the kubelet sets the vm/kernel ones)
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


# -- the claim: one node per machine -------------------------------------------------


def claim(
    workdir: Path, timeout: float, clean_up: Callable[[Path], None], poll: float = 5.0
) -> None:
    """Make `workdir` the machine's node, waiting while another node runs;
    `clean_up` first takes away what a node whose processes died left behind."""
    CLAIM_DIR.mkdir(parents=True, exist_ok=True)
    owner = CLAIM_DIR / "owner"
    deadline = time.monotonic() + timeout
    while True:
        with _locked():
            current = Path(owner.read_text().strip()) if owner.exists() else None
            if current is None or current == workdir:
                owner.write_text(str(workdir))
                return
            if not node_alive(current):
                clean_up(current)
                owner.write_text(str(workdir))
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"another local node ({current}) still runs after {timeout:.0f}s")
        time.sleep(poll)


def held_by_another(workdir: Path) -> bool:
    """Another node holds the machine: what is machine-wide is not ours to undo."""
    owner = CLAIM_DIR / "owner"
    with contextlib.suppress(OSError):
        return owner.read_text().strip() != str(workdir)
    return False


def release_claim(workdir: Path) -> None:
    owner = CLAIM_DIR / "owner"
    with contextlib.suppress(OSError), _locked():
        if owner.exists() and owner.read_text().strip() == str(workdir):
            owner.unlink()


def node_alive(workdir: Path) -> bool:
    """A node process (containerd, kubelet ...) still runs from `workdir`;
    orphaned shims do not count, the clean-up stops them."""
    marker = str(workdir).encode()
    for proc in _processes():
        with contextlib.suppress(OSError):
            ours = marker in (proc / "cmdline").read_bytes()
            if ours and not (proc / "comm").read_text().startswith("containerd-shim"):
                return True
    return False


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    with (CLAIM_DIR / "lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -- network ---------------------------------------------------------------------


def make_bridge() -> None:
    """The Pods' bridge with the node's address, made before anything listens
    on that address; the CNI bridge plugin then only attaches Pods to it."""
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode != 0:
        subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
    addrs = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", BRIDGE], capture_output=True, text=True
    ).stdout
    if f" {NODE_IP}/" not in addrs:
        prefix = POD_CIDR.split("/")[1]
        subprocess.run(["ip", "addr", "add", f"{NODE_IP}/{prefix}", "dev", BRIDGE], check=True)
    subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)


def remove_bridge() -> None:
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)


# The CNI network of the node (node_config's conflist names it): the bridge
# plugin tags its per-Pod masquerade rules with it.
CNI_NETWORK = "nico-flow"


def remove_kube_chains() -> None:
    """Drop the node's chains and the jumps to them: the kubelet's and
    kube-proxy's KUBE-*, and the CNI bridge plugin's per-Pod CNI-* chains,
    which stay behind when a sandbox goes without a CNI DEL. `kube-proxy
    --cleanup` removes only its own."""
    for tool in ("iptables", "ip6tables"):
        dump = subprocess.run([f"{tool}-save"], capture_output=True, text=True).stdout
        jumps, chains = kube_rules(dump)
        for table, rule in jumps:
            subprocess.run([tool, "-w", "-t", table, "-D", *rule], capture_output=True)
        for flag in ("-F", "-X"):
            for table, chain in chains:
                subprocess.run([tool, "-w", "-t", table, flag, chain], capture_output=True)


def kube_rules(dump: str) -> tuple[list[tuple[str, list[str]]], list[tuple[str, str]]]:
    """From iptables-save output: (table, rule) of the built-in chains' rules
    that lead to the node's chains, and (table, chain) of those chains.

    Every KUBE-* chain is the node's. A CNI-* chain is when a rule in it or a
    jump to it names our CNI network, or when it is empty and nothing jumps to
    it (inert, whoever left it); other CNI users' chains (podman's) stay."""
    tag = f'name: "{CNI_NETWORK}"'
    table = ""
    declared: list[tuple[str, str]] = []
    # (table, chain) -> whether a line touching it names our network
    touched: dict[tuple[str, str], bool] = {}
    rules: list[tuple[str, list[str]]] = []
    for line in dump.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            name = line[1:].split()[0]
            if name.startswith(("KUBE-", "CNI-")):
                declared.append((table, name))
        elif line.startswith("-A "):
            args = shlex.split(line)
            rules.append((table, args[1:]))
            target = args[args.index("-j") + 1] if "-j" in args[:-1] else ""
            ours = any(tag in arg for arg in args)
            for chain in (args[1], target):
                if chain.startswith("CNI-"):
                    key = (table, chain)
                    touched[key] = touched.get(key, False) or ours
    chains = [(t, c) for t, c in declared if c.startswith("KUBE-") or touched.get((t, c), True)]
    owned = set(chains)
    jumps = []
    for t, rule in rules:
        target = rule[rule.index("-j") + 1] if "-j" in rule[:-1] else ""
        if (t, rule[0]) not in owned and (t, target) in owned:
            jumps.append((t, rule))
    return jumps, chains


# -- sysctls -------------------------------------------------------------------------


def _sysctl(name: str) -> Path:
    return Path("/proc/sys") / name


def read_sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = _sysctl(name).read_text().strip()
    return values


def set_sysctls(workdir: Path, values: dict[str, str]) -> None:
    """Set `values`, keeping what the machine had (once) for `restore_sysctls`."""
    saved = workdir / "sysctl-before.json"
    if not saved.exists():
        saved.write_text(json.dumps(read_sysctls(), indent=1))
    for name, value in values.items():
        _sysctl(name).write_text(value)


def restore_sysctls(workdir: Path) -> None:
    saved = workdir / "sysctl-before.json"
    if not saved.exists():
        return
    for name, value in json.loads(saved.read_text()).items():
        with contextlib.suppress(OSError):
            _sysctl(name).write_text(value)
    saved.unlink()


# -- cgroups ---------------------------------------------------------------------


def cgroup_v1_hierarchies() -> list[Path]:
    """The mounted cgroup v1 hierarchies (cpu, memory, name=systemd ...)."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if parts[2] == "cgroup":
            found.append(Path(parts[1]))
    return found


def make_cgroup_root() -> None:
    """The kubelet's cgroup root in every hierarchy; cpuset needs its CPUs and
    memory nodes set before a task may join."""
    for hierarchy in cgroup_v1_hierarchies():
        path = hierarchy / CGROUP_ROOT
        path.mkdir(exist_ok=True)
        if (hierarchy / "cpuset.cpus").exists():
            for key in ("cpuset.cpus", "cpuset.mems"):
                if not (path / key).read_text().strip():
                    (path / key).write_text((hierarchy / key).read_text())


def remove_cgroups() -> None:
    """rmdir our cgroups bottom-up (an empty cgroup directory removes cleanly)."""
    for hierarchy in cgroup_v1_hierarchies():
        top = hierarchy / CGROUP_ROOT
        if not top.is_dir():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for path in [*dirs, top]:
            with contextlib.suppress(OSError):
                path.rmdir()


# -- mounts and processes ---------------------------------------------------------


def unmount_under(prefix: Path) -> None:
    """Lazily unmount everything at or below `prefix`, deepest first: Pod
    volumes, container root filesystems, network namespaces."""
    points = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(prefix) or point.startswith(f"{prefix}/"):
            points.add(point)
    for point in sorted(points, key=lambda p: -p.count("/")):
        subprocess.run(["umount", "--lazy", point], capture_output=True)


def shim_pids(socket: Path) -> list[int]:
    """containerd's shims for `socket`: they outlive containerd by design."""
    marker = f"-address\0{socket}\0".encode()
    pids = []
    for proc in _processes():
        with contextlib.suppress(OSError):
            if marker in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
    return pids


def remove_containerd_leftovers() -> None:
    """containerd 1.6 keeps shim sockets under /run/containerd whatever its
    state directory; leave that as found (removed only when empty)."""
    for leftover in ("s", "fifo", ""):
        with contextlib.suppress(OSError):
            (Path("/run/containerd") / leftover).rmdir()


def _processes() -> Iterator[Path]:
    return (p for p in Path("/proc").iterdir() if p.name.isdigit())

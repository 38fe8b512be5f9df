"""The local node's configuration files, as pure functions of its directory,
ports and images: containerd, the CNI network, the kubelet, kube-proxy,
CoreDNS, and the storage objects of the cluster."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nicoflow.devstack.machine import BRIDGE, CGROUP_ROOT, NODE_IP, POD_CIDR

NODE_NAME = "nico-flow-node"
CLUSTER_DOMAIN = "cluster.local"
CNI_BIN = Path("/usr/lib/cni")
STORAGE_CLASS = "local"


@dataclass(frozen=True)
class Layout:
    """Where the node keeps its files: all below `workdir`, so removing it and
    unmounting below it leaves nothing behind."""

    workdir: Path

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd.sock"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "node.kubeconfig"

    def path(self, *parts: str) -> Path:
        return self.workdir.joinpath(*parts)


def containerd_toml(layout: Layout, pause_image: str) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    runc = f"{cri}.containerd.runtimes.runc"
    return f"""version = 2
root = "{layout.path("containerd", "root")}"
state = "{layout.path("containerd", "state")}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{layout.socket}"
[ttrpc]
  address = "{layout.socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{layout.path("containerd", "opt")}"
[{cri}]
  sandbox_image = "{pause_image}"
  disable_apparmor = true
  # root here lacks CAP_SYS_RESOURCE: runc may not set an oom_score_adj below
  # containerd's own (the sandbox's -998 fails with "permission denied")
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  stream_server_address = "127.0.0.1"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
  [{runc}]
    runtime_type = "io.containerd.runc.v2"
  [{runc}.options]
    SystemdCgroup = false
    Root = "{layout.path("containerd", "runc")}"
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{layout.path("cni", "net.d")}"
    max_conf_num = 1
"""


def cni_conflist(layout: Layout) -> dict[str, Any]:
    """Pods on the node's bridge, addresses from POD_CIDR, the node's address
    as their gateway; masquerade and hairpin so Services reach Pods."""
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
                    "dataDir": str(layout.path("cni", "ipam")),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(
    layout: Layout, *, port: int, healthz_port: int, client_ca: Path
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # cgroups v1 here: deprecated since 1.35, refused unless allowed
        "failCgroupV1": False,
        # no systemd; and containerd 1.6 does not answer the kubelet's
        # RuntimeConfig call, so the kubelet uses this value
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        # the apiserver shows a client certificate (logs, exec); others are
        # checked with the apiserver
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [NODE_IP],
        # Pods get the cluster's names only, not the machine's resolvers
        "resolvConf": str(layout.path("resolv.conf")),
        "containerRuntimeEndpoint": f"unix://{layout.socket}",
        "podLogsDirectory": str(layout.path("logs", "pods")),
        "volumePluginDir": str(layout.path("kubelet", "volume-plugins")),
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
        "shutdownGracePeriod": "0s",
    }


def kube_proxy_config(layout: Layout, *, healthz_port: int, metrics_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
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


def corefile(layout: Layout, *, ready_port: int) -> str:
    """Answers the cluster's names only, on the node's address: nothing is
    forwarded off the machine."""
    return f""".:53 {{
    bind {NODE_IP}
    errors
    ready 127.0.0.1:{ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {layout.kubeconfig}
        pods insecure
        ttl 5
    }}
    cache 5
    loadbalance
}}
"""


def storage_objects(layout: Layout, volumes: int) -> list[dict[str, Any]]:
    """A default StorageClass and `volumes` node-local PersistentVolumes for
    claims to bind (the bundled PostgreSQL's). Kept (Retain): the directories
    go with the node's."""
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
    for i in range(volumes):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"{NODE_NAME}-pv{i}"},
                "spec": {
                    "capacity": {"storage": "10Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": STORAGE_CLASS,
                    "hostPath": {"path": str(volume_dir(layout, i)), "type": "Directory"},
                },
            }
        )
    return docs


def volume_dir(layout: Layout, i: int) -> Path:
    return layout.path("volumes", f"pv{i}")

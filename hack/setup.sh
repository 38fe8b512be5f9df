#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmarks need on a machine that
# has none of it, and reuses caches under ~/.cache/nico-flow when they exist:
#   - PostgreSQL and openssl from Debian's packages (when missing), and what
#     the local node runs: containerd, runc, the CNI plugins, iptables, and
#     buildah, mmdebstrap and catatonit to build its images
#   - uv (from PyPI) and the Python environment from uv.lock
#   - etcd, kube-apiserver and kube-controller-manager, then kubelet,
#     kube-scheduler and kube-proxy, built from the Kubernetes Go modules;
#     CoreDNS and crictl from theirs
#   - the node's images, from Debian's packages and PyPI (hack/build-images.sh;
#     as root, which the node needs), built beside the Go builds
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${NICO_FLOW_CACHE:-$HOME/.cache/nico-flow}
mkdir -p "$CACHE"

need_apt=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
command -v openssl >/dev/null || need_apt+=(openssl)
new_containerd=0
for pkg in containerd runc buildah mmdebstrap catatonit; do
  command -v $pkg >/dev/null || PATH=$PATH:/usr/sbin command -v $pkg >/dev/null || need_apt+=($pkg)
done
[[ " ${need_apt[*]} " == *" containerd "* ]] && new_containerd=1
[[ -x /usr/lib/cni/bridge ]] || need_apt+=(containernetworking-plugins)
[[ -x /usr/sbin/iptables ]] || need_apt+=(iptables)
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]} from Debian's packages" >&2
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
  # the package starts a cluster of its own; tests run their own servers
  $SUDO systemctl disable --now postgresql >/dev/null 2>&1 || $SUDO service postgresql stop >/dev/null 2>&1 || true
  # the same for containerd: the local node runs its own, on its own socket
  if ((new_containerd)); then
    $SUDO systemctl disable --now containerd >/dev/null 2>&1 || true
  fi
fi

UV=$(command -v uv || true)
if [[ -z $UV ]]; then
  UV="$CACHE/tools/bin/uv"
  if [[ ! -x $UV ]]; then
    echo "setup: installing uv into $CACHE/tools" >&2
    python3 -m venv "$CACHE/tools"
    "$CACHE/tools/bin/pip" install -q uv==0.13.9
  fi
fi
"$UV" sync --frozen --quiet

# the images need no Go: they build (network and disk bound) while Go compiles
images_log=$(mktemp)
images_pid=""
if [[ $(id -u) == 0 ]]; then
  bash hack/build-images.sh >"$images_log" 2>&1 &
  images_pid=$!
else
  echo "setup: not root, so no images for the local node (it needs root)" >&2
fi

bins=$(bash hack/build-control-plane.sh)
echo "setup: control plane binaries in $bins" >&2
bins=$(bash hack/build-control-plane.sh node)
echo "setup: node binaries in $bins" >&2
bins=$(bash hack/build-node-tools.sh)
echo "setup: coredns and crictl in $bins" >&2

if [[ -n $images_pid ]]; then
  if ! wait "$images_pid"; then
    cat "$images_log" >&2
    echo "setup: building the node's images failed (hack/build-images.sh)" >&2
    exit 1
  fi
  echo "setup: images in $(dirname "$(tail -1 "$images_log" | cut -d' ' -f3)")" >&2
fi
rm -f "$images_log"

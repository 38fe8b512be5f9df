#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmarks need on a machine that
# has none of it, and reuses caches under ~/.cache/nico-flow when they exist:
#   - PostgreSQL and openssl from Debian's packages (when missing)
#   - uv (from PyPI) and the Python environment from uv.lock
#   - etcd, kube-apiserver and kube-controller-manager built from Go modules
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${NICO_FLOW_CACHE:-$HOME/.cache/nico-flow}
mkdir -p "$CACHE"

need_apt=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
command -v openssl >/dev/null || need_apt+=(openssl)
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]} from Debian's packages" >&2
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
  # the package starts a cluster of its own; tests run their own servers
  $SUDO systemctl disable --now postgresql >/dev/null 2>&1 || $SUDO service postgresql stop >/dev/null 2>&1 || true
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

bins=$(bash hack/build-control-plane.sh)
echo "setup: control plane binaries in $bins" >&2

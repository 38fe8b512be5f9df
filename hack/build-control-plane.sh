#!/usr/bin/env bash
# Builds Kubernetes binaries from the published Go modules into a cache outside
# the repository, keyed by Kubernetes and Go versions. A second run with the
# same key returns at once. Two sets, each a folder of tiny main packages:
#   control-plane  kube-apiserver, kube-controller-manager, etcd (hack/k8s-bins/cmd)
#   node           kubelet, kube-scheduler, kube-proxy         (hack/k8s-bins/node)
#
#   hack/build-control-plane.sh            # prints the bin directory
#   hack/build-control-plane.sh node
#   K8S_VERSION=1.36.3 hack/build-control-plane.sh
set -euo pipefail

SET=${1:-control-plane}
case $SET in
  control-plane) SRC=cmd ;;
  node) SRC=node ;;
  *) echo "build-control-plane: unknown set '$SET' (control-plane or node)" >&2; exit 2 ;;
esac
K8S=${K8S_VERSION:-1.37.2}
GOV=$(go env GOVERSION)
CACHE=${NICO_FLOW_CACHE:-$HOME/.cache/nico-flow}
KEY="k8s-$K8S-$GOV"
OUT="$CACHE/$SET/$KEY/bin"
HERE=$(cd "$(dirname "$0")" && pwd)

built=1
for cmd in "$HERE/k8s-bins/$SRC"/*/; do
  [[ -x $OUT/$(basename "$cmd") ]] || built=0
done
if ((built)); then
  echo "$OUT"
  exit 0
fi

WORK="$CACHE/$SET/$KEY/src"
rm -rf "$WORK"
mkdir -p "$WORK/cmd" "$OUT"
cp -r "$HERE/k8s-bins/$SRC"/. "$WORK/cmd/"
cd "$WORK"

export CGO_ENABLED=0 GOFLAGS=-mod=mod
go mod init nicoflow.invalid/k8s-bins >&2
# k8s.io/kubernetes requires its staging modules at v0.0.0 and maps them to
# ./staging with replace directives, which a consumer does not inherit: map
# each one to its published tag, reading the list from the module's own go.mod.
KGOMOD=$(go mod download -json "k8s.io/kubernetes@v$K8S" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[A-Za-z0-9._-]*\) => \./staging/.*#\1#p' "$KGOMOD"); do
  go mod edit -replace="$m=$m@v0.${K8S#1.}"
done
go mod edit -require="k8s.io/kubernetes@v$K8S"
go mod tidy >&2
MINOR=$(echo "$K8S" | cut -d. -f2)
LDV="-X k8s.io/component-base/version.gitVersion=v$K8S -X k8s.io/component-base/version.gitMajor=1"
LDV="$LDV -X k8s.io/component-base/version.gitMinor=$MINOR -X k8s.io/client-go/pkg/version.gitVersion=v$K8S"
start=$(date +%s)
nice -n 10 go build -p "${BUILD_JOBS:-2}" -trimpath -ldflags "-s -w $LDV" -o "$OUT/" ./cmd/... >&2
echo "built $SET v$K8S in $(( $(date +%s) - start ))s" >&2
echo "$OUT"

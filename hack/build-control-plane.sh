#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and etcd from the published Go
# modules into a cache outside the repository, keyed by Kubernetes and Go
# versions. A second run with the same key returns at once.
#
#   hack/build-control-plane.sh            # prints the bin directory
#   K8S_VERSION=1.36.3 hack/build-control-plane.sh
set -euo pipefail

K8S=${K8S_VERSION:-1.37.2}
GOV=$(go env GOVERSION)
CACHE=${NICO_FLOW_CACHE:-$HOME/.cache/nico-flow}
KEY="k8s-$K8S-$GOV"
OUT="$CACHE/control-plane/$KEY/bin"
HERE=$(cd "$(dirname "$0")" && pwd)

if [[ -x $OUT/kube-apiserver && -x $OUT/etcd && -x $OUT/kube-controller-manager ]]; then
  echo "$OUT"
  exit 0
fi

WORK="$CACHE/control-plane/$KEY/src"
rm -rf "$WORK"
mkdir -p "$WORK" "$OUT"
cp -r "$HERE/k8s-bins/cmd" "$WORK/"
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
go build -p "${BUILD_JOBS:-2}" -trimpath -ldflags "-s -w $LDV" -o "$OUT/" ./cmd/... >&2
echo "built control plane v$K8S in $(( $(date +%s) - start ))s" >&2
echo "$OUT"

#!/usr/bin/env bash
# Builds the local node's helpers from their Go modules into a cache keyed by
# their versions and Go's, and prints the bin directory (a second run returns at
# once):
#   coredns  Service names for Pods; only the plugins the node's Corefile uses
#            (hack/node-tools/coredns/main.go)
#   crictl   the CRI client that stops and removes Pods when the node goes down
set -euo pipefail

COREDNS=${COREDNS_VERSION:-1.15.0}
CRICTL=${CRICTL_VERSION:-1.37.0}
GOV=$(go env GOVERSION)
CACHE=${NICO_FLOW_CACHE:-$HOME/.cache/nico-flow}
KEY="coredns-$COREDNS-crictl-$CRICTL-$GOV"
OUT="$CACHE/node-tools/$KEY/bin"
HERE=$(cd "$(dirname "$0")" && pwd)
if [[ -x $OUT/coredns && -x $OUT/crictl ]]; then
  echo "$OUT"
  exit 0
fi

WORK="$CACHE/node-tools/$KEY/src"
rm -rf "$WORK"
mkdir -p "$WORK" "$OUT"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
start=$(date +%s)

# crictl's module has no replace directives: go install builds it as released
GOBIN="$OUT" nice -n 10 go install -trimpath \
  -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=v$CRICTL" \
  "sigs.k8s.io/cri-tools/cmd/crictl@v$CRICTL" >&2

cp -r "$HERE/node-tools/coredns" "$WORK/"
cd "$WORK"
go mod init nicoflow.invalid/node-tools >&2
go mod edit -require="github.com/coredns/coredns@v$COREDNS"
go mod tidy >&2
nice -n 10 go build -p "${BUILD_JOBS:-2}" -trimpath \
  -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=v$COREDNS" \
  -o "$OUT/" ./coredns >&2
echo "built coredns v$COREDNS and crictl v$CRICTL in $(( $(date +%s) - start ))s" >&2
echo "$OUT"

#!/usr/bin/env bash
# Prints the path of a grpcurl binary, building it once from its Go module.
#
# grpcurl is built with `go install` through the Go module proxy (the same way
# the control-plane script builds Kubernetes), so the test drives the real
# client people use. Cached per version under ~/.cache/nico-flow/grpcurl/<version>/
# (NICO_FLOW_CACHE overrides the root; GRPCURL_VERSION overrides the version).
set -euo pipefail
VERSION=${GRPCURL_VERSION:-v1.9.3}
CACHE=${NICO_FLOW_CACHE:-$HOME/.cache/nico-flow}
DEST="$CACHE/grpcurl/$VERSION"
if [[ -x $DEST/grpcurl ]]; then
  echo "$DEST/grpcurl"
  exit 0
fi
command -v go >/dev/null || { echo "get-grpcurl: 'go' is not on PATH" >&2; exit 1; }
mkdir -p "$DEST"
# build into a scratch dir first: a failed build never leaves a half binary behind
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
GOBIN="$work" CGO_ENABLED=0 go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$VERSION" >&2
"$work/grpcurl" -version >&2
mv "$work/grpcurl" "$DEST/grpcurl"
echo "$DEST/grpcurl"

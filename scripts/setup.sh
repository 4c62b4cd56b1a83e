#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine:
#   1. Debian packages for FFmpeg development (ffmpeg-next's bindgen needs clang);
#   2. a CPU libtorch 2.11.0 assembled from PyPI wheels into .deps/libtorch (no Python venv);
# A second run skips whatever is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEPS=$ROOT/.deps
LIBTORCH=$DEPS/libtorch
TORCH_VERSION=2.11.0

say() { echo "[setup] $*"; }

# 1. Debian packages ---------------------------------------------------------
PKGS=(ffmpeg libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libavfilter-dev
      libavdevice-dev libswresample-dev pkg-config clang libclang-dev python3-venv unzip
      chromium)  # chromium: the headless browser the report test loads report.html in
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
else
  say "Debian packages present"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "[setup] cargo not found on PATH: install the Rust toolchain (rustup) first" >&2
  exit 1
fi

# 2. CPU libtorch from wheels -----------------------------------------------
if [[ -f $LIBTORCH/build-version && $(cat "$LIBTORCH/build-version") == "$TORCH_VERSION" ]]; then
  say "libtorch $TORCH_VERSION present in $LIBTORCH"
  # Earlier set-ups left it 0700 (mktemp): readable by every user of the checkout.
  chmod -R a+rX "$LIBTORCH"
else
  say "assembling libtorch $TORCH_VERSION in $LIBTORCH (downloads about 540 MB once)"
  WHEELS=$DEPS/wheels
  mkdir -p "$WHEELS"
  PIP=(python3 -m pip download --no-deps --only-binary=:all: --python-version 3.11
       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_25_x86_64
       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -q -d "$WHEELS")
  "${PIP[@]}" "torch==$TORCH_VERSION" nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
  tmp=$(mktemp -d "$DEPS/libtorch.tmp.XXXX")
  # mktemp makes it 0700: other users of the checkout (a cluster job's service account) must
  # be able to load libtorch from it.
  chmod 755 "$tmp"
  mkdir -p "$tmp/lib"
  (cd "$tmp" && unzip -q "$WHEELS"/torch-$TORCH_VERSION-*.whl 'torch/include/*' \
      'torch/lib/libtorch_cpu.so' 'torch/lib/libtorch.so' 'torch/lib/libc10.so' 'torch/lib/libgomp.so.1' \
     && mv torch/include include && mv torch/lib/* lib/ && rm -rf torch)
  (cd "$tmp" && unzip -q -j -o "$WHEELS"/nvidia_cuda_runtime-*.whl 'nvidia/cu13/lib/libcudart.so.13' -d lib \
     && unzip -q -j -o "$WHEELS"/nvidia_cuda_cupti-*.whl 'nvidia/cu13/lib/libcupti.so.13' -d lib)
  echo "$TORCH_VERSION" > "$tmp/build-version"
  rm -rf "$LIBTORCH"
  mv "$tmp" "$LIBTORCH"
  rm -rf "$WHEELS"
  say "libtorch ready ($(du -sh "$LIBTORCH" | cut -f1))"
fi

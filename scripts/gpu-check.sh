#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU and Python torch 2.11, but no network and no FFmpeg:
# runs the FFmpeg-free vidfeat binary (built elsewhere with
#   cargo build --release --no-default-features --target-dir target/extract-only)
# against that Python's torch libraries, and prints:
#   * whether vidfeat finds CUDA;
#   * CNN-only frames/s for EfficientNet-Lite0 and a 2048-d Inception v3 (random weights, exported
#     here with scripts/export_model.py) at batch 64 and 256, fp32 and fp16;
#   * extract frames/s from a frame cache made elsewhere by `vidfeat decode` (its entries are
#     repeated to make a longer run), fp32 and fp16, and how far fp16 features are from fp32.
#
#   * model speed: fp16 (weights where the module converts, else autocast: `precision` says
#     which), channels-last inputs (the CUDA default), cuDNN autotuning, batch sizes;
#   * with FULL_BIN (a build with FFmpeg, whose libraries load there) and CLIP: NVDEC
#     (`--hwdec cuda`) against CPU decoding of the clip, time and pixel agreement of its rows.
#
# usage: [BASE_BIN=older-vidfeat] [FULL_BIN=vidfeat-with-ffmpeg CLIP=video.mp4] \
#        scripts/gpu-check.sh VIDFEAT_BIN FRAME_CACHE [WORK_DIR]
set -uo pipefail
BIN=$(realpath "$1"); CACHE=$(realpath "$2"); WORK=${3:-$(mktemp -d)}
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LITE0=models/efficientnet-lite0.pt
mkdir -p "$WORK"

# Python torch's libraries (libtorch_cpu, libtorch_cuda, libc10, ...) and NVIDIA's CUDA libraries.
LIBS=$($PY - <<'EOF'
import glob, os, torch
d = [os.path.join(os.path.dirname(torch.__file__), "lib")]
for base in {os.path.dirname(os.path.dirname(torch.__file__))}:
    d += sorted(glob.glob(os.path.join(base, "nvidia", "*", "lib")))
    d += sorted(glob.glob(os.path.join(base, "nvidia", "cu*", "lib")))
print(":".join(dict.fromkeys(d)))
EOF
)
export LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# tch's autocast calls libtorch APIs that torch 2.11 deprecates, with a warning per batch.
export TORCH_CPP_LOG_LEVEL=${TORCH_CPP_LOG_LEVEL:-ERROR}
echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"
$PY -c "import torch; print('python torch', torch.__version__, 'cuda available:', torch.cuda.is_available())"
echo "missing libraries for vidfeat: $(ldd "$BIN" | grep -c 'not found')"
ldd "$BIN" | grep 'not found'

echo "== does vidfeat find CUDA?"
"$BIN" cnn-bench --device cuda --model $LITE0 --batch 1 --seconds 0.1 2>&1 | tail -2

echo "== CNN-only frames/s"
"$BIN" cnn-bench --device cuda --model $LITE0 --batch 64,256 --fp16 --seconds 4
$PY scripts/export_model.py --arch inception_v3 --random-weights --out "$WORK/models" >/dev/null 2>&1 \
  && "$BIN" cnn-bench --device cuda --model "$WORK/models/inception_v3.pt" --batch 64,256 --fp16 --seconds 4 \
  || echo "inception_v3 export failed (torchvision missing?)"

echo "== Kinetics-400 I3D clips/s (scripts/i3d-setup.sh makes it; carry .deps/models)"
if [[ -f .deps/models/i3d-kinetics-400.pt ]]; then
  "$BIN" cnn-bench --device cuda --model .deps/models/i3d-kinetics-400.pt --batch 8,32 --fp16 --cudnn-benchmark --seconds 4
else
  echo "no .deps/models/i3d-kinetics-400.pt"
fi

echo "== model speed: cuDNN autotuning, bigger batches (fp32 and fp16)"
"$BIN" cnn-bench --device cuda --model $LITE0 --batch 64,256,512 --fp16 --cudnn-benchmark --seconds 4
[[ -f "$WORK/models/inception_v3.pt" ]] && "$BIN" cnn-bench --device cuda --model "$WORK/models/inception_v3.pt" --batch 256,512 --fp16 --cudnn-benchmark --seconds 4

echo "== extract from the frame cache"
BIG="$WORK/cache-x40"
rm -rf "$BIG"; mkdir -p "$BIG"
ln -s "$CACHE/frames" "$BIG/frames"
cp "$CACHE/vocabulary.csv" "$BIG/" 2>/dev/null
$PY - "$CACHE" "$BIG" 150 <<'EOF'
import json, sys
src, dst, times = sys.argv[1], sys.argv[2], int(sys.argv[3])
vids = [json.loads(l) for l in open(f"{src}/videos.jsonl")]
out, i = [], 0
for r in range(times):
    for v in vids:
        v = dict(v, idx=i, id=f"{v['id']}_{r:03d}")
        out.append(v); i += 1
out.sort(key=lambda v: (v["split"], v["shard"], v["idx"]))
for j, v in enumerate(out):
    v["idx"] = j
open(f"{dst}/videos.jsonl", "w").write("".join(json.dumps(v) + "\n" for v in out))
m = json.load(open(f"{src}/manifest.json")); m["videos"] = len(out)
json.dump(m, open(f"{dst}/manifest.json", "w"))
print(f"{len(out)} videos, {sum(v['rows'] for v in out)} frames")
EOF
for prec in fp32 fp16; do
  flag=""; pca=""
  [[ $prec == fp16 ]] && flag="--fp16" && pca="--pca $WORK/out-fp32/pca.npz"
  for bs in 64 256; do
    "$BIN" extract --cache "$BIG" --model $LITE0 --out "$WORK/out-$prec-$bs" --device cuda --batch-size $bs $flag ${pca} --json 2>/dev/null \
      | $PY -c "import json,sys; s=json.load(sys.stdin); print('$prec batch $bs:', s['rows'], 'frames', round(s['throughput']['frames_per_s'],1), 'frames/s end to end,', s['wall_time_s'], 's (device', s['device'] + ')')"
  done
  [[ $prec == fp32 ]] && cp -r "$WORK/out-fp32-64" "$WORK/out-fp32"
done

echo "== fp16 vs fp32, and CUDA vs CPU (same PCA, its 32 leading dims: the PCA was fitted on few frames)"
"$BIN" extract --cache "$CACHE" --model $LITE0 --out "$WORK/a32" --device cuda --pca "$WORK/out-fp32/pca.npz" --pca-dims 32 >/dev/null 2>&1
"$BIN" extract --cache "$CACHE" --model $LITE0 --out "$WORK/a16" --device cuda --fp16 --pca "$WORK/out-fp32/pca.npz" --pca-dims 32 >/dev/null 2>&1
"$BIN" extract --cache "$CACHE" --model $LITE0 --out "$WORK/c32" --device cpu --pca "$WORK/out-fp32/pca.npz" --pca-dims 32 >/dev/null 2>&1
$PY - "$BIN" "$WORK" <<'EOF'
import json, subprocess, sys, glob
import numpy as np
binp, work = sys.argv[1], sys.argv[2]
def load(d, level):
    recs = {}
    for f in sorted(glob.glob(f"{work}/{d}/{level}/*.tfrecord")):
        out = subprocess.run([binp, "inspect", "--values", f], capture_output=True, text=True).stdout
        for l in out.splitlines():
            r = json.loads(l); recs[r["id"]] = r
    return recs
for other in ["a16", "c32"]:
    v32, vo = load("a32", "video"), load(other, "video")
    f32, fo = load("a32", "frame"), load(other, "frame")
    m32 = np.array([v32[k]["mean_rgb"] for k in sorted(v32)]); mo = np.array([vo[k]["mean_rgb"] for k in sorted(vo)])
    r32 = np.concatenate([np.array(f32[k]["rgb"]) for k in sorted(f32)]); ro = np.concatenate([np.array(fo[k]["rgb"]) for k in sorted(fo)])
    step = 4 / 255
    cos = float((m32 * mo).sum() / np.linalg.norm(m32) / np.linalg.norm(mo))
    print(f"cuda fp32 vs {other}: mean_rgb max |diff| {np.abs(m32 - mo).max():.4f} (cosine {cos:.6f}); "
          f"quantized rows equal {np.mean(np.isclose(r32, ro)) * 100:.2f}%, within one bin {np.mean(np.abs(r32 - ro) <= step + 1e-6) * 100:.2f}%")
EOF
# BASE_BIN: an earlier build, timed on the same machine in the same call (before/after).
if [[ -n ${BASE_BIN:-} ]]; then
  BASE=$(realpath "$BASE_BIN")
  echo "== baseline binary $BASE_BIN: CNN-only and extract, fp32"
  "$BASE" cnn-bench --device cuda --model $LITE0 --batch 64,256 --seconds 4
  for bs in 64 256; do
    "$BASE" extract --cache "$BIG" --model $LITE0 --out "$WORK/base-fp32-$bs" --device cuda --batch-size $bs --json 2>/dev/null \
      | $PY -c "import json,sys; s=json.load(sys.stdin); print('baseline fp32 batch $bs:', s['rows'], 'frames', round(s['throughput']['frames_per_s'],1), 'frames/s end to end,', s['wall_time_s'], 's')"
  done
  echo "== same shards as the baseline (fp32, PCA fitted in each run)?"
  for bs in 64 256; do
    same=1
    for f in "$WORK/base-fp32-$bs"/frame/*.tfrecord "$WORK/base-fp32-$bs"/video/*.tfrecord; do
      rel=${f#"$WORK/base-fp32-$bs/"}
      cmp -s "$f" "$WORK/out-fp32-$bs/$rel" || { same=0; echo "differs: batch $bs $rel"; }
    done
    echo "batch $bs: byte-identical $([[ $same == 1 ]] && echo yes || echo no)"
  done
fi
if [[ -n ${FULL_BIN:-} && -n ${CLIP:-} ]]; then
  FULL=$(realpath "$FULL_BIN")
  echo "== NVDEC against CPU decoding: $CLIP"
  for hw in none cuda; do
    /usr/bin/time -f "frames --hwdec $hw: %e s" "$FULL" frames "$CLIP" --out "$WORK/frames-$hw" --size 224x224 --format rgb24 --hwdec $hw --max-frames 0 2>&1 | tail -2
  done
  $PY - "$WORK" <<'EOF'
import sys, json
import numpy as np
w = sys.argv[1]
a = np.fromfile(f"{w}/frames-none/frames.rgb24", np.uint8)
b = np.fromfile(f"{w}/frames-cuda/frames.rgb24", np.uint8)
rows = [len(json.load(open(f"{w}/frames-{h}/frames.json"))["rows"]) for h in ("none", "cuda")]
print("rows (cpu, nvdec):", rows, "decoder:", json.load(open(f"{w}/frames-cuda/frames.json")).get("decoder"))
if a.shape == b.shape:
    d = np.abs(a.astype(int) - b.astype(int))
    print(f"pixels equal {np.mean(d == 0) * 100:.3f}%, within 1 {np.mean(d <= 1) * 100:.3f}%, max diff {d.max()}")
else:
    print("different sizes", a.shape, b.shape)
EOF
  echo "== run, NVDEC against CPU decoding (the clip listed 40 times, EfficientNet-Lite0 on CUDA)"
  LIST="$WORK/nvdec.csv"; echo "id,source" > "$LIST"
  for i in $(seq 1 40); do echo "v$i,$(realpath "$CLIP")" >> "$LIST"; done
  for hw in none cuda; do
    "$FULL" run "$LIST" --device cuda --hwdec $hw --overwrite --json --out "$WORK/run-$hw" 2>"$WORK/run-$hw.log" \
      | $PY -c "import json,sys; s=json.load(sys.stdin); print('run --hwdec $hw:', s['throughput'], s['wall_time_s'], 's')"
    grep -i nvdec "$WORK/run-$hw.log" | head -2
  done
fi
echo "== done"

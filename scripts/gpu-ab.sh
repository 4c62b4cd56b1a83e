#!/usr/bin/env bash
# A/B timing of two builds of the FFmpeg-free binary on a GPU machine (same cache, same PCA,
# runs interleaved so drift hits both): CNN-only frames/s and `extract` wall time, fp32.
# usage: scripts/gpu-ab.sh A_BIN B_BIN FRAME_CACHE [ROUNDS]
set -uo pipefail
A=$(realpath "$1"); B=$(realpath "$2"); CACHE=$(realpath "$3"); ROUNDS=${4:-3}
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
LIBS=$($PY -c "import glob,os,torch; b=os.path.dirname(os.path.dirname(torch.__file__)); print(':'.join([os.path.join(os.path.dirname(torch.__file__),'lib')]+sorted(glob.glob(b+'/nvidia/*/lib'))))")
export LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export TORCH_CPP_LOG_LEVEL=ERROR
# The cache x60 (more frames per run).
BIG=$WORK/cache; mkdir -p "$BIG"; ln -s "$CACHE/frames" "$BIG/frames"; cp "$CACHE/vocabulary.csv" "$BIG/" 2>/dev/null
$PY - "$CACHE" "$BIG" 60 <<'PYEOF'
import json, sys
src, dst, times = sys.argv[1], sys.argv[2], int(sys.argv[3])
vids = [json.loads(l) for l in open(f"{src}/videos.jsonl")]
out = [dict(v, id=f"{v['id']}_{r:03d}") for r in range(times) for v in vids]
out.sort(key=lambda v: (v["split"], v["shard"]))
for j, v in enumerate(out): v["idx"] = j
open(f"{dst}/videos.jsonl", "w").write("".join(json.dumps(v) + "\n" for v in out))
m = json.load(open(f"{src}/manifest.json")); m["videos"] = len(out); json.dump(m, open(f"{dst}/manifest.json", "w"))
print(f"{len(out)} videos, {sum(v['rows'] for v in out)} frames")
PYEOF
"$A" extract --cache "$CACHE" --out "$WORK/pca-run" --device cuda >/dev/null 2>&1
PCA=$WORK/pca-run/pca.npz
for r in $(seq 1 "$ROUNDS"); do
  for which in A B; do
    bin=$A; [[ $which == B ]] && bin=$B
    "$bin" cnn-bench --device cuda --batch 64,256 --seconds 3 2>/dev/null | $PY -c "
import json,sys
for l in sys.stdin: s=json.loads(l); print('round $r $which cnn-only batch', s['batch'], s['frames_per_s'], 'frames/s')"
    for bs in 64 256; do
      rm -rf "$WORK/o"
      "$bin" extract --cache "$BIG" --out "$WORK/o" --device cuda --batch-size $bs --pca "$PCA" --json 2>/dev/null \
        | $PY -c "import json,sys; s=json.load(sys.stdin); print('round $r $which extract batch $bs:', s['rows'], 'frames', round(s['throughput']['frames_per_s'],1), 'frames/s,', s['wall_time_s'], 's')"
    done
  done
done

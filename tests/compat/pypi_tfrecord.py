#!/usr/bin/env python3
"""vidfeat shards through the PyPI `tfrecord` package's loaders (what its PyTorch
`tfrecord.torch.dataset.TFRecordDataset` iterates), checked against `vidfeat inspect --values`.

    pypi_tfrecord.py VIDFEAT_BINARY PLAIN_OUT GZIP_LEGACY_OUT
"""
import sys
from pathlib import Path

import numpy as np
from tfrecord import reader as tfr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import dequantize, same_rows, shards, truth  # noqa: E402

common.BIN = sys.argv[1]
plain, gz = sys.argv[2], sys.argv[3]
T = truth(plain)
dims = next(v["rgb"].shape[1] for v in T.values() if len(v["rgb"]))

seen = set()
for f in shards(plain, "frame"):
    for ctx, feats in tfr.sequence_loader(f, None, {"id": "byte", "labels": "int"}, {"rgb": "byte"}):
        i = bytes(ctx["id"]).decode()
        rows = [np.frombuffer(bytes(r), dtype=np.uint8) for r in feats["rgb"]]
        rgb = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dims), np.float32)
        same_rows(dequantize(rgb), T[i]["rgb"], i)
        assert sorted(ctx["labels"].tolist()) == sorted(T[i]["labels"]), i
        seen.add(i)
assert seen == set(T), seen ^ set(T)

seen = set()
for f in shards(gz, "video"):
    desc = {"video_id": "byte", "labels": "int", "mean_rgb": "float", "mean_audio": "float"}
    for ex in tfr.example_loader(f, None, desc, compression_type="gzip"):
        i = bytes(ex["video_id"]).decode()
        same_rows(ex["mean_rgb"], T[i]["mean_rgb"], i)
        assert ex["mean_audio"].shape == (128,)
        seen.add(i)
assert seen == set(T), seen ^ set(T)
print(f"pypi tfrecord: {len(T)} frame-level and {len(seen)} video-level (gzip, video_id) records match")

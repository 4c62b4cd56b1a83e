"""Helpers shared by the compatibility checks (no TensorFlow, no tfrecord imports here: the two
cannot be imported into one process, both register `tensorflow.Example` protos)."""
import json
import subprocess
from pathlib import Path

import numpy as np

BIN = None  # set by the caller


def vidfeat(*args):
    r = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"vidfeat {' '.join(map(str, args))} exited {r.returncode}:\n{r.stderr}")
    return r.stdout


def shards(out, level):
    return sorted(str(p) for p in (Path(out) / level).glob("*.tfrecord"))


def truth(out):
    """What vidfeat reports: per id, labels, segments, dequantized rows and mean_rgb."""
    t = {}
    for line in vidfeat("inspect", "--values", *shards(out, "frame")).splitlines():
        r = json.loads(line)
        t[r["id"]] = {"labels": r["labels"], "rgb": np.array(r.get("rgb", []), dtype=np.float32), "segments": r.get("segments", [])}
    for line in vidfeat("inspect", "--values", *shards(out, "video")).splitlines():
        r = json.loads(line)
        t[r["id"]]["mean_rgb"] = np.array(r["mean_rgb"], dtype=np.float32)
    return t


def dequantize(q):
    # The YouTube-8M starter code's Dequantize(feat_vector, max=2, min=-2).
    return q * (4.0 / 255.0) + (4.0 / 512.0 - 2.0)


def same_rows(a, b, what):
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    assert np.allclose(a, b, atol=1e-6), f"{what}: values differ by {np.abs(a - b).max()}"

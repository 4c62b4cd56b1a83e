#!/usr/bin/env python3
"""Reference pipeline for the throughput benchmark: what a hand-rolled PyAV script does.

Sequential: PyAV decodes every frame of each video, picks rows with the same 1-fps rule as
vidfeat (the frame on screen at first_pts + k seconds), converts them to RGB at the model size,
and runs the same TorchScript model in torch, one batch per video. Prints one JSON line with
frames and seconds.

usage: reference_pipeline.py MODEL.pt SIDECAR.json VIDEO... [--threads N] [--max-frames 300]
"""
import argparse
import json
import time

import av
import numpy as np
import torch


def sample(path, w, h, max_rows):
    rows = []
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        first = None
        pending = None
        k = 0
        for f in c.decode(s):
            if f.pts is None:
                continue
            t = float(f.pts * s.time_base)
            if first is None:
                first = t
            while pending is not None and first + k < t and k < max_rows:
                rows.append(pending)
                k += 1
            pending = f.to_ndarray(width=w, height=h, format="rgb24")
            if k >= max_rows:
                break
        end = float((s.duration or 0) * s.time_base) if s.duration else None
        while pending is not None and k < max_rows and (end is None and k == 0 or end is not None and first + k < end):
            rows.append(pending)
            k += 1
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("sidecar")
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--max-frames", type=int, default=300)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    side = json.load(open(a.sidecar))
    h, w = side["input_size"]
    mean = torch.tensor(side["mean"]).view(1, 1, 1, 3)
    std = torch.tensor(side["std"]).view(1, 1, 1, 3)
    model = torch.jit.load(a.model).eval()
    t0 = time.time()
    frames = 0
    with torch.no_grad():
        for v in a.videos:
            rows = sample(v, w, h, a.max_frames)
            if not rows:
                continue
            x = torch.from_numpy(np.stack(rows)).float()
            x = ((x - mean) / std).permute(0, 3, 1, 2).contiguous()
            model(x)
            frames += len(rows)
    dt = time.time() - t0
    print(json.dumps({"frames": frames, "seconds": dt, "frames_per_s": frames / dt, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()

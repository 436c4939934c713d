#!/usr/bin/python3
"""Converts a torchvision ResNet state_dict (e.g. resnet101-63fe2227.pth) into a safetensors file that
`ctdet` can load, keeping torchvision's tensor names (conv1.weight, bn1.running_mean, layer1.0.conv1.weight,
..., fc.weight).

Usage: /usr/bin/python3 scripts/torchvision_to_safetensors.py IN.pth OUT.safetensors [--prefix P]
                                                               [--drop-fc] [--arch resnet101]

  IN.pth     anything torch.load gives: a state_dict, {"state_dict"|"model": state_dict}, or an nn.Module
  --prefix   prepended to every name (e.g. "backbone."); default none
  --drop-fc  leave out fc.weight / fc.bias (the ImageNet classifier, unused by the detector)

What changes:
  * BatchNorm `num_batches_tracked` buffers are DROPPED: they are int64 step counters used only by
    BatchNorm in training mode with momentum=None; ctdet's frozen/affine BN never reads them. Their count
    is recorded in __metadata__["dropped"].
  * Every tensor is written as little-endian float32 (F32), C order; integer tensors other than
    num_batches_tracked are an error.
  * __metadata__: format=covdet, source=torchvision, backbone=<arch>, converted_from=<file name>,
    dropped=<n> num_batches_tracked.
The file is written by hand from the format (8-byte little-endian header length, JSON header padded with
spaces to a multiple of 8, data), so only torch and numpy are needed (Debian python3-torch works); it is
written to OUT.tmp and renamed.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch


def state_dict_of(obj):
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
        return obj
    raise SystemExit(f"error: cannot find a state_dict in {type(obj).__name__}")


def write_safetensors(path, arrays, metadata):
    header = {"__metadata__": metadata}
    off = 0
    for name, a in arrays:
        n = a.nbytes
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, a in arrays:
            f.write(a.tobytes(order="C"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--prefix", default="")
    ap.add_argument("--drop-fc", action="store_true")
    ap.add_argument("--arch", default="resnet101")
    a = ap.parse_args()
    sd = state_dict_of(torch.load(a.input, map_location="cpu"))
    arrays, dropped = [], 0
    for name, t in sd.items():
        if name.endswith("num_batches_tracked"):
            dropped += 1
            continue
        if a.drop_fc and name.startswith("fc."):
            continue
        if not torch.is_tensor(t):
            raise SystemExit(f"error: {a.input}: entry '{name}' is a {type(t).__name__}, not a tensor")
        if not t.is_floating_point():
            raise SystemExit(f"error: {a.input}: tensor '{name}' has dtype {t.dtype}, expected floating point")
        arr = np.ascontiguousarray(t.detach().cpu().to(torch.float32).numpy()).astype("<f4", copy=False)
        arrays.append((a.prefix + name, arr))
    meta = {"format": "covdet", "source": "torchvision", "backbone": a.arch,
            "converted_from": os.path.basename(a.input), "dropped": f"{dropped} num_batches_tracked"}
    write_safetensors(a.output, arrays, meta)
    total = sum(x.size for _, x in arrays)
    print(f"wrote {a.output}: {len(arrays)} tensors, {total} values, dropped {dropped} num_batches_tracked")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Timing of DepthCLIP in PyTorch (depthclip_ref.py), stage by stage, to set
beside ``clip_depth bench --config <depthclip yaml>`` on the same machine.

Stages per iteration (batch B of synthetic 640x480 frames unless told otherwise):
  preprocess  PIL crop (when the YAML has one) -> PIL bicubic to the input size
              when it differs -> /255, mean/std -> (B, 3, H, W)
  encoder     the image tower: ResNet layer4 map / ViT patch tokens
              (and the mirrored batch with flip_average)
  decoder     the head: normalise, keep every s-th channel, logits against
              the prompts' text features, softmax, bins (flip merge)
  resize      bilinear (align_corners as the YAML) to the crop's place in
              the output, NaN around it, clamp
  total       sum of the four

Weights are random (nothing is downloaded) in the architecture the YAML's
``clip_vis`` names (RN50, RN101, ViT-B/32, ViT-B/16, ViT-L/14): eager
PyTorch in eval mode, BatchNorm unfused, attention by
scaled_dot_product_attention, as a user of the release would run it.

  python bench_depthclip_torch.py --config ../../config/depthclip_nyu.yaml --batch 1
  python bench_depthclip_torch.py --config ../../config/depthclip_vit_b16.yaml --batch 1 --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import depthclip_ref as ref  # noqa: E402

PRESETS = {
    "RN50": dict(embed_dim=1024, vision_cfg=dict(image_size=224, layers=[3, 4, 6, 3], width=64), text=512),
    "RN101": dict(embed_dim=512, vision_cfg=dict(image_size=224, layers=[3, 4, 23, 3], width=64), text=512),
    "ViT-B/32": dict(embed_dim=512, vision_cfg=dict(image_size=224, layers=12, width=768, patch_size=32), text=512),
    "ViT-B/16": dict(embed_dim=512, vision_cfg=dict(image_size=224, layers=12, width=768, patch_size=16), text=512),
    "ViT-L/14": dict(embed_dim=768, vision_cfg=dict(image_size=224, layers=24, width=1024, patch_size=14), text=768),
}


def clip_cfg(name: str) -> dict:
    p = PRESETS[name]
    t = p["text"]
    return {"embed_dim": p["embed_dim"], "quick_gelu": True, "vision_cfg": p["vision_cfg"],
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": t, "heads": t // 64, "layers": 12}}


def frames(n: int, w: int, h: int):
    # The same synthetic frame clip_depth bench uses.
    i = np.arange(w * h * 3, dtype=np.int64)
    px = ((i * 7 + i // (w * 3) * 13) % 251).astype(np.uint8).reshape(h, w, 3)
    return [Image.fromarray(px, "RGB") for _ in range(n)]


def summarize(ms):
    s = sorted(ms)
    return {"min_ms": s[0], "median_ms": statistics.median(s), "p95_ms": s[max(0, math.ceil(0.95 * len(s)) - 1)]}


def main() -> None:
    ap = argparse.ArgumentParser(description="Time DepthCLIP (PyTorch) per stage.")
    ap.add_argument("--config", required=True, help="DepthCLIP YAML (model_type: depthclip)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1])
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--width", type=int, default=640, help="frame and output width")
    ap.add_argument("--height", type=int, default=480, help="frame and output height")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(0)

    with open(args.config) as f:
        y = yaml.safe_load(f)
    name = y.get("clip_vis", "RN50")
    model = ref.ClipRef(clip_cfg(name)).eval()
    templates = y.get("depth_templates", ref.DEFAULT_TEMPLATES)
    objects = y.get("obj_classes", ref.DEFAULT_OBJECTS)
    classes = y.get("depth_classes", ref.DEFAULT_CLASSES)
    scale = y.get("depth_scale", 1.0)
    settings = dict(bins=[b * scale for b in y.get("bin_list", ref.DEFAULT_BINS)], temperature=y.get("temperature", 0.1),
                    logit_scale=y.get("logit_scale", 100.0), flip_average=y.get("flip_average", False),
                    vit_position_embedding=y.get("vit_position_embedding", "sequence_linear"))
    size = (y.get("input_height", 416), y.get("input_width", 544))
    crop = tuple(y["crop"]) if y.get("crop") else None
    mean, std = y.get("image_mean", ref.IMAGENET_MEAN), y.get("image_std", ref.IMAGENET_STD)
    align = y.get("upsample_align_corners", True)
    bins = settings["bins"]
    lo, hi = y.get("min_depth", min(bins)), y.get("max_depth", max(bins))
    from open_clip import tokenize
    with torch.no_grad():
        text_f = ref.text_features(model, tokenize, templates, objects, classes)

    out_h, out_w = args.height, args.width
    if crop:
        l, t, r, b = crop
        region = (t * out_h // args.height, l * out_w // args.width, (b - t) * out_h // args.height, (r - l) * out_w // args.width)
    else:
        region = (0, 0, out_h, out_w)
    results = []
    for batch in args.batch:
        images = frames(batch, args.width, args.height)
        times = {k: [] for k in ("preprocess", "encoder", "decoder", "resize", "total")}
        with torch.inference_mode():
            for it in range(args.warmup + args.iters):
                t0 = time.perf_counter()
                px = torch.cat([ref.preprocess(im, size, crop, mean, std) for im in images])
                t1 = time.perf_counter()
                inp = torch.cat([px, torch.flip(px, [3])]) if settings["flip_average"] else px
                tokens, grid = ref.image_tokens(model, inp, settings["vit_position_embedding"])
                t2 = time.perf_counter()
                depth = ref.depth_from_tokens(tokens, text_f, bins, settings["temperature"], settings["logit_scale"], grid)
                if settings["flip_average"]:
                    depth = 0.5 * (depth[:batch] + torch.flip(depth[batch:], [3]))
                t3 = time.perf_counter()
                top, left, rh, rw = region
                inner = F.interpolate(depth, size=(rh, rw), mode="bilinear", align_corners=align).clamp(lo, hi)
                out = torch.full((batch, out_h, out_w), float("nan"))
                out[:, top:top + rh, left:left + rw] = inner[:, 0]
                t4 = time.perf_counter()
                if it >= args.warmup:
                    for k, v in zip(("preprocess", "encoder", "decoder", "resize", "total"),
                                    ((t1 - t0), (t2 - t1), (t3 - t2), (t4 - t3), (t4 - t0))):
                        times[k].append(v * 1e3)
        stages = {k: summarize(v) for k, v in times.items()}
        results.append({"batch": batch, "stages": stages, "frames_per_s": batch * 1e3 / stages["total"]["median_ms"]})

    if args.json:
        print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "clip": name,
                          "input": [size[1], size[0]], "crop": crop, "results": results}, indent=2))
        return
    print(f"PyTorch {torch.__version__} DepthCLIP {name} (random weights), input {size[1]}x{size[0]}, crop {crop}, "
          f"{args.width}x{args.height} frames, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}; "
          f"{args.iters} iterations after {args.warmup} warm-up")
    print(f"{'batch':>5} {'stage':<11} {'min ms':>9} {'median':>9} {'p95':>9}")
    for r in results:
        for k, v in r["stages"].items():
            print(f"{r['batch']:>5} {k:<11} {v['min_ms']:>9.2f} {v['median_ms']:>9.2f} {v['p95_ms']:>9.2f}")
        print(f"{r['batch']:>5} {'frames/s':<11} {r['frames_per_s']:>9.2f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Timing of one SPACE-CLIP training step in PyTorch, part by part, to set
beside ``clip_depth bench --train`` on the same machine: the frozen
encoder (no grad), the decoder forward with the losses of the authors'
NYU recipe (SILog + SSIM, w_ssim 0.5, aux SILog 0.10 / 0.05), backward, and
gradient clipping + AdamW + EMA. Random ViT-B/16-sized weights, a synthetic
batch, ground truth at --width x --height (default 640x480, batch 8).

  python bench_train_torch.py [--batch 8] [--iters 3] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import space_clip_ref as ref  # noqa: E402
import train_ref as tr  # noqa: E402
from bench_torch import vit_b16_config  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description="Time one SPACE-CLIP training step (PyTorch).")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(0)
    device = torch.device(args.device)
    cfg = dict(ref.DEFAULT_DECODER_CONFIG)
    cfg.update({"use_multiscale_supervision": True, "decoder_dropout": 0.1})
    model = ref.SpaceClipRef(cfg, vit_b16_config("clip"), attn_implementation="sdpa").to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    ema = tr.Ema(model, 0.996)
    loss_cfg = {"w_ssim": 0.5, "w_grad": 0.0, "use_multiscale_supervision": True, "aux_loss_weights": [0.10, 0.05, 0.0]}
    b, h, w = args.batch, args.height, args.width
    pixels = torch.randn(b, 3, 224, 224, device=device)
    yy = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1) / h
    xx = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    depth = (0.8 + 6.0 * yy + 0.5 * torch.sin(xx * 0.02)).expand(b, 1, h, w).clone().to(device)
    mask = (depth > 1e-3) & (depth < 10.0)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    parts = {k: [] for k in ("encoder", "forward + loss", "backward", "optimiser + EMA")}
    for it in range(args.warmup + args.iters):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        hs, pooled = model.encode(pixels)
        sync()
        t1 = time.perf_counter()
        head, aux = model.decode(hs, pooled, return_aux=True)
        pred = F.interpolate(head, size=(h, w), mode="bilinear", align_corners=False)
        aux = [F.interpolate(a, size=(h, w), mode="bilinear", align_corners=False) for a in aux]
        loss, _ = tr.total_loss(pred, aux, depth, mask, loss_cfg)
        sync()
        t2 = time.perf_counter()
        loss.backward()
        sync()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(model)
        sync()
        t4 = time.perf_counter()
        if it >= args.warmup:
            for k, v in zip(parts, (t1 - t, t2 - t1, t3 - t2, t4 - t3)):
                parts[k].append(v * 1e3)
    med = {k: statistics.median(v) for k, v in parts.items()}
    step = sum(med.values())
    step_cached = step - med["encoder"]
    result = {
        "batch": b, "size": [w, h], "threads": torch.get_num_threads(), "torch": torch.__version__,
        "ms": med, "step_ms": step, "images_per_s": b * 1e3 / step,
        "images_per_s_without_encoder": b * 1e3 / step_cached,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"PyTorch {torch.__version__} training step: batch {b}, ground truth {w}x{h}, {torch.get_num_threads()} threads; "
          f"medians of {args.iters} steps after {args.warmup} warm-up")
    for k, v in med.items():
        print(f"{k:<16} {v:>10.1f} ms")
    print(f"{'step':<16} {step:>10.1f} ms  {b * 1e3 / step:>6.2f} images/s")
    print(f"{'step w/o encoder':<16} {step_cached:>10.1f} ms  {b * 1e3 / step_cached:>6.2f} images/s")


if __name__ == "__main__":
    main()

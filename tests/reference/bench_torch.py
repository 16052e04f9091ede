#!/usr/bin/env python3
"""Timing of the SPACE-CLIP reference in PyTorch, stage by stage, on the CPU
or a CUDA device, to set beside ``clip_depth bench`` on the same machine.

Stages per iteration (batch B, output 640x480 unless told otherwise):
  preprocess  B synthetic 640x480 PIL images -> PIL bicubic 224x224 -> normalise -> (B, 3, 224, 224)
  encoder     frozen ViT with all hidden states + pooler
  decoder     FiLM + dual-pathway decoder + depth head -> (B, 1, 224, 224)
  resize      bilinear resize to the output size + clamp
  total       sum of the four

Weights are random (nothing is downloaded). Default size = the official
model: ViT-B/16 (hidden 768, 12 layers, 12 heads, MLP 3072) and decoder
channels [256, 128, 64, 32], FiLM hidden 256. ``--config`` (training YAML)
and ``--clip-config`` (HF vision config JSON, or a full CLIPConfig JSON)
override them, e.g. the tiny fixtures:

  python bench_torch.py --config ../fixtures/tiny_clip/config.yaml \\
      --clip-config ../fixtures/tiny_clip/clip_config.json

``--checkpoint`` loads weights (strictly, bar the training-only aux
heads), e.g. the file that
``clip_depth random-checkpoint`` writes, so both programs time the same
weights. On CUDA (``--device cuda``) preprocessing stays on the CPU (PIL, as
the authors' code) and the batch is copied to the device; stages are timed
between ``torch.cuda.synchronize()`` calls and the peak of
``torch.cuda.max_memory_allocated()`` is reported per batch size.

Examples:
  python bench_torch.py --batch 1 4 16
  python bench_torch.py --batch 1 --iters 20 --json > torch_cpu.json
  python bench_torch.py --device cuda --dtype f16 --batch 1 4 16 --checkpoint w.safetensors
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
from typing import Dict, List

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import space_clip_ref as ref  # noqa: E402
from transformers import CLIPVisionConfig, SiglipVisionConfig  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402


def vit_b16_config(backbone: str):
    kw = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              patch_size=16, image_size=224, num_channels=3)
    if backbone == "siglip":
        return SiglipVisionConfig(**kw)
    return CLIPVisionConfig(**kw, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=512)


def synthetic_images(n: int, width: int, height: int, seed: int = 0) -> List[Image.Image]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for i in range(n):
        base = np.stack([
            120 + 100 * np.sin(xx / (37.0 + i) + i),
            120 + 100 * np.cos(yy / (29.0 + 2 * i)),
            120 + 80 * np.sin((xx + yy) / 53.0),
        ], -1)
        base += rng.normal(0, 4, base.shape)
        out.append(Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB"))
    return out


def summarize(ms: List[float]) -> Dict[str, float]:
    s = sorted(ms)
    p95 = s[max(0, min(len(s) - 1, math.ceil(0.95 * len(s)) - 1))]
    return {"min_ms": s[0], "median_ms": statistics.median(s), "p95_ms": p95, "mean_ms": statistics.fmean(s)}


def count(params) -> int:
    return int(sum(p.numel() for p in params))


def main() -> None:
    ap = argparse.ArgumentParser(description="Time SPACE-CLIP (PyTorch) per stage.")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16"], help="model precision")
    ap.add_argument("--checkpoint", help="weights to load strictly (.pt or .safetensors); default: random")
    ap.add_argument("--config", help="training YAML (decoder settings); default: official sizes")
    ap.add_argument("--clip-config", help="HF vision config JSON; default: ViT-B/16")
    ap.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes, e.g. --batch 1 4 16")
    ap.add_argument("--iters", type=int, default=10, help="timed iterations per batch size")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations per batch size")
    ap.add_argument("--width", type=int, default=640, help="output width (and synthetic input width)")
    ap.add_argument("--height", type=int, default=480, help="output height (and synthetic input height)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"], help="HF attention implementation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    args = ap.parse_args()

    torch.set_num_threads(max(1, int(args.threads)))
    torch.manual_seed(args.seed)

    if args.config:
        cfg = ref.load_yaml_config(args.config)
    else:
        cfg = dict(ref.DEFAULT_DECODER_CONFIG)
    backbone = ref.backbone_type_for(cfg)
    vcfg = ref.load_vision_config(args.clip_config) if args.clip_config else vit_b16_config(backbone)

    model = ref.SpaceClipRef(cfg, vcfg, attn_implementation=args.attn).eval()
    if args.checkpoint:
        sd = ref.normalize_state_dict_keys(ref.load_checkpoint_file(args.checkpoint), ref.backbone_is_wrapped(model))
        # Strict, except the training-only aux heads and BN step counters,
        # which a depth-only checkpoint may leave out.
        missing, unexpected = model.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not (k.startswith("aux_depth_heads.") or k.endswith("num_batches_tracked"))]
        if missing or unexpected:
            sys.exit(f"bench_torch: {args.checkpoint} does not fit the model: missing {missing[:3]} "
                     f"({len(missing)}), unexpected {unexpected[:3]} ({len(unexpected)})")
    device = torch.device(args.device)
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    model = model.to(device=device, dtype=dtype)
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)
    n_backbone = count(model.clip_vision_model.parameters())
    n_decoder = count(model.decoder_parameters())
    n_aux = count(model.aux_depth_heads.parameters())

    out_hw = (args.height, args.width)
    results = []
    for b in args.batch:
        images = synthetic_images(b, args.width, args.height, seed=args.seed + b)
        times: Dict[str, List[float]] = {k: [] for k in ("preprocess", "encoder", "decoder", "resize", "total")}
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        with torch.no_grad():
            for it in range(args.warmup + args.iters):
                sync()
                t0 = time.perf_counter()
                px = torch.stack([model.preprocess(im) for im in images]).to(device=device, dtype=dtype)
                sync()
                t1 = time.perf_counter()
                hidden, pooled = model.encode(px)
                sync()
                t2 = time.perf_counter()
                head = model.decode(hidden, pooled)
                sync()
                t3 = time.perf_counter()
                depth = model.postprocess(head, out_hw).float().cpu()
                t4 = time.perf_counter()
                assert depth.shape == (b, 1) + out_hw
                if it >= args.warmup:
                    for k, v in (("preprocess", t1 - t0), ("encoder", t2 - t1), ("decoder", t3 - t2),
                                 ("resize", t4 - t3), ("total", t4 - t0)):
                        times[k].append(v * 1e3)
        stages = {k: summarize(v) for k, v in times.items()}
        results.append({"batch": b, "stages": stages,
                        "per_image_total_median_ms": stages["total"]["median_ms"] / b,
                        "peak_device_memory_mib": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None})
        if not args.json:
            print(f"batch {b}: " + ", ".join(f"{k} {v['median_ms']:.1f}" for k, v in stages.items()) + " ms (median)",
                  file=sys.stderr)

    report = {
        "framework": "pytorch",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor(),
        "dtype": args.dtype,
        "weights": args.checkpoint or "random",
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "attn_implementation": args.attn,
        "backbone": backbone,
        "vision": {k: getattr(vcfg, k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                 "num_attention_heads", "patch_size", "image_size")},
        "decoder_channels": model.channels,
        "film_param_hidden_dim": int(cfg["film_param_hidden_dim"]),
        "params": {"backbone": n_backbone, "decoder_with_aux": n_decoder, "aux_heads": n_aux,
                   "decoder_inference": n_decoder - n_aux, "total": n_backbone + n_decoder},
        "output_hw": list(out_hw),
        "warmup": args.warmup,
        "iters": args.iters,
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"SPACE-CLIP PyTorch benchmark on {device} ({report['device_name']}), {args.dtype}  "
          f"(torch {torch.__version__}, {report['threads']} threads, "
          f"attn={args.attn}, backbone={backbone} {report['vision']['hidden_size']}x"
          f"{report['vision']['num_hidden_layers']}, decoder {model.channels})")
    p = report["params"]
    print(f"params: backbone {p['backbone']:,}  decoder {p['decoder_with_aux']:,} (aux {p['aux_heads']:,})  "
          f"total {p['total']:,}")
    print(f"output {out_hw[1]}x{out_hw[0]}, warm-up {args.warmup}, iterations {args.iters}")
    print(f"{'batch':>5} {'stage':<11} {'min ms':>10} {'median ms':>10} {'p95 ms':>10}")
    for r in results:
        for k, s in r["stages"].items():
            print(f"{r['batch']:>5} {k:<11} {s['min_ms']:>10.2f} {s['median_ms']:>10.2f} {s['p95_ms']:>10.2f}")
        print(f"{r['batch']:>5} {'frames/s':<11} {1e3 * r['batch'] / r['stages']['total']['median_ms']:>10.2f}")
        if r["peak_device_memory_mib"] is not None:
            print(f"{r['batch']:>5} {'peak memory':<11} {r['peak_device_memory_mib']:>10.0f} MiB (torch allocator)")


if __name__ == "__main__":
    main()

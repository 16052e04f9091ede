#!/usr/bin/env python3
"""DepthBLIP-2 per stage in PyTorch (depthblip2_ref.py) at the released
sizes with random weights, to set beside `clip_depth bench --config
config/depthblip2_nyu.yaml` (EVA ViT-g) or `config/depthblip2_vitl_nyu.yaml`
(CLIP ViT-L): the image tower with ln_vision ("encoder"), then the Q-Former
with the seven prompts in one padded batch and the head ("decoder").

Usage: python bench_depthblip2_torch.py [--tower eva|clip] [--iters N] [--threads N]
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import depthblip2_ref as ref  # noqa: E402
from transformers import BertTokenizer  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SIZES = {
    "eva": {"kind": "eva", "width": 1408, "layers": 39, "heads": 16, "mlp": 6144, "patch": 14, "image": 224},
    "clip": {"kind": "clip", "width": 1024, "layers": 23, "heads": 16, "patch": 14, "image": 224},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tower", choices=sorted(SIZES), default="eva")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vision = SIZES[args.tower]
    q = {"hidden": 768, "heads": 12, "layers": 12, "intermediate": 3072, "cross_attention_freq": 2,
         "encoder_width": vision["width"], "vocab": 30523, "max_positions": 512, "eps": 1e-12}
    model = ref.Blip2(vision, q, 32).eval()
    with tempfile.TemporaryDirectory() as tmp:
        vocab = os.path.join(tmp, "vocab.txt")
        with gzip.open(os.path.join(ROOT, "src", "model", "text", "bert_base_uncased_vocab.txt.gz")) as src, open(vocab, "wb") as dst:
            dst.write(src.read())
        tok = BertTokenizer(vocab, do_lower_case=True)
    sentences = [s for c in ref.prompts(["This {} is {}"], ["object"], ref.DEFAULT_CLASSES) for s in c]
    ids, mask = ref.tokenize(tok, sentences)
    bins = torch.tensor(ref.RELEASE_BINS)
    x = torch.randn(1, 3, 224, 224)

    def encoder():
        return model.image_embeds(x)

    def decoder(emb):
        out = model.multimodal(emb.expand(len(sentences), -1, -1), ids, mask).mean(dim=1)[None]
        return ref.head(out, 3, 16, 0.1, bins)

    enc, dec = [], []
    with torch.no_grad():
        for i in range(args.warmup + args.iters):
            t = time.perf_counter()
            emb = encoder()
            t1 = time.perf_counter()
            decoder(emb)
            t2 = time.perf_counter()
            if i >= args.warmup:
                enc.append((t1 - t) * 1e3)
                dec.append((t2 - t1) * 1e3)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.tower} tower, 7 prompts batched")
    for name, ms in [("encoder", enc), ("decoder", dec), ("total", [a + b for a, b in zip(enc, dec)])]:
        print(f"{name:8s} min {min(ms):9.1f} ms  median {float(np.median(ms)):9.1f} ms")


if __name__ == "__main__":
    main()

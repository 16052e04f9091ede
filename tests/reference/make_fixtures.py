#!/usr/bin/env python3
"""Write the golden test fixtures for the Rust SPACE-CLIP implementation.

Everything is generated here from fixed seeds (no downloads):

  ../fixtures/images/scene_224.png, scene_640x480.png   synthetic RGB scenes
  ../fixtures/tiny_clip/...                              tiny CLIP-backbone model
  ../fixtures/tiny_siglip/...                            tiny SigLIP-backbone model

Re-running overwrites the fixtures with identical content (single-threaded
torch, seeded generators). The script asserts that the golden depth maps are
non-degenerate and that every checkpoint variant reloads to bit-identical
outputs.

Usage:  python make_fixtures.py [--out DIR]   (default: ../fixtures)
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import sys
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import space_clip_ref as ref  # noqa: E402
from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, SiglipVisionConfig  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

EPOCH = 3
PIL_MAJOR = int(Image.__version__.split(".")[0])
NUM_BATCHES_TRACKED = 1251  # 3 epochs x 417 iterations

DECODER_CFG = {
    "decoder_channels": [32, 16, 16, 8],
    "main_path_indices": [12, 9, 6, 3],
    "structural_path_indices": [2, 1, 0],
    "film_param_hidden_dim": 32,
    "use_film": True,
    "use_structural_pathway": True,
    "use_multiscale_supervision": True,
    "decoder_dropout": 0.1,
    "max_depth": 10.0,
    "min_depth": 0.001,
}

CLIP_YAML = """\
# Tiny random SPACE-CLIP used by the parity tests (official training-YAML keys).
name: "SPACE_CLIP_TINY_TEST"
clip_model_name: "tiny-random-clip"
freeze_clip_vision: true
clip_interpolate_pos_encoding: false
clip_input_size: 224
input_height: 480
input_width: 640

main_path_indices: [12, 9, 6, 3]
structural_path_indices: [2, 1, 0]
film_param_hidden_dim: 32

decoder_channels: [32, 16, 16, 8]
decoder_dropout: 0.1

use_film: true
use_structural_pathway: true
use_multiscale_supervision: true
aux_loss_weights: [0.10, 0.05, 0.00]

min_depth: 0.001
max_depth: 10.0
min_depth_eval: 0.001
max_depth_eval: 10.0
"""

SIGLIP_YAML = """\
# Tiny random SPACE-CLIP with a SigLIP backbone (official training-YAML keys).
name: "SPACE_SIGLIP_TINY_TEST"
vision_backbone_type: "siglip"
clip_model_name: "tiny-random-siglip"
vision_image_mean: [0.5, 0.5, 0.5]
vision_image_std: [0.5, 0.5, 0.5]
freeze_clip_vision: true
clip_interpolate_pos_encoding: false
clip_input_size: 224
input_height: 480
input_width: 640

main_path_indices: [12, 9, 6, 3]
structural_path_indices: [2, 1, 0]
film_param_hidden_dim: 32

decoder_channels: [32, 16, 16, 8]
decoder_dropout: 0.1

use_film: true
use_structural_pathway: true
use_multiscale_supervision: true
aux_loss_weights: [0.10, 0.05, 0.00]

min_depth: 0.001
max_depth: 10.0
min_depth_eval: 0.001
max_depth_eval: 10.0
"""

VISION_KW = dict(
    hidden_size=64,
    intermediate_size=256,
    num_hidden_layers=12,
    num_attention_heads=4,
    patch_size=16,
    image_size=224,
    num_channels=3,
)


def clip_vision_config() -> CLIPVisionConfig:
    return CLIPVisionConfig(**VISION_KW, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=16)


def siglip_vision_config() -> SiglipVisionConfig:
    # SigLIP defaults kept for activation (gelu_pytorch_tanh) and eps (1e-6).
    return SiglipVisionConfig(**VISION_KW)


# ---------------------------------------------------------------------------
# Synthetic images
# ---------------------------------------------------------------------------

def _blend(img: np.ndarray, mask: np.ndarray, color) -> None:
    m = mask[..., None].astype(np.float32)
    img[:] = img * (1.0 - m) + np.asarray(color, np.float32) * m


def _texture(h: int, w: int, rng: np.random.Generator, amp: float) -> np.ndarray:
    """Mild, smooth texture: low-resolution noise upsampled bilinearly plus a
    faint sinusoidal weave."""
    lo = rng.standard_normal((h // 8 + 2, w // 8 + 2, 3)).astype(np.float32)
    t = torch.from_numpy(lo.transpose(2, 0, 1))[None]
    t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0].numpy().transpose(1, 2, 0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    weave = np.sin(xx * 0.9) * np.sin(yy * 0.7)
    return amp * t + 0.5 * amp * weave[..., None]


def make_indoor(h: int, w: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    y, x = yy / (h - 1), xx / (w - 1)
    horizon = 0.58
    img = np.zeros((h, w, 3), np.float32)
    # wall: vertical + horizontal gradient
    wall = np.stack([200 - 60 * y + 20 * x, 190 - 50 * y + 10 * x, 170 - 40 * y - 15 * x], -1)
    # floor: darker wood with perspective boards
    depth = np.clip((y - horizon) / (1 - horizon), 1e-3, 1)
    boards = 0.5 + 0.5 * np.sin((x - 0.5) / depth * 18.0)
    floor = np.stack([110 + 50 * depth + 18 * boards, 80 + 35 * depth + 12 * boards, 50 + 20 * depth + 8 * boards], -1)
    img[:] = np.where((y < horizon)[..., None], wall, floor)
    # window (bluish, with a frame)
    win = (x > 0.58) & (x < 0.86) & (y > 0.12) & (y < 0.40)
    _blend(img, win, (150, 190, 235))
    _blend(img, win & ((np.abs(x - 0.72) < 0.008) | (np.abs(y - 0.26) < 0.008)), (240, 240, 235))
    # cabinet (dark box) standing on the floor
    _blend(img, (x > 0.08) & (x < 0.34) & (y > 0.30) & (y < 0.72), (70, 55, 45))
    _blend(img, (x > 0.10) & (x < 0.32) & (y > 0.33) & (y < 0.50), (95, 75, 60))
    # shaded ball
    cx, cy, r = 0.62, 0.78, 0.11
    d2 = ((x - cx) ** 2 + (y - cy) ** 2) / r**2
    ball = d2 < 1.0
    shade = np.clip(1.0 - 0.6 * (((x - cx + 0.04) ** 2 + (y - cy + 0.04) ** 2) / r**2), 0.3, 1.0)
    col = np.stack([220 * shade, 50 * shade, 40 * shade], -1)
    img[ball] = col[ball]
    img += _texture(h, w, rng, 3.0)
    return Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB")


def make_outdoor(h: int, w: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    y, x = yy / (h - 1), xx / (w - 1)
    horizon = 0.45
    img = np.zeros((h, w, 3), np.float32)
    sky = np.stack([90 + 120 * y, 140 + 90 * y, 230 - 10 * y], -1)
    g = np.clip((y - horizon) / (1 - horizon), 0, 1)
    ground = np.stack([70 + 40 * g, 120 + 30 * g, 50 + 10 * g], -1)
    img[:] = np.where((y < horizon)[..., None], sky, ground)
    # sun
    _blend(img, ((x - 0.82) ** 2 + (y - 0.14) ** 2 * (h / w) ** 2) < 0.004, (255, 240, 180))
    # road: trapezoid narrowing towards the horizon with a dashed centre line
    half = 0.03 + 0.42 * g
    road = (y > horizon) & (np.abs(x - 0.5) < half)
    _blend(img, road, (95, 95, 100))
    dash = road & (np.abs(x - 0.5) < 0.004 + 0.012 * g) & (np.sin(np.log(g + 0.02) * 12.0) > 0.2)
    _blend(img, dash, (235, 230, 200))
    # house with a roof
    _blend(img, (x > 0.06) & (x < 0.28) & (y > 0.28) & (y < 0.52), (200, 180, 150))
    roof = (y > 0.16) & (y <= 0.28) & (np.abs(x - 0.17) < (y - 0.16) * 1.2)
    _blend(img, roof, (150, 60, 50))
    _blend(img, (x > 0.15) & (x < 0.20) & (y > 0.40) & (y < 0.52), (90, 60, 40))
    # trees: trunk + round canopy, different sizes (nearer = larger)
    for tx, ty, tr in ((0.72, 0.50, 0.05), (0.88, 0.58, 0.09), (0.36, 0.47, 0.03)):
        _blend(img, (np.abs(x - tx) < tr * 0.18) & (y > ty - tr * 0.4) & (y < ty + tr * 1.3), (90, 65, 40))
        _blend(img, ((x - tx) ** 2 / tr**2 + (y - ty + tr * 0.9) ** 2 / (tr * 1.2) ** 2) < 1.0, (40, 110, 45))
    img += _texture(h, w, rng, 3.0)
    return Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB")


# ---------------------------------------------------------------------------
# Random, "meaningful" weights
# ---------------------------------------------------------------------------

def _normal(g: torch.Generator, shape, std: float, mean: float = 0.0) -> torch.Tensor:
    return torch.randn(shape, generator=g, dtype=torch.float32) * std + mean


def _uniform(g: torch.Generator, shape, lo: float, hi: float) -> torch.Tensor:
    return torch.rand(shape, generator=g, dtype=torch.float32) * (hi - lo) + lo


def _hf_name(key: str) -> str:
    """Backbone key without the optional vision_model. wrapper."""
    return key[len("vision_model."):] if key.startswith("vision_model.") else key


@torch.no_grad()
def init_backbone(backbone: nn.Module, seed: int) -> None:
    """Unit-scale random weights so that every layer changes the tokens and
    the tokens depend clearly on the image."""
    g = torch.Generator().manual_seed(seed)
    params = dict(backbone.named_parameters())
    for name in sorted(params, key=_hf_name):
        p = params[name]
        n = _hf_name(name)
        if n.endswith("class_embedding") or n.endswith("probe"):
            v = _normal(g, p.shape, 1.0)
        elif n.endswith("position_embedding.weight"):
            v = _normal(g, p.shape, 0.5)
        elif n.endswith("patch_embedding.weight"):
            v = _normal(g, p.shape, 1.0 / float(np.prod(p.shape[1:])) ** 0.5)
        elif any(s in n for s in ("layer_norm", "layrnorm", "layernorm")):
            v = _normal(g, p.shape, 0.1, 1.0 if n.endswith("weight") else 0.0)
        elif p.ndim == 2:
            v = _normal(g, p.shape, 1.0 / p.shape[1] ** 0.5)
        elif p.ndim == 1:
            v = _normal(g, p.shape, 0.1)
        else:
            raise RuntimeError(f"unhandled backbone parameter {name} {tuple(p.shape)}")
        p.copy_(v)


@torch.no_grad()
def init_decoder(model: ref.SpaceClipRef, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    d = model.embed_dim
    for mname, m in model.named_modules():
        if mname.startswith("clip_vision_model"):
            continue
        if isinstance(m, nn.ConvTranspose2d):
            m.weight.copy_(_normal(g, m.weight.shape, (1.0 / m.in_channels) ** 0.5))
            m.bias.copy_(_normal(g, m.bias.shape, 0.1))
        elif isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            is_gate = "gate" in mname
            m.weight.copy_(_normal(g, m.weight.shape, (1.0 / fan_in) ** 0.5 if is_gate else (2.0 / fan_in) ** 0.5))
            if m.bias is not None:
                m.bias.copy_(_normal(g, m.bias.shape, 0.5 if is_gate else 0.1))
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(_uniform(g, m.weight.shape, 0.5, 1.5))
            m.bias.copy_(_normal(g, m.bias.shape, 0.2))
            m.running_mean.copy_(_normal(g, m.running_mean.shape, 0.1))
            m.running_var.copy_(_uniform(g, m.running_var.shape, 0.5, 2.0))
            m.num_batches_tracked.fill_(NUM_BATCHES_TRACKED)
        elif isinstance(m, nn.Linear):
            if mname.endswith(".0"):
                m.weight.copy_(_normal(g, m.weight.shape, (2.0 / m.in_features) ** 0.5))
                m.bias.copy_(_normal(g, m.bias.shape, 0.1))
            else:  # FiLM output layer: gamma around 1, beta around 0
                m.weight.copy_(_normal(g, m.weight.shape, 0.3 / m.in_features ** 0.5))
                b = _normal(g, m.bias.shape, 0.2)
                b[:d] += 1.0
                m.bias.copy_(b)


def _bn_in_execution_order(model: ref.SpaceClipRef, run: Callable[[], None]) -> List[Tuple[str, nn.BatchNorm2d]]:
    order: List[Tuple[str, nn.BatchNorm2d]] = []
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d) and not name.startswith("clip_vision_model"):
            handles.append(m.register_forward_pre_hook(lambda mod, inp, name=name: order.append((name, mod))))
    run()
    for h in handles:
        h.remove()
    return order


@torch.no_grad()
def calibrate(model: ref.SpaceClipRef, hidden, pooled, seed: int) -> None:
    """Give every BN running statistics that resemble those of a trained
    network (close to, but not equal to, the statistics of the activations it
    sees on the fixture images), then scale the last conv of each depth head
    so that the depth lies mostly inside (min_depth, max_depth)."""
    g = torch.Generator().manual_seed(seed)
    run = lambda: model.decode(hidden, pooled, return_aux=True)  # noqa: E731
    for name, bn in _bn_in_execution_order(model, run):
        seen = {}
        h = bn.register_forward_pre_hook(lambda mod, inp: seen.setdefault("x", inp[0]))
        run()
        h.remove()
        x = seen["x"]
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False).clamp_min(1e-4)
        bn.running_mean.copy_(mean + 0.1 * var.sqrt() * _normal(g, mean.shape, 1.0))
        bn.running_var.copy_(var * _uniform(g, var.shape, 0.6, 1.5))

    # Main head: among a few seeded candidate directions for the last conv,
    # keep the one whose calibrated output varies most within each image.
    lo, hi = model.min_depth, model.max_depth
    x = _input_of(model.depth_prediction_head[3], run)
    conv = model.depth_prediction_head[3]
    best = None
    for cand in range(32):
        w = _normal(g, conv.weight.shape, (2.0 / (conv.in_channels * 9)) ** 0.5)
        z = F.conv2d(x, w, None, conv.stride, conv.padding)
        scale, bias = _fit_affine(z, lo, hi)
        out = (scale * z + bias).clamp(lo, hi)
        score = min(float(out[i].std() / out[i].mean()) for i in range(out.shape[0]))
        if best is None or score > best[0]:
            best = (score, w * scale, bias)
    conv.weight.copy_(best[1])
    conv.bias.fill_(best[2])
    assert float(conv.bias) > 0.0

    # Aux heads (training only): same affine fit, no search.
    for head in model.aux_depth_heads:
        conv = head[3]
        z = F.conv2d(_input_of(conv, run), conv.weight, None, conv.stride, conv.padding)
        scale, bias = _fit_affine(z, lo, hi)
        conv.weight.mul_(scale)
        conv.bias.fill_(bias)
        assert float(conv.bias) > 0.0


def _input_of(module: nn.Module, run: Callable[[], None]) -> torch.Tensor:
    seen = {}
    h = module.register_forward_pre_hook(lambda mod, inp: seen.setdefault("x", inp[0]))
    run()
    h.remove()
    return seen["x"]


def _fit_affine(z: torch.Tensor, lo: float, hi: float) -> Tuple[float, float]:
    """scale, bias mapping z (B, 1, H, W) so that the 0.5 % quantile lands at
    0.15 * hi and the 99.5 % quantile at 0.85 * hi."""
    q = torch.quantile(z.flatten().double(), torch.tensor([0.005, 0.995], dtype=torch.float64))
    q0, q1 = float(q[0]), float(q[1])
    scale = 0.7 * hi / max(q1 - q0, 1e-6)
    bias = 0.15 * hi - scale * q0
    return scale, bias


# ---------------------------------------------------------------------------
# Checkpoint writing helpers
# ---------------------------------------------------------------------------

def renamed(sd: "collections.OrderedDict", fn: Callable[[str], str]) -> "collections.OrderedDict":
    """Rename keys of a state_dict, keeping the OrderedDict and its
    ``_metadata`` (module versions) like ``torch.nn.Module.state_dict``."""
    out = collections.OrderedDict((fn(k), v) for k, v in sd.items())
    meta = getattr(sd, "_metadata", None)
    if meta is not None:
        new_meta = collections.OrderedDict()
        for k, v in meta.items():
            nk = fn(k + ".")[:-1] if k else fn("")
            nk = nk.rstrip(".")
            if nk not in new_meta:
                new_meta[nk] = v
        out._metadata = new_meta
    return out


def to_v4_naming(k: str) -> str:
    """``clip_vision_model.<hf>`` -> ``clip_vision_model.vision_model.<hf>``."""
    p = ref.BACKBONE_PREFIX
    if k.startswith(p) and not k.startswith(p + "vision_model."):
        return p + "vision_model." + k[len(p):]
    if k == "clip_vision_model":
        return k
    return k


def to_v5_module_naming(k: str) -> str:
    """Official key -> DataParallel + transformers>=5.6 key."""
    p = ref.BACKBONE_PREFIX
    if k.startswith(p + "vision_model."):
        k = p + k[len(p + "vision_model."):]
    elif k == "clip_vision_model.vision_model":
        k = "clip_vision_model"
    return "module." + k if k else "module"


def save_npy(path: str, arr) -> None:
    if isinstance(arr, torch.Tensor):
        arr = arr.detach().cpu().numpy()
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    np.save(path, arr)


def safetensors_dict(sd) -> Dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().clone() for k, v in sd.items()}


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

def check_depth(name: str, depth: torch.Tensor, lo: float, hi: float) -> Dict[str, float]:
    assert depth.dtype == torch.float32
    frac_lo = float((depth <= torch.tensor(lo, dtype=torch.float32)).double().mean())
    frac_hi = float((depth >= torch.tensor(hi, dtype=torch.float32)).double().mean())
    d = depth.double()
    mean, std = float(d.mean()), float(d.std())
    stats = {"mean": mean, "std": std, "min": float(d.min()), "max": float(d.max()),
             "frac_at_min": frac_lo, "frac_at_max": frac_hi}
    print(f"  {name}: " + ", ".join(f"{k}={v:.4g}" for k, v in stats.items()))
    assert frac_lo <= 0.05, f"{name}: {frac_lo:.1%} of pixels clamped at min_depth"
    assert frac_hi <= 0.05, f"{name}: {frac_hi:.1%} of pixels clamped at max_depth"
    assert std > 0.05 * mean, f"{name}: spatial std {std:.4g} <= 5% of mean {mean:.4g}"
    return stats


def check_differs(name: str, a: torch.Tensor, b: torch.Tensor) -> float:
    """a: (224, 224); b: any size, resized bilinearly to a's size."""
    b2 = F.interpolate(b[None, None].double(), size=tuple(a.shape), mode="bilinear", align_corners=False)[0, 0]
    rel = float((a.double() - b2).abs().mean() / a.double().abs().mean())
    print(f"  {name}: mean|diff| / mean = {rel:.3f}")
    assert rel > 0.10, f"{name}: depth maps of the two scenes are too similar ({rel:.3f})"
    return rel


# ---------------------------------------------------------------------------
# Fixture builders
# ---------------------------------------------------------------------------

def build_tiny(cfg_yaml: str, vcfg, fixture_dir: str, seed: int, imgs) -> ref.SpaceClipRef:
    with open(os.path.join(fixture_dir, "config.yaml"), "w", encoding="utf-8") as f:
        f.write(cfg_yaml)
    cfg = ref.load_yaml_config(os.path.join(fixture_dir, "config.yaml"))
    for k, v in DECODER_CFG.items():
        assert cfg[k] == v, (k, cfg[k], v)
    model = ref.SpaceClipRef(cfg, vcfg, attn_implementation="eager")
    init_backbone(model.clip_vision_model, seed)
    init_decoder(model, seed + 1)
    model.eval()
    px = torch.stack([model.preprocess(im) for im in imgs])
    hidden, pooled = model.encode(px)
    calibrate(model, hidden, pooled, seed + 2)
    return model


def official_state_dict(model: ref.SpaceClipRef) -> "collections.OrderedDict":
    sd = model.state_dict()
    return renamed(sd, to_v4_naming)


def write_clip(out: str, imgs, scene224: Image.Image, scene640: Image.Image) -> Dict[str, dict]:
    fdir = os.path.join(out, "tiny_clip")
    os.makedirs(os.path.join(fdir, "expected"), exist_ok=True)
    vcfg = clip_vision_config()
    with open(os.path.join(fdir, "clip_config.json"), "w", encoding="utf-8") as f:
        f.write(vcfg.to_json_string())
    model = build_tiny(CLIP_YAML, ref.load_vision_config(os.path.join(fdir, "clip_config.json")), fdir, 1000, imgs)

    # One AdamW step with lr = 0 so that the optimizer state holds exp_avg /
    # exp_avg_sq without changing any weight.
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(not n.startswith(ref.BACKBONE_PREFIX) for n, p in model.named_parameters() if p.requires_grad)
    opt = torch.optim.AdamW(trainable, lr=0.0, weight_decay=0.01)
    px = torch.stack([model.preprocess(im) for im in imgs])
    hidden, pooled = model.encode(px)
    with torch.enable_grad():
        depth, aux = model.decode(hidden, pooled, return_aux=True)
        loss = depth.mean() + sum(a.mean() for a in aux)
        opt.zero_grad()
        loss.backward()
    opt.step()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "lr=0 step changed a weight"
    opt_sd = opt.state_dict()
    assert len(opt_sd["state"]) == len(trainable), "every decoder parameter should have Adam state"

    sd = official_state_dict(model)
    assert all(
        k.startswith("clip_vision_model.vision_model.") or not k.startswith("clip_vision_model") for k in sd
    )
    torch.save({"model": sd, "optimizer": opt_sd, "epoch": EPOCH}, os.path.join(fdir, "checkpoint.pt"))
    sd_mod = renamed(sd, to_v5_module_naming)
    # Weights only (no optimizer state) to keep the fixtures small.
    torch.save({"model": sd_mod, "epoch": EPOCH}, os.path.join(fdir, "checkpoint_module.pt"))
    save_file(safetensors_dict(sd), os.path.join(fdir, "checkpoint.safetensors"), metadata={"format": "pt"})
    dec = {k: v for k, v in sd.items() if not k.startswith("clip_vision_model")}
    save_file(safetensors_dict(dec), os.path.join(fdir, "decoder.safetensors"), metadata={"format": "pt"})

    # Stand-alone HF CLIPModel holding the same vision tower.
    torch.manual_seed(7)
    ccfg = CLIPConfig(
        text_config=dict(
            vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=16, projection_dim=16,
        ),
        vision_config=vcfg.to_dict(),
        projection_dim=16,
    )
    clip = CLIPModel(ccfg).eval()
    vis = {k[len("clip_vision_model.vision_model."):]: v for k, v in sd.items() if k.startswith("clip_vision_model.")}
    clip_vis = clip.vision_model.vision_model if hasattr(clip.vision_model, "vision_model") else clip.vision_model
    clip_vis.load_state_dict(vis, strict=True)
    cdir = os.path.join(fdir, "clip")
    if os.path.isdir(cdir):
        shutil.rmtree(cdir)
    try:
        clip.save_pretrained(cdir, safe_serialization=True)
    except TypeError:
        clip.save_pretrained(cdir)
    assert os.path.exists(os.path.join(cdir, "model.safetensors")), os.listdir(cdir)

    # Golden outputs.
    r224 = model.predict(scene224, output_size=(224, 224))
    r640 = model.predict(scene640, output_size=(480, 640))
    e = os.path.join(fdir, "expected")
    save_npy(os.path.join(e, "hidden_states_224.npy"), r224["hidden_states"])
    save_npy(os.path.join(e, "pooler_224.npy"), r224["pooler"])
    save_npy(os.path.join(e, "pixel_values_640x480.npy"), r640["pixel_values"])
    save_npy(os.path.join(e, "depth_head_224.npy"), r224["head"])
    save_npy(os.path.join(e, "depth_224.npy"), r224["depth"])
    save_npy(os.path.join(e, "depth_640x480.npy"), r640["depth"])
    assert r224["hidden_states"].shape == (13, 197, 64)
    assert r640["depth"].shape == (480, 640)

    print("tiny_clip:")
    stats = {
        "depth_224": check_depth("depth_224", r224["depth"], model.min_depth, model.max_depth),
        "depth_640x480": check_depth("depth_640x480", r640["depth"], model.min_depth, model.max_depth),
    }
    check_differs("scene_224 vs scene_640x480", r224["depth"], r640["depth"])
    check_tokens(r224["hidden_states"], model.predict(scene640)["hidden_states"])
    return stats


def check_tokens(h_a: torch.Tensor, h_b: torch.Tensor) -> None:
    """Tokens must vary across positions and with the image at every tap."""
    for k in range(h_a.shape[0]):
        a, b = h_a[k].double(), h_b[k].double()
        spread = float(a.std(dim=0).mean() / a.std())
        change = float((a - b).abs().mean() / a.abs().mean())
        assert spread > 0.05 and change > 0.05, (k, spread, change)


def write_siglip(out: str, imgs, scene224: Image.Image, scene640: Image.Image) -> Dict[str, dict]:
    fdir = os.path.join(out, "tiny_siglip")
    os.makedirs(os.path.join(fdir, "expected"), exist_ok=True)
    vcfg = siglip_vision_config()
    with open(os.path.join(fdir, "siglip_config.json"), "w", encoding="utf-8") as f:
        f.write(vcfg.to_json_string())
    model = build_tiny(SIGLIP_YAML, ref.load_vision_config(os.path.join(fdir, "siglip_config.json")), fdir, 2000, imgs)
    assert model.backbone_type == "siglip" and model.mean == (0.5, 0.5, 0.5)
    sd = official_state_dict(model)
    save_file(safetensors_dict(sd), os.path.join(fdir, "checkpoint.safetensors"), metadata={"format": "pt"})
    r224 = model.predict(scene224, output_size=(224, 224))
    e = os.path.join(fdir, "expected")
    save_npy(os.path.join(e, "hidden_states_224.npy"), r224["hidden_states"])
    save_npy(os.path.join(e, "pooler_224.npy"), r224["pooler"])
    save_npy(os.path.join(e, "depth_224.npy"), r224["depth"])
    assert r224["hidden_states"].shape == (13, 196, 64)
    print("tiny_siglip:")
    stats = {"depth_224": check_depth("depth_224", r224["depth"], model.min_depth, model.max_depth)}
    r640 = model.predict(scene640)
    check_differs("scene_224 vs scene_640x480", r224["depth"], r640["depth"])
    check_tokens(r224["hidden_states"], r640["hidden_states"])
    return stats


# ---------------------------------------------------------------------------
# Reload verification
# ---------------------------------------------------------------------------

def _expect(fdir: str, name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(os.path.join(fdir, "expected", name)))


def _same_outputs(model: ref.SpaceClipRef, fdir: str, scene224, scene640, full: bool, what: str) -> None:
    r224 = model.predict(scene224, output_size=(224, 224))
    checks = {
        "hidden_states_224.npy": r224["hidden_states"],
        "pooler_224.npy": r224["pooler"],
        "depth_224.npy": r224["depth"],
    }
    if full:
        r640 = model.predict(scene640, output_size=(480, 640))
        checks.update({
            "depth_head_224.npy": r224["head"],
            "pixel_values_640x480.npy": r640["pixel_values"],
            "depth_640x480.npy": r640["depth"],
        })
    for name, got in checks.items():
        exp = _expect(fdir, name)
        assert got.dtype == torch.float32 and exp.dtype == torch.float32
        assert torch.equal(got, exp), f"{what}: {name} differs after reload (max {float((got - exp).abs().max())})"
    print(f"  reload ok: {what}")


def verify(out: str) -> None:
    print("verifying reloads:")
    scene224 = Image.open(os.path.join(out, "images", "scene_224.png"))
    scene640 = Image.open(os.path.join(out, "images", "scene_640x480.png"))
    assert scene224.size == (224, 224) and scene224.mode == "RGB"
    assert scene640.size == (640, 480) and scene640.mode == "RGB"

    fdir = os.path.join(out, "tiny_clip")
    for ck in ("checkpoint.pt", "checkpoint_module.pt", "checkpoint.safetensors"):
        model = ref.load_model(fdir, os.path.join(fdir, ck))
        _same_outputs(model, fdir, scene224, scene640, True, f"tiny_clip/{ck}")

    ck = torch.load(os.path.join(fdir, "checkpoint.pt"), map_location="cpu", weights_only=True)
    assert set(ck) == {"model", "optimizer", "epoch"} and ck["epoch"] == EPOCH
    nbt = [v for k, v in ck["model"].items() if k.endswith("num_batches_tracked")]
    assert nbt and all(v.dtype == torch.int64 and v.ndim == 0 for v in nbt)
    assert all(v.dtype == torch.float32 for k, v in ck["model"].items() if not k.endswith("num_batches_tracked"))
    st = ck["optimizer"]["state"]
    assert all({"step", "exp_avg", "exp_avg_sq"} <= set(s) for s in st.values())
    ckm = torch.load(os.path.join(fdir, "checkpoint_module.pt"), map_location="cpu", weights_only=True)
    assert all(k.startswith("module.") for k in ckm["model"])
    assert not any(k.startswith("module.clip_vision_model.vision_model.") for k in ckm["model"])
    assert [ref.normalize_state_dict_keys({k: None}, True).popitem()[0] for k in ckm["model"]] == list(ck["model"])
    sft = load_file(os.path.join(fdir, "checkpoint.safetensors"))
    assert list(sft) == sorted(ck["model"]) or set(sft) == set(ck["model"])
    assert all(torch.equal(sft[k], ck["model"][k]) for k in ck["model"])

    # Backbone from the stand-alone CLIP file + decoder-only tensors.
    clip_sd = load_file(os.path.join(fdir, "clip", "model.safetensors"))
    tops = {k.split(".")[0] for k in clip_sd}
    assert tops == {"vision_model", "text_model", "visual_projection", "text_projection", "logit_scale"}, tops
    dec = load_file(os.path.join(fdir, "decoder.safetensors"))
    assert not any(k.startswith("clip_vision_model") for k in dec)
    combo = {"clip_vision_model." + k: v for k, v in clip_sd.items() if k.startswith("vision_model.")}
    combo.update(dec)
    model = ref.build_from_dir(fdir)
    model.load_state_dict(ref.normalize_state_dict_keys(combo, ref.backbone_is_wrapped(model)), strict=True)
    model.eval()
    _same_outputs(model, fdir, scene224, scene640, True, "tiny_clip/clip/model.safetensors + decoder.safetensors")
    with open(os.path.join(fdir, "clip", "config.json"), encoding="utf-8") as f:
        full_cfg = json.load(f)
    assert full_cfg["vision_config"]["hidden_size"] == 64

    fdir = os.path.join(out, "tiny_siglip")
    model = ref.load_model(fdir, os.path.join(fdir, "checkpoint.safetensors"))
    _same_outputs(model, fdir, scene224, scene640, False, "tiny_siglip/checkpoint.safetensors")


def check_pil_restatement(imgs) -> None:
    """The numpy restatement of PIL bicubic must be bit-exact (fixture scenes
    plus a few random shrink / enlarge cases)."""
    rng = np.random.default_rng(5)
    cases = [(im, 224, 224) for im in imgs]
    for (w, h), (ow, oh) in (((1280, 720), (224, 224)), ((100, 80), (224, 224)), ((333, 201), (224, 224)),
                             ((640, 480), (704, 352)), ((200, 480), (224, 224)), ((182, 279), (59, 35))):
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        cases.append((Image.fromarray(arr, "RGB"), ow, oh))
    for im, ow, oh in cases:
        exp = np.asarray(im.resize((ow, oh), Image.BICUBIC))
        got = ref.pil_bicubic_resize(np.asarray(im), ow, oh, pillow13_order=PIL_MAJOR >= 13)
        assert np.array_equal(exp, got), f"PIL bicubic restatement differs for {im.size} -> {(ow, oh)}"
    print("PIL bicubic restatement: bit-exact")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.normpath(os.path.join(HERE, "..", "fixtures")))
    args = ap.parse_args()
    out = args.out

    torch.set_num_threads(1)
    torch.manual_seed(0)
    os.makedirs(os.path.join(out, "images"), exist_ok=True)

    scene224 = make_indoor(224, 224, seed=11)
    scene640 = make_outdoor(480, 640, seed=12)
    scene224.save(os.path.join(out, "images", "scene_224.png"), optimize=True)
    scene640.save(os.path.join(out, "images", "scene_640x480.png"), optimize=True)
    # Work from the decoded PNGs so that the fixtures match what a reader sees.
    scene224 = Image.open(os.path.join(out, "images", "scene_224.png")).convert("RGB")
    scene640 = Image.open(os.path.join(out, "images", "scene_640x480.png")).convert("RGB")
    imgs = [scene224, scene640]
    check_pil_restatement(imgs)

    write_clip(out, imgs, scene224, scene640)
    write_siglip(out, imgs, scene224, scene640)
    verify(out)

    total = 0
    print("files:")
    for root, _, files in sorted(os.walk(out)):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            total += os.path.getsize(p)
            print(f"  {os.path.relpath(p, out):45s} {os.path.getsize(p):>10,d} B")
    print(f"  total {total / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()

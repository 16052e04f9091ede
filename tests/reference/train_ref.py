"""Reference training pieces for SPACE-CLIP, written for this project from
the authors' definitions (paper and public ``train.py`` / ``utils/loss.py``
/ ``utils/dataloader.py`` / ``utils/utils.py``): the losses, the
deterministic (no-augmentation) data path, one training step, the
``cosine_warmup`` schedule, EMA and the evaluation protocol. The Rust
trainer is compared against these in ``tests/train.rs``.
"""

from __future__ import annotations

import math
import os
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from space_clip_ref import SpaceClipRef

# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------

EPS = 1e-7


def _fp(x: torch.Tensor) -> torch.Tensor:
    """float32 as the authors' losses cast, unless the run is in float64."""
    return x if x.dtype == torch.float64 else x.float()


def _to_target(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if pred.shape[-2:] != target.shape[-2:]:
        pred = F.interpolate(pred, size=target.shape[-2:], mode="bilinear", align_corners=True)
    return pred


def silog(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, focus: float = 0.85) -> torch.Tensor:
    """10 sqrt(max(Var(g) + (1 - focus) mean(g)^2, eps)), g = log p - log t
    over the valid pixels (population variance)."""
    pred = _to_target(_fp(pred), gt)
    if not mask.any():
        return pred.sum() * 0.0
    p = torch.clamp(pred, min=EPS)[mask]
    t = torch.clamp(gt.to(pred.dtype), min=EPS)[mask]
    g = torch.log(p) - torch.log(t)
    var = torch.var(g, unbiased=False) if g.numel() >= 2 else torch.zeros((), dtype=g.dtype)
    d = var + (1.0 - focus) * torch.mean(g) ** 2
    return 10 * torch.sqrt(torch.clamp(d, min=EPS))


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float32) -> torch.Tensor:
    """The 1D kernel in the run's precision ([`gaussian_kernel`]); the 2D
    window is its outer product in the run's precision (in float64 runs a
    float32-rounded product would dominate the comparison: SSIM's variances
    E[x^2] - E[x]^2 cancel)."""
    g = gaussian_kernel(size, sigma, dtype).to(dtype)
    return (g[:, None] @ g[None, :])[None, None]


def gaussian_kernel(size: int = 11, sigma: float = 1.5, dtype=torch.float32) -> torch.Tensor:
    """The normalised 1D Gaussian, formed in float64: in float32 runs rounded
    once (the authors form it in float32; the two differ by at most one unit
    in the last place, and rounding once makes it reproducible); in float64
    runs kept, as the authors' code computes it in a float64 run."""
    coords = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return g if dtype == torch.float64 else g.float()


def ssim(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - SSIM over valid pixels; both maps min-max normalised per
    sample by the ground truth's valid range and clamped to [0, 1]."""
    pred = _to_target(_fp(pred), gt)
    gt = gt.to(pred.dtype)
    x1 = torch.zeros_like(pred)
    x2 = torch.zeros_like(gt)
    for b in range(gt.shape[0]):
        valid = mask[b]
        if not valid.any():
            continue
        vals = gt[b][valid]
        lo, hi = vals.min(), vals.max()
        scale = torch.clamp(hi - lo, min=1e-6)
        x1[b] = (pred[b] - lo) / scale
        x2[b] = (gt[b] - lo) / scale
    x1 = torch.clamp(x1, 0, 1)
    x2 = torch.clamp(x2, 0, 1)
    w = gaussian_window(dtype=pred.dtype)
    pad = 5
    mu1 = F.conv2d(x1, w, padding=pad)
    mu2 = F.conv2d(x2, w, padding=pad)
    s11 = F.conv2d(x1 * x1, w, padding=pad) - mu1**2
    s22 = F.conv2d(x2 * x2, w, padding=pad) - mu2**2
    s12 = F.conv2d(x1 * x2, w, padding=pad) - mu1 * mu2
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))
    loss = 1.0 - ssim_map
    if not mask.any():
        return pred.sum() * 0.0
    return loss[mask].mean()


def gradient(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean L1 between finite differences, over pairs of valid pixels."""
    pred = _to_target(_fp(pred), gt)
    gt = gt.to(pred.dtype)
    pdx = pred[..., :, 1:] - pred[..., :, :-1]
    pdy = pred[..., 1:, :] - pred[..., :-1, :]
    tdx = gt[..., :, 1:] - gt[..., :, :-1]
    tdy = gt[..., 1:, :] - gt[..., :-1, :]
    mdx = mask[..., :, 1:] & mask[..., :, :-1]
    mdy = mask[..., 1:, :] & mask[..., :-1, :]
    if not mdx.any() and not mdy.any():
        return pred.sum() * 0.0
    dx = (pdx - tdx).abs()[mdx].mean() if mdx.any() else pred.sum() * 0.0
    dy = (pdy - tdy).abs()[mdy].mean() if mdy.any() else pred.sum() * 0.0
    return 0.5 * (dx + dy)


def aux_weight(k: int, weights) -> float:
    if isinstance(weights, (int, float)):
        return float(weights)
    if not weights:
        return 0.0
    return float(weights[k]) if k < len(weights) else float(weights[-1])


def total_loss(depth, aux, gt, mask, cfg) -> Tuple[torch.Tensor, Dict[str, float]]:
    w_ssim = cfg.get("w_ssim", 0.85)
    w_grad = cfg.get("w_grad", 0.0)
    l_silog = silog(depth, gt, mask)
    l_ssim = ssim(depth, gt, mask)
    total = (1.0 - w_ssim) * l_silog + w_ssim * l_ssim
    l_aux = torch.zeros((), dtype=l_silog.dtype)
    if cfg.get("use_multiscale_supervision", False) and aux:
        for k, a in enumerate(aux):
            wk = aux_weight(k, cfg.get("aux_loss_weights", [0.25, 0.125, 0.0625]))
            if wk <= 0:
                continue
            l_aux = l_aux + wk * silog(a, gt, mask)
        total = total + l_aux
    l_grad = torch.zeros((), dtype=l_silog.dtype)
    if w_grad > 0:
        l_grad = gradient(depth, gt, mask)
        total = total + w_grad * l_grad
    terms = {"silog": l_silog.item(), "ssim": l_ssim.item(), "aux": l_aux.item(), "grad": l_grad.item()}
    return total, terms


# ---------------------------------------------------------------------------
# Model forward as in training (the authors' SPACECLIP.forward)
# ---------------------------------------------------------------------------


def forward_train(model: SpaceClipRef, pixels: torch.Tensor, out_hw: Tuple[int, int]):
    """(aux maps, depth), all resized to ``out_hw`` (align_corners=False)."""
    hs, pooled = model.encode(pixels)
    head, aux = model.decode(hs, pooled, return_aux=True)
    depth = F.interpolate(head, size=out_hw, mode="bilinear", align_corners=False)
    aux = [F.interpolate(a, size=out_hw, mode="bilinear", align_corners=False) for a in aux]
    return aux, depth


# ---------------------------------------------------------------------------
# Deterministic data path (no rotation, crop at the origin, no flip/jitter)
# ---------------------------------------------------------------------------


def load_train_sample(data_root, gt_root, line, input_hw, divisor, mean, std, size=224):
    rgb_rel, depth_rel = line.split()[:2]
    img = Image.open(os.path.join(data_root, rgb_rel.lstrip("/"))).convert("RGB")
    dep = Image.open(os.path.join(gt_root, depth_rel.lstrip("/")))
    img_np = np.asarray(img, dtype=np.float32) / 255.0
    dep_np = np.asarray(dep, dtype=np.float32) / divisor
    h, w = input_hw
    img_np = img_np[:h, :w, :]
    dep_np = dep_np[:h, :w]
    clip = Image.fromarray((img_np * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    clip = np.asarray(clip, dtype=np.float32) / 255.0
    clip = (torch.from_numpy(clip.transpose(2, 0, 1)) - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    return clip.float(), torch.from_numpy(np.ascontiguousarray(dep_np))[None].float()


def load_eval_sample(data_root, gt_root, line, input_hw, divisor, mean, std, size=224):
    """Eval path: resize to the input size when it differs (bicubic image,
    nearest depth through a float image)."""
    rgb_rel, depth_rel = line.split()[:2]
    img = Image.open(os.path.join(data_root, rgb_rel.lstrip("/"))).convert("RGB")
    dep_np = np.asarray(Image.open(os.path.join(gt_root, depth_rel.lstrip("/"))), dtype=np.float32) / divisor
    h, w = input_hw
    img_np = np.asarray(img, dtype=np.float32) / 255.0
    if img_np.shape[0] != h or img_np.shape[1] != w:
        img_np = np.asarray(Image.fromarray((img_np * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC), dtype=np.float32) / 255.0
        dep_np = np.asarray(Image.fromarray(dep_np).resize((w, h), Image.NEAREST), dtype=np.float32)
    clip = Image.fromarray((img_np * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    clip = np.asarray(clip, dtype=np.float32) / 255.0
    clip = (torch.from_numpy(clip.transpose(2, 0, 1)) - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    return clip.float(), dep_np


# ---------------------------------------------------------------------------
# Schedule and EMA
# ---------------------------------------------------------------------------


def cosine_warmup_lambda(total_steps: int, warmup_ratio: float, warmup_steps: int, base_lr: float, min_lr: float):
    total = max(1, total_steps)
    warm = warmup_steps if warmup_steps > 0 else int(total * warmup_ratio)
    warm = max(1, min(warm, total - 1))
    ratio = min(1.0, max(0.0, min_lr / max(base_lr, 1e-12)))

    def f(step: int) -> float:
        if step < warm:
            return float(step + 1) / float(warm)
        progress = min(max(float(step - warm) / float(max(1, total - warm)), 0.0), 1.0)
        return ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


class Ema:
    """Shadow copies of the trainable parameters and buffers (frozen weights
    are constants and not tracked)."""

    def __init__(self, model, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in decoder_state(model).items()}

    def update(self, model):
        with torch.no_grad():
            for k, v in decoder_state(model).items():
                if v.is_floating_point():
                    self.shadow[k].mul_(self.decay).add_(v.detach(), alpha=1.0 - self.decay)
                else:
                    self.shadow[k] = v.detach().clone()


def decoder_state(model) -> Dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("clip_vision_model.")}


# ---------------------------------------------------------------------------
# Evaluation protocol (the authors' validate() per image + compute_errors)
# ---------------------------------------------------------------------------


def compute_errors(gt: np.ndarray, pred: np.ndarray) -> Dict[str, float]:
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    valid = np.isfinite(gt) & np.isfinite(pred) & (gt > 1e-6) & (pred > 1e-6)
    if not valid.any():
        return {k: float("nan") for k in ("a1", "a2", "a3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log_10", "silog")}
    gt = np.clip(gt[valid], 1e-6, None)
    pred = np.clip(pred[valid], 1e-6, None)
    thresh = np.maximum(gt / pred, pred / gt)
    err = np.log(pred) - np.log(gt)
    return {
        "a1": (thresh < 1.25).mean(),
        "a2": (thresh < 1.25**2).mean(),
        "a3": (thresh < 1.25**3).mean(),
        "abs_rel": np.mean(np.abs(gt - pred) / gt),
        "sq_rel": np.mean(((gt - pred) ** 2) / gt),
        "rmse": np.sqrt(((gt - pred) ** 2).mean()),
        "rmse_log": np.sqrt(((np.log(gt) - np.log(pred)) ** 2).mean()),
        "log_10": np.abs(np.log10(gt) - np.log10(pred)).mean(),
        "silog": np.sqrt(max(float(np.mean(err**2) - np.mean(err) ** 2), 0.0)) * 100,
    }


def crop_mask(shape, dataset: str, crop: str) -> Optional[np.ndarray]:
    h, w = shape
    m = np.zeros((h, w), dtype=bool)
    if crop == "garg" and dataset == "kitti":
        m[int(0.40810811 * h) : int(0.99189189 * h), int(0.03594771 * w) : int(0.96405229 * w)] = True
        return m
    if crop == "eigen" and dataset == "kitti":
        m[int(0.3324324 * h) : int(0.91351351 * h), int(0.0359477 * w) : int(0.96405229 * w)] = True
        return m
    if crop == "eigen" and dataset == "nyu":
        m[45:471, 41:601] = True
        return m
    return None


def image_metrics(gt, pred, dataset, crop, lo, hi, median_scaling) -> Optional[Dict[str, float]]:
    mask = (gt > lo) & (gt < hi)
    cm = crop_mask(gt.shape, dataset, crop)
    if cm is not None:
        mask &= cm
    if not mask.any():
        return None
    g, p = gt[mask], pred[mask]
    if median_scaling:
        pm, gm = np.median(p), np.median(g)
        if np.isfinite(pm) and np.isfinite(gm) and pm > 1e-6:
            p = p * (gm / pm)
    p = np.clip(p, lo, hi)
    return compute_errors(g, p)


class RunningAverage:
    def __init__(self):
        self.avg, self.count = {}, 0

    def add(self, m: Dict[str, float]):
        for k, v in m.items():
            self.avg[k] = (v + self.count * self.avg.get(k, 0.0)) / (self.count + 1)
        self.count += 1

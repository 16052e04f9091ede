"""Writes the training and evaluation fixtures the Rust tests compare
against (tests/train.rs):

- ``tests/fixtures/train_data/``: a small synthetic RGB-D dataset in the
  NYU layout (8-bit RGB PNG, 16-bit depth PNG in millimetres, the authors'
  file lists), ray-cast from simple rooms so depth is exact; a list with bad
  lines and a corrupt PNG; the training config.
- ``tests/fixtures/train/losses.safetensors``: each loss and its gradient on
  fixed tensors.
- ``tests/fixtures/train/train_step.safetensors``: one forward and backward
  pass of the tiny model in train mode (every decoder gradient, the
  BatchNorm running statistics after it).
- ``tests/fixtures/train/three_steps.safetensors``: three deterministic
  optimiser steps (weights, EMA and learning rate after each).
- ``tests/fixtures/train/predictions/`` and ``eval_expected.json``: fixed
  predictions for the validation list and their metrics under several
  protocols; metrics of the tiny model itself.

Seeded and single-threaded: re-running rewrites the same files.
Run from the repository root: ``.venv-ref/bin/python tests/reference/make_train_fixtures.py``.
"""

from __future__ import annotations

import copy
import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import train_ref as tr  # noqa: E402
from space_clip_ref import SpaceClipRef, load_checkpoint_file, load_vision_config, load_yaml_config, normalize_state_dict_keys  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
DATA = os.path.join(FIX, "train_data")
OUT = os.path.join(FIX, "train")
TINY = os.path.join(FIX, "tiny_clip")

torch.manual_seed(0)
torch.set_num_threads(1)

# ---------------------------------------------------------------------------
# Synthetic rooms
# ---------------------------------------------------------------------------


def render_room(rng: np.random.Generator, w: int, h: int, f: float):
    """Ray-casts a room (floor, ceiling, walls, boxes, a ball) from a
    pinhole camera at the origin looking along +z (y down). Returns RGB
    uint8 (h, w, 3) and depth in metres (z of the hit)."""
    u = (np.arange(w) + 0.5 - w / 2) / f
    v = (np.arange(h) + 0.5 - h / 2) / f
    dx, dy = np.meshgrid(u, v)
    dz = np.ones_like(dx)
    depth = np.full((h, w), np.inf)
    colour = np.zeros((h, w, 3))
    normal = np.zeros((h, w, 3))
    tex = np.zeros((h, w))

    def hit(t, col, nrm, texture):
        closer = (t > 0.05) & (t < depth)
        depth[closer] = t[closer]
        colour[closer] = col
        normal[closer] = nrm
        tex[closer] = texture[closer]

    floor_y = rng.uniform(1.0, 1.5)
    ceil_y = -rng.uniform(1.3, 1.8)
    back_z = rng.uniform(4.0, 8.0)
    left_x, right_x = -rng.uniform(1.5, 3.0), rng.uniform(1.5, 3.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = floor_y / dy
        x, z = t * dx, t
        hit(np.where(dy > 0, t, np.inf), [0.55, 0.4, 0.28], [0, -1, 0], ((np.floor(x * 2) + np.floor(z * 2)) % 2) * 0.25)
        t = ceil_y / dy
        hit(np.where(dy < 0, t, np.inf), [0.85, 0.85, 0.82], [0, 1, 0], np.zeros_like(t))
        t = np.where(dz > 0, back_z / dz, np.inf)
        hit(t, rng.uniform(0.3, 0.9, 3), [0, 0, -1], (np.floor(t * dy * 3) % 2) * 0.1)
        for wx, n in ((left_x, [1, 0, 0]), (right_x, [-1, 0, 0])):
            t = wx / dx
            hit(np.where(t > 0, t, np.inf), rng.uniform(0.3, 0.9, 3), n, (np.floor(t * 1.5) % 2) * 0.12)
        for _ in range(rng.integers(1, 4)):
            # Axis-aligned box standing on the floor: slab intersection.
            cx, cz = rng.uniform(left_x + 0.5, right_x - 0.5), rng.uniform(1.5, back_z - 0.5)
            sx, sy, sz = rng.uniform(0.3, 0.8), rng.uniform(0.4, 1.2), rng.uniform(0.3, 0.8)
            lo = np.array([cx - sx, floor_y - 2 * sy, cz - sz])
            hi = np.array([cx + sx, floor_y, cz + sz])
            dirs = np.stack([dx, dy, dz], -1)
            t1 = (lo - 0) / dirs
            t2 = (hi - 0) / dirs
            tmin = np.minimum(t1, t2).max(-1)
            tmax = np.maximum(t1, t2).min(-1)
            t = np.where((tmax >= tmin) & (tmin > 0), tmin, np.inf)
            axis = np.argmax(np.minimum(t1, t2), -1)
            nrm = np.zeros((h, w, 3))
            nrm[np.arange(h)[:, None], np.arange(w)[None, :], axis] = -1
            col = rng.uniform(0.2, 1.0, 3)
            closer = (t > 0.05) & (t < depth)
            depth[closer] = t[closer]
            colour[closer] = col
            normal[closer] = nrm[closer]
            tex[closer] = 0.0
        # A ball.
        c = np.array([rng.uniform(left_x + 0.6, right_x - 0.6), floor_y - 0.4, rng.uniform(2.0, back_z - 0.6)])
        r = 0.4
        dirs = np.stack([dx, dy, dz], -1)
        a = (dirs**2).sum(-1)
        b = -2 * (dirs @ c)
        cc = c @ c - r * r
        disc = b * b - 4 * a * cc
        t = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
        pts = dirs * t[..., None]
        nrm = (pts - c) / r
        closer = (t > 0.05) & (t < depth)
        depth[closer] = t[closer]
        colour[closer] = [0.9, 0.25, 0.2]
        normal[closer] = nrm[closer]
        tex[closer] = 0.0
    light = np.array([0.4, -0.8, -0.45])
    light /= np.linalg.norm(light)
    lambert = np.clip((normal * light).sum(-1), 0, 1) * 0.6 + 0.4
    fog = np.clip(1.0 - depth / 25.0, 0.5, 1.0)
    rgb = colour * (lambert * fog)[..., None] + tex[..., None]
    rgb = rgb + rng.normal(0, 0.01, rgb.shape)
    rgb = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)
    depth[~np.isfinite(depth)] = 0.0
    # Sensor-like holes: a few invalid pixels.
    holes = rng.random((h, w)) < 0.02
    depth[holes] = 0.0
    return rgb, depth


def write_scene(rgb, depth, rgb_path, depth_path):
    os.makedirs(os.path.dirname(rgb_path), exist_ok=True)
    Image.fromarray(rgb).save(rgb_path)
    mm = np.clip(np.round(depth * 1000.0), 0, 65535).astype(np.uint16)
    Image.fromarray(mm).save(depth_path)  # 16-bit grey PNG (mode I;16)


def make_dataset():
    rng = np.random.default_rng(20261129)
    train_lines, val_lines = [], []
    for i in range(10):
        rgb, depth = render_room(rng, 80, 60, 60.0)
        write_scene(rgb, depth, os.path.join(DATA, "train", f"room_{i:02d}_rgb.png"), os.path.join(DATA, "train", f"room_{i:02d}_depth.png"))
        train_lines.append(f"/train/room_{i:02d}_rgb.png /train/room_{i:02d}_depth.png 60.0")
    for i in range(4):
        rgb, depth = render_room(rng, 64, 48, 48.0)
        write_scene(rgb, depth, os.path.join(DATA, "val", f"room_{i:02d}_rgb.png"), os.path.join(DATA, "val", f"room_{i:02d}_depth.png"))
        val_lines.append(f"/val/room_{i:02d}_rgb.png /val/room_{i:02d}_depth.png 48.0")
    with open(os.path.join(DATA, "train.txt"), "w") as f:
        f.write("\n".join(train_lines) + "\n")
    with open(os.path.join(DATA, "val.txt"), "w") as f:
        f.write("\n".join(val_lines) + "\n")
    # A list with problems: a missing file, a corrupt PNG, a line without a
    # depth path and a bad focal; four good lines.
    os.makedirs(os.path.join(DATA, "bad"), exist_ok=True)
    good = open(os.path.join(DATA, "train", "room_00_depth.png"), "rb").read()
    with open(os.path.join(DATA, "bad", "corrupt_depth.png"), "wb") as f:
        f.write(good[: len(good) // 3])
    bad_lines = [
        train_lines[0],
        "/train/missing_rgb.png /train/missing_depth.png 60.0",
        train_lines[1],
        "/train/room_02_rgb.png /bad/corrupt_depth.png 60.0",
        train_lines[3],
        "/train/room_04_rgb.png",
        "/train/room_05_rgb.png /train/room_05_depth.png not-a-number",
        train_lines[6],
    ]
    with open(os.path.join(DATA, "bad.txt"), "w") as f:
        f.write("\n".join(bad_lines) + "\n")
    return train_lines, val_lines


CONFIG = """# Training config for the synthetic test rooms (the authors' keys), with the
# tiny random SPACE-CLIP of tests/fixtures/tiny_clip. Paths are relative to
# the repository root.
name: "tiny_rooms"
epochs: 2
learning_rate: 0.001
weight_decay: 0.01
batch_size: 2
workers: 2
random_seed: 7
scheduler: "cosine_warmup"
min_lr: 0.00001
warmup_ratio: 0.2
validate_epochs: 1
num_log_images: 2
log_scalar_every_iters: 1

dataset: "nyu"
data_path: "tests/fixtures/train_data"
gt_path: "tests/fixtures/train_data"
filenames_file: "tests/fixtures/train_data/train.txt"
data_path_eval: "tests/fixtures/train_data"
gt_path_eval: "tests/fixtures/train_data"
filenames_file_eval: "tests/fixtures/train_data/val.txt"

input_height: 48
input_width: 64
clip_input_size: 224
do_random_rotate: true
degree: 2.5
do_nyu_crop: false
do_nyu_crop_eval: false
do_kb_crop: false

min_depth: 0.001
max_depth: 10.0
min_depth_eval: 0.001
max_depth_eval: 10.0
eval_crop: "none"
median_scaling_eval: false
eval_flip_tta: false

use_ema: true
ema_decay: 0.9
eval_with_ema: false
eval_both_for_best: true

w_ssim: 0.5
w_grad: 0.1
use_multiscale_supervision: true
aux_loss_weights: [0.10, 0.05, 0.00]

clip_model_name: "tiny-random-clip"
freeze_clip_vision: true
clip_interpolate_pos_encoding: false
main_path_indices: [12, 9, 6, 3]
structural_path_indices: [2, 1, 0]
film_param_hidden_dim: 32
decoder_channels: [32, 16, 16, 8]
decoder_dropout: 0.1
use_film: true
use_structural_pathway: true
"""

# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


def loss_cases():
    g = torch.Generator().manual_seed(1)
    out = {}
    cases = {
        # Same size; invalid pixels, exact zeros in the prediction.
        "same": ((2, 1, 12, 16), (2, 1, 12, 16)),
        # Prediction smaller than the ground truth (align_corners=True resize).
        "resize": ((2, 1, 7, 9), (2, 1, 12, 16)),
        # One sample without any valid pixel.
        "empty_sample": ((2, 1, 10, 10), (2, 1, 10, 10)),
    }
    for name, (ps, gs) in cases.items():
        pred = torch.rand(ps, generator=g) * 6 + 0.2
        pred[0, 0, 0, :3] = 0.0
        gt = torch.rand(gs, generator=g) * 8 + 0.5
        gt[:, :, 1, 2:6] = 0.0
        gt[0, 0, -1, -1] = 12.0
        if name == "empty_sample":
            gt[1] = 0.0
        mask = (gt > 0.001) & (gt < 10.0)
        out[f"{name}.pred"] = pred.clone()
        out[f"{name}.gt"] = gt.clone()
        for loss_name, fn in (("silog", tr.silog), ("ssim", tr.ssim), ("grad", tr.gradient)):
            p = pred.clone().requires_grad_(True)
            value = fn(p, gt, mask)
            value.backward()
            out[f"{name}.{loss_name}.value"] = value.detach().reshape(1).double()
            out[f"{name}.{loss_name}.grad"] = p.grad.detach().clone()
    save_file(out, os.path.join(OUT, "losses.safetensors"))


def tiny_model(cfg_overrides):
    cfg = load_yaml_config(os.path.join(TINY, "config.yaml"))
    cfg.update(cfg_overrides)
    # sdpa: the eager attention of transformers computes its softmax in
    # float32 even in a float64 model, which would make the float64
    # reference only float32-accurate.
    model = SpaceClipRef(cfg, load_vision_config(os.path.join(TINY, "clip_config.json")), attn_implementation="sdpa")
    sd = normalize_state_dict_keys(load_checkpoint_file(os.path.join(TINY, "checkpoint.safetensors")), True)
    model.load_state_dict(sd, strict=True)
    return model


def batches(cfg, lines, n_batches):
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    b = cfg["batch_size"]
    for k in range(n_batches):
        samples = [
            tr.load_train_sample(DATA, DATA, lines[k * b + i], (cfg["input_height"], cfg["input_width"]), 1000.0, mean, std)
            for i in range(b)
        ]
        yield torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])


def step_fixtures(cfg, train_lines):
    """One train-mode forward/backward (in float32 and in float64) and three
    optimiser steps (float64: in float32, Adam's first steps amplify
    rounding noise in near-zero gradient components to whole steps)."""
    cfg = dict(cfg, decoder_dropout=0.0)
    hw = (cfg["input_height"], cfg["input_width"])
    out = {}
    for dtype, tag in ((torch.float32, ""), (torch.float64, "64")):
        model = tiny_model({"decoder_dropout": 0.0, "use_multiscale_supervision": True}).to(dtype)
        model.train()
        pixels, depth = next(batches(cfg, train_lines, 1))
        pixels, depth = pixels.to(dtype), depth.to(dtype)
        aux, pred = tr.forward_train(model, pixels, hw)
        mask = (depth > cfg["min_depth"]) & (depth < cfg["max_depth"])
        loss, terms = tr.total_loss(pred, aux, depth, mask, cfg)
        loss.backward()
        out[f"loss{tag}"] = torch.tensor([loss.item(), terms["silog"], terms["ssim"], terms["aux"], terms["grad"]], dtype=torch.float64)
        for name, p in model.named_parameters():
            if p.requires_grad and p.grad is not None:
                out[f"grad{tag}.{name}"] = p.grad.detach().clone()
        for name, t in tr.decoder_state(model).items():
            if "running" in name or "num_batches" in name:
                out[f"after{tag}.{name}"] = t.detach().clone()
    save_file(out, os.path.join(OUT, "train_step.safetensors"))

    # Three optimiser steps from the same start, in float64.
    model = tiny_model({"decoder_dropout": 0.0, "use_multiscale_supervision": True}).double()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg["learning_rate"], weight_decay=cfg["weight_decay"])
    per_epoch = len(train_lines) // cfg["batch_size"]
    lam = tr.cosine_warmup_lambda(per_epoch * cfg["epochs"], cfg["warmup_ratio"], 0, cfg["learning_rate"], cfg["min_lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=lam)
    ema = tr.Ema(model, cfg["ema_decay"])
    init = {k: v.clone() for k, v in tr.decoder_state(model).items()}
    out = {}

    def delta(name, t):
        # The change from the start, in float32 (plenty for a 1e-4 bar, half the size).
        return t.detach().clone() if not t.is_floating_point() else (t.detach() - init[name]).float()

    lrs, losses = [], []
    for k, (pixels, depth) in enumerate(batches(cfg, train_lines, 3)):
        pixels, depth = pixels.double(), depth.double()
        opt.zero_grad(set_to_none=True)
        aux, pred = tr.forward_train(model, pixels, hw)
        mask = (depth > cfg["min_depth"]) & (depth < cfg["max_depth"])
        loss, _ = tr.total_loss(pred, aux, depth, mask, cfg)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        ema.update(model)
        losses.append(loss.item())
        for name, t in tr.decoder_state(model).items():
            out[f"step{k + 1}.{name}"] = delta(name, t)
        for name, t in ema.shadow.items():
            out[f"ema{k + 1}.{name}"] = delta(name, t)
    out["lr"] = torch.tensor(lrs, dtype=torch.float64)
    out["loss"] = torch.tensor(losses, dtype=torch.float64)
    save_file(out, os.path.join(OUT, "three_steps.safetensors"))


def eval_fixtures(cfg, val_lines):
    pred_dir = os.path.join(OUT, "predictions")
    os.makedirs(pred_dir, exist_ok=True)
    rng = np.random.default_rng(5)
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    hw = (cfg["input_height"], cfg["input_width"])
    preds = []
    for i, line in enumerate(val_lines):
        _, gt = tr.load_eval_sample(DATA, DATA, line, hw, 1000.0, mean, std)
        p = (gt * rng.uniform(0.7, 1.4, gt.shape) + rng.normal(0, 0.2, gt.shape)).astype(np.float32)
        p[gt == 0] = rng.uniform(0.5, 5.0, (gt == 0).sum())
        p[0, :4] = 0.0
        p[1, 1] = 30.0
        np.save(os.path.join(pred_dir, f"{i:05d}.npy"), p)
        preds.append(p)

    def protocol(dataset, crop, median, lo, hi, divisor):
        avg = tr.RunningAverage()
        for i, line in enumerate(val_lines):
            _, gt = tr.load_eval_sample(DATA, DATA, line, hw, divisor, mean, std)
            m = tr.image_metrics(gt, preds[i], dataset, crop, np.float32(lo), np.float32(hi), median)
            if m is not None and all(np.isfinite(v) for v in m.values()):
                avg.add(m)
        return {k: float(v) for k, v in avg.avg.items()}

    expected = {
        "none": protocol("nyu", "none", False, 0.001, 10.0, 1000.0),
        "nyu_eigen": protocol("nyu", "eigen", False, 0.001, 10.0, 1000.0),
        "median": protocol("nyu", "none", True, 0.001, 10.0, 1000.0),
        "range": protocol("nyu", "none", False, 1.0, 5.0, 1000.0),
        "kitti_eigen": protocol("kitti", "eigen", False, 0.001, 80.0, 256.0),
        "kitti_garg": protocol("kitti", "garg", True, 0.001, 80.0, 256.0),
    }

    # The tiny model itself, evaluated as the authors' validate() does.
    model = tiny_model({})
    model.eval()
    for flip in (False, True):
        avg = tr.RunningAverage()
        for i, line in enumerate(val_lines):
            clip, gt = tr.load_eval_sample(DATA, DATA, line, hw, 1000.0, mean, std)
            with torch.no_grad():
                px = clip[None]
                _, d = tr.forward_train(model, px, gt.shape)
                if flip:
                    _, d2 = tr.forward_train(model, torch.flip(px, dims=[3]), gt.shape)
                    d = 0.5 * (d + torch.flip(d2, dims=[3]))
            m = tr.image_metrics(gt, d[0, 0].numpy(), "nyu", "none", np.float32(0.001), np.float32(10.0), False)
            if m is not None:
                avg.add(m)
        expected["model_flip" if flip else "model"] = {k: float(v) for k, v in avg.avg.items()}
    with open(os.path.join(OUT, "eval_expected.json"), "w") as f:
        json.dump(expected, f, indent=2, sort_keys=True)
        f.write("\n")


def pil_geometry_fixtures():
    """Pillow's rotate (bicubic RGB, nearest 16- and 8-bit depth) and
    nearest resize (float and 16-bit), for the loader's augmentations."""
    rgb = np.asarray(Image.open(os.path.join(DATA, "train", "room_03_rgb.png")).convert("RGB"))
    dep16 = Image.open(os.path.join(DATA, "train", "room_03_depth.png"))
    dep8 = Image.fromarray((np.asarray(dep16, dtype=np.float32) / 40).clip(0, 255).astype(np.uint8))
    depf = Image.fromarray(np.asarray(dep16, dtype=np.float32) / 1000.0)
    sq = Image.fromarray(rgb[:48, :48])
    out = {"rgb": torch.from_numpy(rgb.copy()), "dep16": torch.from_numpy(np.asarray(dep16).astype(np.int64)),
           "dep8": torch.from_numpy(np.asarray(dep8).astype(np.int64)), "depf": torch.from_numpy(np.asarray(depf).copy())}
    img = Image.fromarray(rgb)
    angles = [1.7, -2.3, 0.4, 30.0, 180.0, -1.0]
    for i, a in enumerate(angles):
        out[f"rot{i}.rgb"] = torch.from_numpy(np.asarray(img.rotate(a, resample=Image.BICUBIC, fillcolor=(0, 0, 0))).copy())
        out[f"rot{i}.dep16"] = torch.from_numpy(np.asarray(dep16.rotate(a, resample=Image.NEAREST, fillcolor=0)).astype(np.int64))
        out[f"rot{i}.dep8"] = torch.from_numpy(np.asarray(dep8.rotate(a, resample=Image.NEAREST, fillcolor=0)).astype(np.int64))
    out["angles"] = torch.tensor(angles, dtype=torch.float64)
    out["sq"] = torch.from_numpy(np.asarray(sq).copy())
    out["sq90"] = torch.from_numpy(np.asarray(sq.rotate(90, resample=Image.BICUBIC, fillcolor=(0, 0, 0))).copy())
    for j, (w, h) in enumerate([(64, 48), (160, 120), (37, 29), (80, 61)]):
        out[f"resize{j}.size"] = torch.tensor([w, h])
        out[f"resize{j}.depf"] = torch.from_numpy(np.asarray(depf.resize((w, h), Image.NEAREST)).copy())
        out[f"resize{j}.dep16"] = torch.from_numpy(np.asarray(dep16.resize((w, h), Image.NEAREST)).astype(np.int64))
    save_file(out, os.path.join(OUT, "pil_geometry.safetensors"))


def main():
    os.makedirs(DATA, exist_ok=True)
    os.makedirs(OUT, exist_ok=True)
    train_lines, val_lines = make_dataset()
    with open(os.path.join(DATA, "config.yaml"), "w") as f:
        f.write(CONFIG)
    import yaml

    cfg = yaml.safe_load(CONFIG)
    pil_geometry_fixtures()
    loss_cases()
    step_fixtures(copy.deepcopy(cfg), train_lines)
    eval_fixtures(cfg, val_lines)
    print("wrote", DATA, "and", OUT)


if __name__ == "__main__":
    main()

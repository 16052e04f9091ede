"""Three deterministic training steps of the tiny model computed by the
SPACE-CLIP authors' own code, in float64, for comparison with
`clip_depth train --dtype f64` (and with ``three_steps.safetensors``, which
the project's own reference ``train_ref.py`` produces).

The authors' code is not part of this repository. Point ``--authors`` at a
checkout of https://github.com/taewan2002/SPACE-CLIP; its ``space_clip.py``
and ``utils/loss.py`` are read, edited in memory and executed as modules:

- every ``.to(torch.float32)`` in the losses is removed, so they run in
  the model's float64 (the authors cast to float32 "for stability");
- the SSIM loss's Gaussian kernel, which the authors form in float32
  (``torch.arange(..., dtype=torch.float32)``), is formed in the default
  dtype, float64: a float32 window cannot be convolved with float64 maps.
  On the first batch, keeping the authors' float32 kernel values instead
  (window then formed in float64) would move the SSIM term by 4.4e-7
  relative. The project's f32 kernel (formed in float64 and rounded once
  to float32, ``train_ref.gaussian_kernel``) moves it by 2e-8, and that is
  the only difference between this run and ``train_ref.py``'s
  (``--compare``); ``clip_depth train --dtype f64`` keeps the kernel in
  float64 (``src/train/loss/ssim.rs``) and agrees with this run to about
  1e-15 in the loss and the gradient norm of each step;
- ``SPACECLIP._load_vision_backbone`` (``from_pretrained``) is overridden
  to build the tiny CLIP of ``tests/fixtures/tiny_clip/clip_config.json``
  with transformers' ``sdpa`` attention (its eager attention computes the
  softmax in float32 even in a float64 model).

Each edit must match the authors' source exactly once, or the script
stops. Everything else is the authors' code: the model's forward, the
losses, and their combination as ``train.py`` writes it ((1 - w_ssim) SILog
+ w_ssim SSIM + sum_k w_k SILog(aux_k) + w_grad Grad over the mask
``min_depth < gt < max_depth``).

The run is the one of ``make_train_fixtures.py``'s step fixtures and of
``tests/train.rs`` ``three_deterministic_steps_match_the_reference``: the
config ``tests/fixtures/train_data/config.yaml`` with
``decoder_dropout=0.0``, the tiny checkpoint
``tests/fixtures/tiny_clip/checkpoint.safetensors``, the first three
batches of ``train.txt`` in list order without augmentation, train mode,
AdamW (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01) over the
trainable (decoder) parameters, gradient clipping at global norm 1.0, the
``cosine_warmup`` schedule stepped per batch (10 steps, 2 of warm-up;
``train_ref.cosine_warmup_lambda``, the formula of the authors' train.py).
The batches are the float32 tensors the Rust loader makes, formed before
the default dtype is switched to float64 (``train_ref``'s normalisation
follows the default dtype: formed under float64 and rounded to float32,
46% of the pixel values differ by one unit in the last place, which moves
the first gradient norm by 2e-8 with the tiny checkpoint and by 1e-6 to
1e-3 with freshly initialised decoders, the loss by about 1e-9).

Writes (default ``tests/fixtures/train/authors_three_steps.safetensors``):

- ``loss`` (3,): the total loss of each step;
- ``grad_norm`` (3,): the global L2 norm of the gradients before clipping
  (what ``clip_grad_norm_`` returns; ``grad_norm`` in metrics.jsonl);
- ``lr`` (3,): the learning rate each step used;
- ``step3.{name}``: every decoder tensor of the state dict after the
  third step (parameters and BatchNorm running statistics in float64,
  ``num_batches_tracked`` as int64).

``--compare`` also runs the project's reference (``train_ref.py``) side by
side and prints how far apart the two are at each step.

Run from the repository root (the packages of requirements.txt):

    .venv-ref/bin/python tests/reference/make_authors_step_fixtures.py --authors ../SPACE-CLIP
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import types

import torch
import yaml
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import train_ref as tr  # noqa: E402
from make_train_fixtures import DATA, OUT, TINY, batches, tiny_model  # noqa: E402
from space_clip_ref import load_checkpoint_file, load_vision_config, normalize_state_dict_keys  # noqa: E402

STEPS = 3

# (file, [(old, new, expected count)]): the in-memory edits of the authors' code.
EDITS = {
    "space_clip.py": [],
    "utils/loss.py": [
        (".to(torch.float32)", "", 6),
        ("coords = torch.arange(window_size, dtype=torch.float32)", "coords = torch.arange(window_size)", 1),
    ],
}


def load_authors_module(authors_dir: str, rel_path: str, module_name: str) -> types.ModuleType:
    """Reads ``authors_dir/rel_path``, applies its EDITS and executes it as
    module ``module_name`` (registered in sys.modules)."""
    path = os.path.join(authors_dir, rel_path)
    with open(path, "r", encoding="utf-8") as f:
        src = f.read()
    for old, new, count in EDITS[rel_path]:
        found = src.count(old)
        if found != count:
            raise SystemExit(f"{path}: expected {count} x {old!r}, found {found}: not the code this script was written for")
        src = src.replace(old, new)
    module = types.ModuleType(module_name)
    module.__file__ = path
    sys.modules[module_name] = module
    exec(compile(src, path, "exec"), module.__dict__)
    return module


def authors_model(space_clip: types.ModuleType, cfg: dict) -> torch.nn.Module:
    """The authors' SPACECLIP built from the training config, as their
    train.py builds it, with the tiny backbone and the tiny checkpoint's
    weights, in float64."""
    vision_config = load_vision_config(os.path.join(TINY, "clip_config.json"))
    vision_config._attn_implementation = "sdpa"

    class TinySpaceClip(space_clip.SPACECLIP):
        def _load_vision_backbone(self, model_name):
            return space_clip.CLIPVisionModel(vision_config)

    with contextlib.redirect_stdout(io.StringIO()):  # the constructor prints its configuration
        model = TinySpaceClip(cfg)
    wrapped = hasattr(model.clip_vision_model, "vision_model")
    sd = normalize_state_dict_keys(load_checkpoint_file(os.path.join(TINY, "checkpoint.safetensors")), wrapped)
    model.load_state_dict(sd, strict=True)
    return model.double()


def authors_loss(losses: types.ModuleType, cfg: dict, aux_preds, depth_pred, depth_gt):
    """The total loss as the authors' train loop combines their criteria."""
    silog, ssim, grad = losses.SILogLoss(), losses.SSIMLoss(), losses.GradientLoss()
    mask = (depth_gt > cfg["min_depth"]) & (depth_gt < cfg["max_depth"])
    w_ssim, w_grad = cfg["w_ssim"], cfg["w_grad"]
    total = (1.0 - w_ssim) * silog(depth_pred, depth_gt, mask=mask) + w_ssim * ssim(depth_pred, depth_gt, mask=mask)
    if cfg["use_multiscale_supervision"] and aux_preds:
        aux = torch.zeros(())
        for k, pred in enumerate(aux_preds):
            w = tr.aux_weight(k, cfg["aux_loss_weights"])
            if w > 0.0:
                aux = aux + w * silog(pred, depth_gt, mask=mask)
        total = total + aux
    if w_grad > 0.0:
        total = total + w_grad * grad(depth_pred, depth_gt, mask=mask)
    return total


def reference_loss(cfg: dict, aux_preds, depth_pred, depth_gt):
    mask = (depth_gt > cfg["min_depth"]) & (depth_gt < cfg["max_depth"])
    return tr.total_loss(depth_pred, aux_preds, depth_gt, mask, cfg)[0]


def three_steps(model, forward, loss_fn, cfg, data, total_steps):
    """One optimiser step per batch of ``data`` as the Rust trainer takes
    them; returns the losses, norms before clipping, learning rates and the
    decoder state after each step."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg["learning_rate"], weight_decay=cfg["weight_decay"])
    lam = tr.cosine_warmup_lambda(total_steps, cfg["warmup_ratio"], int(cfg.get("warmup_steps", 0)),
                                  cfg["learning_rate"], cfg["min_lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=lam)
    hw = (cfg["input_height"], cfg["input_width"])
    losses, norms, lrs, states = [], [], [], []
    for pixels, depth in data:
        opt.zero_grad(set_to_none=True)
        aux, pred = forward(model, pixels, hw)
        loss = loss_fn(cfg, aux, pred, depth)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, 1.0)))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        losses.append(loss.item())
        states.append({k: v.detach().clone() for k, v in tr.decoder_state(model).items()})
    return losses, norms, lrs, states


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--authors", required=True, help="checkout of github.com/taewan2002/SPACE-CLIP")
    ap.add_argument("--out", default=os.path.join(OUT, "authors_three_steps.safetensors"))
    ap.add_argument("--compare", action="store_true", help="also run train_ref.py and print the differences")
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)
    with open(os.path.join(DATA, "config.yaml"), "r", encoding="utf-8") as f:
        cfg = dict(yaml.safe_load(f), decoder_dropout=0.0)
    with open(os.path.join(DATA, "train.txt"), "r", encoding="utf-8") as f:
        train_lines = [line for line in f.read().splitlines() if line.strip()]

    # The batches exactly as the Rust loader makes them (float32), formed
    # before the default dtype changes: train_ref's normalisation follows it.
    data = [(p.double(), d.double()) for p, d in batches(cfg, train_lines, STEPS)]
    total_steps = len(train_lines) // cfg["batch_size"] * cfg["epochs"]

    reference = None
    if args.compare:
        ref_model = tiny_model({"decoder_dropout": 0.0, "use_multiscale_supervision": cfg["use_multiscale_supervision"]}).double()
        reference = three_steps(ref_model, tr.forward_train, reference_loss, cfg, data, total_steps)

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        space_clip = load_authors_module(args.authors, "space_clip.py", "authors_space_clip")
        losses = load_authors_module(args.authors, "utils/loss.py", "authors_loss")
        model = authors_model(space_clip, cfg)

        def forward(m, pixels, hw):
            return m(pixels, output_size=hw)

        def loss_fn(c, aux, pred, depth):
            return authors_loss(losses, c, aux, pred, depth)

        loss, norm, lrs, states = three_steps(model, forward, loss_fn, cfg, data, total_steps)
    finally:
        torch.set_default_dtype(previous)

    out = {
        "loss": torch.tensor(loss, dtype=torch.float64),
        "grad_norm": torch.tensor(norm, dtype=torch.float64),
        "lr": torch.tensor(lrs, dtype=torch.float64),
    }
    # The weights after the last step (the earlier ones are in between).
    k, state = len(states) - 1, states[-1]
    for name, t in state.items():
        out[f"step{k + 1}.{name}"] = t.double().contiguous() if t.is_floating_point() else t.contiguous()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file(out, args.out)

    for k in range(STEPS):
        print(f"step {k + 1}: lr {lrs[k]:.6e}  loss {loss[k]:.15f}  grad norm {norm[k]:.12f}")
    if reference is not None:
        init = {k: v.double() for k, v in load_checkpoint_file(os.path.join(TINY, "checkpoint.safetensors")).items()}
        r_loss, r_norm, _, r_states = reference
        for k in range(STEPS):
            print(f"  train_ref step {k + 1}: loss {r_loss[k]:.15f} (rel {r_loss[k] / loss[k] - 1:+.2e})  "
                  f"grad norm {r_norm[k]:.12f} (rel {r_norm[k] / norm[k] - 1:+.2e})  "
                  f"worst relative difference of a parameter's change {worst_change(states[k], r_states[k], init):.2e}")
    print("wrote", args.out)


def worst_change(state: dict, other: dict, init: dict) -> float:
    """max over the trainable tensors of max|a - b| / max|a - init|."""
    worst = 0.0
    for name, a in state.items():
        if not a.is_floating_point() or "running" in name:
            continue
        scale = (a - init[name]).abs().max().item()
        worst = max(worst, (a - other[name]).abs().max().item() / max(scale, 1e-300))
    return worst


if __name__ == "__main__":
    main()

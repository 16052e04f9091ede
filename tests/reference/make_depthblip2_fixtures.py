#!/usr/bin/env python3
"""Write the DepthBLIP-2 golden fixtures (tests/fixtures/depthblip2/).

Two tiny random BLIP-2s, each in the weight formats a user meets:

  eva/   EVA ViT tower (width 176 = 2 heads of 88 as ViT-g's, MLP 352, 2 layers,
         patch 14 at 224) and a Q-Former (hidden 128 = 2 heads of 64, feed-forward
         96, 2 layers, cross attention at layer 0, 8 queries) as
           lavis/blip2_pretrained.pth   LAVIS's torch.save({"model": ...}) without
                                        the frozen tower (as LAVIS saves), with the
                                        tensors DepthBLIP-2 does not read (cls head,
                                        projections, itm_head, temp, position_ids)
           lavis/eva_vit_g.pth          the tower's own state dict, float16
           lavis/vocab.txt              the tiny WordPiece vocabulary
           hf/model.safetensors + config.json + tokenizer.json
                                        Blip2ForImageTextRetrieval (the hub's names:
                                        q_bias / v_bias; the tower in float16)
  clip/  LAVIS's CLIP ViT-L tower (width 128, 2 layers) as
           lavis/blip2_pretrained_vitL.pth + lavis/clip_vit_L.pth (float16, with
           OpenAI's ln_post and proj, which LAVIS does not read) + vocab.txt

Every weight is a float16 value, so all formats hold the same numbers. The
reference (depthblip2_ref.py) is checked against transformers'
Blip2ForImageTextRetrieval (EVA: image embeddings, multimodal query outputs)
and CLIPVisionModel (CLIP tower) on the same weights first.

Also: bins/ (the adaptive-bins MLP in the release's .pth and as safetensors,
its bins; a three-step AdamW run on fixed class probabilities), tokenizer/
(sentences and bert-base-uncased ids by transformers' BertTokenizer with
LAVIS's [DEC]), pil/ (Pillow's bilinear resizes), zip/ (a torch.save archive
the zip crate misplaces).

Usage: python make_depthblip2_fixtures.py [--out DIR]  (default ../fixtures/depthblip2)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import depthblip2_ref as ref  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import BertTokenizer  # noqa: E402

torch.set_num_threads(1)
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
IMAGES = os.path.join(ROOT, "tests", "fixtures", "images")
BERT_VOCAB = os.path.join(ROOT, "src", "model", "text", "bert_base_uncased_vocab.txt.gz")

EVA = {"kind": "eva", "width": 176, "layers": 2, "heads": 2, "mlp": 2 * 176, "patch": 14, "image": 224}
CLIP = {"kind": "clip", "width": 128, "layers": 2, "heads": 2, "patch": 14, "image": 224}
QUERIES = 8
GROUPS, MAP_H = 2, 8
TEMPERATURE = 0.1

# The tiny WordPiece vocabulary: BERT's special tokens, the prompt words, a few pieces.
VOCAB = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "this", "object", "is", "giant", "extremely",
         "close", "not", "in", "distance", "a", "little", "remote", "far", "unseen", "the", "wall", "near", "very",
         "photo", "of", "which", "un", "##seen", "##er", "##s", "##ly", ",", ".", "!", "'", "-", "floor", "door", "chair"]


def qformer_cfg(encoder_width: int) -> dict:
    return {"hidden": 128, "heads": 2, "layers": 2, "intermediate": 96, "cross_attention_freq": 2,
            "encoder_width": encoder_width, "vocab": len(VOCAB) + 1, "max_positions": 64, "eps": 1e-12}


def fp16_values(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.half().float())


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Well-conditioned random weights: matrices ~ N(0, 1/fan_in), norm
    scales near 1, small biases, unit-ish embeddings and queries."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if ("norm" in name.lower() or "ln_" in name) and leaf == "weight":
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif leaf in ("bias", "q_bias", "v_bias", "in_proj_bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "embedding" in name or leaf in ("cls_token", "pos_embed", "class_embedding", "positional_embedding", "query_tokens"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                fan_in = int(np.prod(p.shape[1:])) if p.dim() > 1 else p.shape[0]
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(fan_in))
    fp16_values(module)


def save_npy(path: str, arr) -> None:
    if isinstance(arr, torch.Tensor):
        arr = arr.detach().cpu().numpy()
    np.save(path, np.ascontiguousarray(arr.astype(np.float32)))


def checked(name: str, a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    rel = (a - b).abs().max().item() / max(b.abs().max().item(), 1e-30)
    print(f"  {name}: max|diff|/max|ref| = {rel:.2e}")
    assert rel < tol, f"{name}: {rel}"


def pattern_pixels(h: int, w: int) -> torch.Tensor:
    """A deterministic input both sides compute exactly: (1, 3, h, w)."""
    i = np.arange(3 * h * w, dtype=np.int64)
    return torch.from_numpy((((i * 7919) % 1000) / 500.0 - 1.0).astype(np.float32).reshape(1, 3, h, w))


def tiny_tokenizer(directory: str) -> BertTokenizer:
    path = os.path.join(directory, "vocab.txt")
    with open(path, "w") as f:
        f.write("\n".join(VOCAB) + "\n")
    tok = BertTokenizer(path, do_lower_case=True)  # bert-base-uncased's setting (transformers 5 defaults to False)
    tok.add_special_tokens({"bos_token": "[DEC]"})
    assert len(tok) == len(VOCAB) + 1
    return tok


def extras(model: ref.Blip2, g: torch.Generator) -> dict:
    """What a LAVIS Blip2Qformer checkpoint holds besides what the
    multimodal features read (the MLM head, projections, ITM head, temp)."""
    h, v = model.query_tokens.shape[-1], model.Qformer.bert.embeddings.word_embeddings.weight.shape[0]
    r = lambda *s: torch.randn(*s, generator=g).half().float()  # noqa: E731
    return {
        "Qformer.bert.embeddings.position_ids": torch.arange(64).expand(1, -1).clone(),
        "Qformer.cls.predictions.bias": r(v),
        "Qformer.cls.predictions.transform.dense.weight": r(h, h),
        "Qformer.cls.predictions.transform.dense.bias": r(h),
        "Qformer.cls.predictions.transform.LayerNorm.weight": r(h),
        "Qformer.cls.predictions.transform.LayerNorm.bias": r(h),
        "Qformer.cls.predictions.decoder.weight": r(v, h),
        "Qformer.cls.predictions.decoder.bias": r(v),
        "vision_proj.weight": r(32, h),
        "vision_proj.bias": r(32),
        "text_proj.weight": r(32, h),
        "text_proj.bias": r(32),
        "itm_head.weight": r(2, h),
        "itm_head.bias": r(2),
        "temp": torch.tensor(0.07),
    }


def save_torch(obj, path: str) -> None:
    """torch.save through a file object: the archive's inner folder is then
    "archive/" whatever the file name, so the model files test the model and
    zip/ alone tests the archives the zip crate misplaces."""
    with open(path, "wb") as f:
        torch.save(obj, f)


def write_lavis(model: ref.Blip2, out: str, checkpoint: str, tower: str, tower_extras: dict, seed: int) -> None:
    os.makedirs(out, exist_ok=True)
    state = model.state_dict()
    main = {k: v.clone() for k, v in state.items() if not k.startswith("visual_encoder.")}
    main.update(extras(model, torch.Generator().manual_seed(seed)))
    save_torch({"model": main, "optimizer": {}, "epoch": 9}, os.path.join(out, checkpoint))
    vision = {k[len("visual_encoder."):]: v.half().clone() for k, v in state.items() if k.startswith("visual_encoder.")}
    vision.update({k: v.half() for k, v in tower_extras.items()})
    save_torch(vision, os.path.join(out, tower))


def hf_model(model: ref.Blip2, tok: BertTokenizer):
    """transformers' Blip2ForImageTextRetrieval with the same weights."""
    from transformers import Blip2Config, Blip2ForImageTextRetrieval

    q = ref_cfg(model)
    config = Blip2Config(
        vision_config={"hidden_size": EVA["width"], "intermediate_size": EVA["mlp"], "num_hidden_layers": EVA["layers"],
                       "num_attention_heads": EVA["heads"], "image_size": EVA["image"], "patch_size": EVA["patch"],
                       "layer_norm_eps": 1e-6, "qkv_bias": True, "hidden_act": "gelu"},
        qformer_config={"vocab_size": q["vocab"], "hidden_size": q["hidden"], "num_hidden_layers": q["layers"],
                        "num_attention_heads": q["heads"], "intermediate_size": q["intermediate"], "hidden_act": "gelu",
                        "max_position_embeddings": q["max_positions"], "layer_norm_eps": q["eps"],
                        "cross_attention_frequency": q["cross_attention_freq"], "encoder_hidden_size": EVA["width"],
                        "use_qformer_text_input": True, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
        num_query_tokens=QUERIES,
        image_text_hidden_size=32,
    )
    hf = Blip2ForImageTextRetrieval(config).eval()
    ours = {**model.state_dict(), **extras(model, torch.Generator().manual_seed(11))}
    mapped = {}
    for name, t in ours.items():
        target = ref.lavis_to_hf(name)
        if target is None:
            continue
        mapped[target] = t
    # transformers 5 keeps q/v biases as one qkv.bias (k part zero).
    for i in range(EVA["layers"]):
        p = f"vision_model.encoder.layers.{i}.self_attn."
        qb, vb = mapped.pop(p + "q_bias"), mapped.pop(p + "v_bias")
        mapped[p + "qkv.bias"] = torch.cat((qb, torch.zeros_like(vb), vb))
    missing, unexpected = hf.load_state_dict(mapped, strict=False)
    assert not unexpected, unexpected
    assert all(m.endswith("position_ids") for m in missing), missing
    return hf, config


def ref_cfg(model: ref.Blip2) -> dict:
    return model._qcfg


def build(vision: dict, seed: int) -> ref.Blip2:
    q = qformer_cfg(vision["width"])
    model = ref.Blip2(vision, q, QUERIES).eval()
    model._qcfg = q
    randomise(model, seed)
    return model


def scene_pixels() -> torch.Tensor:
    frame = Image.open(os.path.join(IMAGES, "scene_640x480.png"))
    return ref.pixels(frame, (224, 224), crop=ref.NYU_CROP)[None]


def outputs(model: ref.Blip2, tok, out: str, ln_eps: float, with_frame: bool) -> None:
    """Image embeddings, multimodal outputs per prompt, depth on the map and
    in a frame, for one tower and format."""
    os.makedirs(out, exist_ok=True)
    model.ln_vision.eps = ln_eps
    classes = ref.prompts(["This {} is {}"], ["object"], ref.DEFAULT_CLASSES)
    bins = torch.tensor(ref.RELEASE_BINS)
    with torch.no_grad():
        x = scene_pixels()
        emb = model.image_embeds(x)
        save_npy(os.path.join(out, "image_embeds_224.npy"), emb[0])
        fused = []
        for sentences in classes:
            ids, mask = ref.tokenize(tok, sentences)
            fused.append(model.multimodal(emb, ids, mask)[0])
        save_npy(os.path.join(out, "qformer_224.npy"), torch.stack(fused))
        depth_fn = lambda p: ref.head(ref.class_embeddings(model, model.image_embeds(p), tok, classes), GROUPS, MAP_H, TEMPERATURE, bins)  # noqa: E731
        noflip = depth_fn(x)
        flipped = ref.flip_average(depth_fn, x)
        save_npy(os.path.join(out, "depth_grid_noflip.npy"), noflip[0, 0])
        save_npy(os.path.join(out, "depth_grid.npy"), flipped[0, 0])
        spread = (flipped.max() - flipped.min()).item()
        print(f"  depth grid {flipped.min().item():.3f} .. {flipped.max().item():.3f} m")
        assert spread > 0.2, "depth too flat to test anything"
        # Another input size: the position grid resized.
        odd = pattern_pixels(168, 280)
        save_npy(os.path.join(out, "image_embeds_168x280.npy"), model.image_embeds(odd)[0])
        if with_frame:
            # The frame as the estimator sees it: the crop's depth, bilinear with
            # align_corners into its place at 160x120, NaN outside.
            l, t, r, b = ref.NYU_CROP
            box = (l * 160 // 640, t * 120 // 480, (r * 160 + 320) // 640, (b * 120 + 240) // 480)
            inner = F.interpolate(flipped, size=(box[3] - box[1], box[2] - box[0]), mode="bilinear", align_corners=True)
            frame = torch.full((120, 160), float("nan"))
            frame[box[1]:box[3], box[0]:box[2]] = inner[0, 0].clamp(min(ref.RELEASE_BINS), max(ref.RELEASE_BINS))
            save_npy(os.path.join(out, "depth_frame_160x120.npy"), frame)


def cross_check_eva(model: ref.Blip2, tok) -> None:
    print("checking the reference against transformers' Blip2ForImageTextRetrieval")
    hf, _ = hf_model(model, tok)
    model.ln_vision.eps = 1e-6  # transformers' post_layernorm takes the vision eps
    with torch.no_grad():
        x = scene_pixels()
        ours = model.image_embeds(x)
        theirs = hf.vision_model(pixel_values=x).last_hidden_state
        checked("image embeds", ours, theirs)
        odd = pattern_pixels(168, 280)
        checked("image embeds 168x280 (interpolated positions)", model.image_embeds(odd),
                hf.vision_model(pixel_values=odd, interpolate_pos_encoding=True).last_hidden_state)
        ids, mask = ref.tokenize(tok, ["This object is not in distance", "this object is far"])
        emb = ours.expand(2, -1, -1)
        q = hf.query_tokens.expand(2, -1, -1)
        embeds = hf.embeddings(input_ids=ids, query_embeds=q)
        full = torch.cat((torch.ones(2, QUERIES, dtype=mask.dtype), mask), dim=1)
        out = hf.qformer(query_embeds=embeds, query_length=QUERIES, attention_mask=full, encoder_hidden_states=emb).last_hidden_state
        checked("multimodal query outputs", model.multimodal(emb, ids, mask), out[:, :QUERIES])
    model.ln_vision.eps = 1e-5


def cross_check_clip(model: ref.Blip2) -> None:
    print("checking the CLIP tower against transformers' CLIPVisionModel")
    from transformers import CLIPVisionConfig, CLIPVisionModel

    w, layers = CLIP["width"], CLIP["layers"]
    cfg = CLIPVisionConfig(hidden_size=w, intermediate_size=4 * w, num_hidden_layers=layers, num_attention_heads=CLIP["heads"],
                           image_size=CLIP["image"], patch_size=CLIP["patch"], hidden_act="quick_gelu", layer_norm_eps=1e-5)
    hf = CLIPVisionModel(cfg).eval()
    v = model.visual_encoder.state_dict()
    m = {"vision_model.embeddings.class_embedding": v["class_embedding"],
         "vision_model.embeddings.patch_embedding.weight": v["conv1.weight"],
         "vision_model.embeddings.position_embedding.weight": v["positional_embedding"],
         "vision_model.pre_layrnorm.weight": v["ln_pre.weight"], "vision_model.pre_layrnorm.bias": v["ln_pre.bias"],
         "vision_model.post_layernorm.weight": torch.ones(w), "vision_model.post_layernorm.bias": torch.zeros(w)}
    for i in range(layers):
        s, d = f"transformer.resblocks.{i}.", f"vision_model.encoder.layers.{i}."
        for j, n in enumerate("qkv"):
            m[d + f"self_attn.{n}_proj.weight"] = v[s + "attn.in_proj_weight"][j * w:(j + 1) * w]
            m[d + f"self_attn.{n}_proj.bias"] = v[s + "attn.in_proj_bias"][j * w:(j + 1) * w]
        m[d + "self_attn.out_proj.weight"], m[d + "self_attn.out_proj.bias"] = v[s + "attn.out_proj.weight"], v[s + "attn.out_proj.bias"]
        for a, b in [("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")]:
            m[d + b + ".weight"], m[d + b + ".bias"] = v[s + a + ".weight"], v[s + a + ".bias"]
    missing, unexpected = hf.load_state_dict(m, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
    with torch.no_grad():
        x = scene_pixels()
        checked("CLIP tower tokens", model.visual_encoder(x), hf(pixel_values=x).last_hidden_state)


def write_hf(model: ref.Blip2, tok, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    hf, config = hf_model(model, tok)
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp)
        with open(os.path.join(tmp, "config.json")) as f:
            cfg = json.load(f)
        tok.save_pretrained(tmp)
        shutil.copy(os.path.join(tmp, "tokenizer.json"), os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    # The hub's layout (transformers 4): q_bias / v_bias, not a packed qkv.bias.
    tensors = {}
    for name, t in hf.state_dict().items():
        if name.endswith("position_ids"):
            continue
        if name.endswith("self_attn.qkv.bias"):
            d = t.shape[0] // 3
            base = name[: -len("qkv.bias")]
            assert torch.all(t[d:2 * d] == 0)
            tensors[base + "q_bias"] = t[:d].half()
            tensors[base + "v_bias"] = t[2 * d:].half()
            continue
        tensors[name] = t.half() if name.startswith("vision_model.") else t.float()
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})


def write_yaml(path: str, flip: bool, crop: bool) -> None:
    lines = [
        "# Tiny random DepthBLIP-2 for tests/depthblip2.rs: the release's prompts and",
        "# bins, a 2 x 8 x 8 map per class (the tiny Q-Former is 128 wide).",
        "model_type: depthblip2",
        'depth_templates: ["This {} is {}"]',
        'obj_classes: ["object"]',
        "depth_classes: " + json.dumps(ref.DEFAULT_CLASSES),
        "bin_list: " + json.dumps(ref.RELEASE_BINS),
        f"temperature: {TEMPERATURE}",
        f"map_groups: {GROUPS}",
        f"map_height: {MAP_H}",
        "group_reduce: max",
        f"flip_average: {'true' if flip else 'false'}",
    ]
    if crop:
        lines.append("crop: [60, 56, 604, 472]")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def write_bins(out: str) -> None:
    """The adaptive bins: the MLP in the release's .pth (flag-2 and flag-1
    layouts) and as safetensors; three AdamW steps of the release's loss on
    fixed class probabilities, dropout off."""
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(5)
    for layout in (2, 1):
        mlp = ref.bins_mlp(7, layout).eval()
        fp16_values(mlp)
        save_torch(mlp.state_dict(), os.path.join(out, f"mlp_flag{layout}.pth"))
        with torch.no_grad():
            bins = ref.adaptive_bins(mlp, ref.RELEASE_BINS)
        save_npy(os.path.join(out, f"bins_flag{layout}.npy"), bins)
        print(f"  adaptive bins (flag {layout}): {np.round(bins.numpy(), 4).tolist()}")
        if layout == 2:
            save_file({k: v.contiguous() for k, v in mlp.state_dict().items()}, os.path.join(out, "mlp_flag2.safetensors"))

    # Training: B=4 images, 7 classes on an 8x8 map, depth 24x32.
    g = torch.Generator().manual_seed(3)
    k, b, (h, w), (H, W) = 7, 4, (8, 8), (24, 32)
    p = F.softmax(2.0 * torch.randn(b, k, h, w, generator=g), dim=1)
    pm = F.softmax(2.0 * torch.randn(b, k, h, w, generator=g), dim=1)
    gt = 0.5 + 3.5 * torch.rand(b, 1, H, W, generator=g)
    gt[:, :, :2] = 0.0      # no reading
    gt[:, :, -1, :5] = 12.0  # beyond max_depth
    valid = (gt > 1e-3) & (gt < 10.0)
    mlp = ref.bins_mlp(k, 2)
    fp16_values(mlp)
    for m in mlp.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    init = {f"init.{n}": v.detach().clone() for n, v in mlp.state_dict().items()}
    opt = torch.optim.AdamW(mlp.parameters(), lr=1e-3, weight_decay=0.01)
    record = {"probs": p, "probs_mirror": pm, "gt": gt, **init}
    for step in range(3):
        bins = ref.adaptive_bins(mlp, ref.RELEASE_BINS)
        d = (p * bins.view(1, -1, 1, 1)).sum(1, keepdim=True)
        dm = (pm * bins.view(1, -1, 1, 1)).sum(1, keepdim=True)
        pred = 0.5 * (d + torch.flip(dm, [3]))
        pred = F.interpolate(pred, size=(H, W), mode="bilinear", align_corners=True)
        loss = ref.l1_rmse(pred, gt, valid)
        record[f"bins.{step}"] = bins.detach().clone()
        record[f"loss.{step}"] = loss.detach().reshape(1)
        opt.zero_grad()
        loss.backward()
        if step == 0:
            record.update({f"grad.{n}": prm.grad.detach().clone() for n, prm in mlp.named_parameters()})
        opt.step()
    record["bins.3"] = ref.adaptive_bins(mlp, ref.RELEASE_BINS).detach().clone()
    print(f"  training: loss {[round(record[f'loss.{i}'].item(), 5) for i in range(3)]}")
    save_file({k2: v.float().contiguous() for k2, v in record.items()}, os.path.join(out, "train_steps.safetensors"))


SENTENCES = [
    "This object is giant",
    "this object is extremely close.",
    "A photo of the wall, which is NOT in distance!",
    "Héllo WÖRLD, naïve café — déjà vu",
    "unaffable unbelievably   spaced\ttabs\nnewlines",
    "don't stop: it's 3.14159 (pi) & 2+2=4; #tags @handles ~tilde",
    "中文字符和English混合",
    "ｆｕｌｌ-width Ｌａｔｉｎ and ﬁ ligatures",
    "x" * 120,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "emoji 🙂 and symbols ©®™ and control\x07chars\u200b zero width",
    "[CLS] special [SEP] tokens [MASK] inside [UNK] text [DEC]",
    "",
    "ÀÉÎÕÜ àéîõü ß ø æ œ Ł ł",
    "a little remote, far and unseen",
]


def write_tokenizer(out: str) -> None:
    """bert-base-uncased ids (transformers' BertTokenizer, LAVIS's [DEC]
    added) of each sentence, with and without LAVIS's caption processing."""
    import gzip

    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        vocab = os.path.join(tmp, "vocab.txt")
        with gzip.open(BERT_VOCAB) as src, open(vocab, "wb") as dst:
            dst.write(src.read())
        tok = BertTokenizer(vocab, do_lower_case=True)
        tok.add_special_tokens({"bos_token": "[DEC]"})
        cases = []
        for s in SENTENCES:
            cases.append({"text": s, "ids": tok(s)["input_ids"], "caption": ref.pre_caption(s),
                          "caption_ids": tok(ref.pre_caption(s))["input_ids"]})
    with open(os.path.join(out, "sentences.json"), "w") as f:
        json.dump({"tokenizer": "bert-base-uncased + [DEC] (transformers BertTokenizer)", "cases": cases}, f, indent=1, ensure_ascii=False)


def write_zip_quirk(out: str) -> None:
    """A torch.save archive saved by path with a 21-character file stem: its
    first central directory entry is then 76 bytes long, the size of the
    zip64 records, which makes the zip crate misplace the archive (LAVIS's
    blip2_pretrained_vitL.pth has such a name). Values: arange(6) as (2, 3)
    float32 and ones(2) float16, under {"model": ...}."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "zip_entry_76_bytes_xy.pth")
    assert len(os.path.splitext(os.path.basename(path))[0]) == 21
    torch.save({"model": {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, dtype=torch.float16)}, "epoch": 1}, path)


def write_pil(out: str) -> None:
    """Pillow's bilinear resizes (8-bit RGB) the preprocessing must match byte for byte."""
    os.makedirs(out, exist_ok=True)
    frame = Image.open(os.path.join(IMAGES, "scene_640x480.png")).convert("RGB")
    portrait = Image.open(os.path.join(ROOT, "tests", "fixtures", "pil", "portrait_333x517.png")).convert("RGB")
    cases = [("scene_to_96x72", frame, (96, 72)), ("scene_crop_to_50x40", frame.crop((100, 80, 260, 200)), (50, 40)),
             ("portrait_to_64x64", portrait, (64, 64)), ("small_up_to_130x90", frame.crop((10, 20, 60, 60)), (130, 90))]
    meta = []
    for name, img, size in cases:
        np.save(os.path.join(out, name + ".npy"), np.asarray(img.resize(size, Image.BILINEAR), dtype=np.uint8))
        meta.append({"name": name, "size": list(size)})
    frame.crop((100, 80, 260, 200)).save(os.path.join(out, "scene_crop.png"))
    frame.crop((10, 20, 60, 60)).save(os.path.join(out, "scene_small.png"))
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "..", "fixtures", "depthblip2"))
    args = ap.parse_args()
    out = os.path.normpath(args.out)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)

    print("eva/")
    eva = build(EVA, seed=1)
    os.makedirs(os.path.join(out, "eva", "lavis"))
    tok = tiny_tokenizer(os.path.join(out, "eva", "lavis"))
    cross_check_eva(eva, tok)
    write_lavis(eva, os.path.join(out, "eva", "lavis"), "blip2_pretrained.pth", "eva_vit_g.pth", {}, seed=7)
    write_hf(eva, tok, os.path.join(out, "eva", "hf"))
    outputs(eva, tok, os.path.join(out, "eva", "expected", "lavis"), 1e-5, with_frame=True)
    outputs(eva, tok, os.path.join(out, "eva", "expected", "hf"), 1e-6, with_frame=False)
    write_yaml(os.path.join(out, "eva", "depthblip2.yaml"), flip=True, crop=True)

    print("clip/")
    clip = build(CLIP, seed=2)
    os.makedirs(os.path.join(out, "clip", "lavis"))
    tok_c = tiny_tokenizer(os.path.join(out, "clip", "lavis"))
    cross_check_clip(clip)
    g = torch.Generator().manual_seed(9)
    openai_leftovers = {"ln_post.weight": torch.ones(CLIP["width"]), "ln_post.bias": torch.zeros(CLIP["width"]),
                        "proj": torch.randn(CLIP["width"], 64, generator=g)}
    write_lavis(clip, os.path.join(out, "clip", "lavis"), "blip2_pretrained_vitL.pth", "clip_vit_L.pth", openai_leftovers, seed=8)
    outputs(clip, tok_c, os.path.join(out, "clip", "expected"), 1e-5, with_frame=False)
    write_yaml(os.path.join(out, "clip", "depthblip2.yaml"), flip=False, crop=True)

    print("bins/")
    write_bins(os.path.join(out, "bins"))
    print("tokenizer/")
    write_tokenizer(os.path.join(out, "tokenizer"))
    print("pil/")
    write_pil(os.path.join(out, "pil"))
    write_zip_quirk(os.path.join(out, "zip"))
    np.save(os.path.join(out, "pixel_values_nyu.npy"), scene_pixels()[0].numpy())
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    print(f"wrote {out} ({total / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()

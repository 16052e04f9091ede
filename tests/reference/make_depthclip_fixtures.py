#!/usr/bin/env python3
"""Write the DepthCLIP golden fixtures (tests/fixtures/depthclip/).

Two tiny random CLIPs, each in the weight formats a user meets:

  rn/   ModifiedResNet CLIP (layers 1-1-1-1, width 4: a 128-channel layer4 map,
        64-d text space, i.e. RN50's 2:1 channel ratio) as
          RN-tiny.pt                    OpenAI's TorchScript archive layout (traced
                                        module, weights partly float16 as OpenAI's)
          open_clip_pytorch_model.bin   OpenCLIP's torch.save state dict (float16)
          open_clip_config.json         its OpenCLIP config (the TorchScript file
                                        has none: text heads cannot be read from shapes
                                        at this size)
  vit/  ViT CLIP (patch 16, image 64, width 16) as
          model.safetensors + config.json   Hugging Face CLIPModel (save_pretrained)
          open_clip_model.safetensors + open_clip_config.json   OpenCLIP (float16)

Every weight is a float16 value, so all formats hold the same numbers. The
reference (depthclip_ref.py) computes text features, image tokens and depth;
the script also checks that reference against OpenCLIP's and transformers'
own models on the same weights (text embeddings, trunk, pooled embeddings).

  tokenizer/sentences.json   sentences and their ids by OpenCLIP's tokenizer
  tokenizer/tokenizer.json   a Hugging Face tokenizer.json over a reduced vocabulary
                             (first 2000 merges) and the ids transformers gives

Usage: python make_depthclip_fixtures.py [--out DIR]  (default ../fixtures/depthclip)
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import depthclip_ref as ref  # noqa: E402
import open_clip  # noqa: E402
from open_clip.tokenizer import SimpleTokenizer  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

torch.set_num_threads(1)
IMAGES = os.path.join(HERE, "..", "fixtures", "images")
CONTEXT = 77

RN_CFG = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 4, "patch_size": None},
    "text_cfg": {"context_length": CONTEXT, "vocab_size": 49408, "width": 8, "heads": 2, "layers": 2},
}
VIT_CFG = {
    "embed_dim": 16,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 16, "head_width": 8, "patch_size": 16},
    "text_cfg": {"context_length": CONTEXT, "vocab_size": 49408, "width": 8, "heads": 2, "layers": 2},
}

# The release's settings (prompts, bins, temperature), and its NYU crop.
RN_YAML = """\
# Tiny random DepthCLIP (ResNet tower) used by tests/depthclip.rs.
model_type: depthclip
depth_templates: ["This {} is {}"]
obj_classes: ["object"]
depth_classes: ["giant", "extremely close", "close", "not in distance", "a little remote", "far", "unseen"]
bin_list: [1.00, 1.50, 2.00, 2.25, 2.50, 2.75, 3.00]
temperature: 0.1
logit_scale: 100.0
input_height: 416
input_width: 544
crop: [60, 56, 604, 472]
image_mean: [0.485, 0.456, 0.406]
image_std: [0.229, 0.224, 0.225]
flip_average: true
upsample_align_corners: true
"""
RN_SETTINGS = dict(bins=ref.DEFAULT_BINS, temperature=0.1, logit_scale=100.0, flip_average=True,
                   vit_position_embedding="sequence_linear")

VIT_TEMPLATES = ["This {} is {}", "A photo of the {}, which is {}."]
VIT_OBJECTS = ["object", "wall"]
VIT_BINS = [0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0]
VIT_YAML = """\
# Tiny random DepthCLIP (ViT tower) used by tests/depthclip.rs: two templates
# and two objects (averaged per distance), the whole frame squashed to 96x128.
model_type: depthclip
depth_templates: ["This {} is {}", "A photo of the {}, which is {}."]
obj_classes: ["object", "wall"]
depth_classes: ["giant", "extremely close", "close", "not in distance", "a little remote", "far", "unseen"]
bin_list: [0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0]
temperature: 2.0
input_height: 96
input_width: 128
image_mean: [0.48145466, 0.4578275, 0.40821073]
image_std: [0.26862954, 0.26130258, 0.27577711]
flip_average: false
upsample_align_corners: true
vit_position_embedding: sequence_linear
"""
VIT_SETTINGS = dict(bins=VIT_BINS, temperature=2.0, logit_scale=100.0, flip_average=False,
                    vit_position_embedding="sequence_linear")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

SENTENCES = [
    "This object is giant",
    "This object is extremely close",
    "This object is close",
    "This object is not in distance",
    "This object is a little remote",
    "This object is far",
    "This object is unseen",
    "A photo of the wall, which is far.",
    "  Multiple   spaces,\ttabs\nand newlines  ",
    "UPPER case and MiXeD CaSe",
    "don't it's we're I've I'm we'll he'd",
    "numbers 1234 and 3.5m, 10,000 items",
    "punctuation!!! ... ?? (brackets) [more] {braces} #hash @at",
    "Café crème brûlée",
    "naïve coöperation",
    "Straße in Köln",
    "ŁÓDŹ Świętokrzyskie",
    "ΣΊΣΥΦΟΣ and Ελληνικά κείμενα",
    "Привет, мир!",
    "東京タワーは遠い",
    "서울의 밤",
    "مرحبا بالعالم",
    "emoji 🙂 far away 🚗",
    "fullwidth ＡＢＣ１２３",
    "“curly quotes” and ‘single’",
    "ﬁne ﬂoor ligatures",
    "Tom &amp; Jerry&#39;s &lt;tag&gt;",
    "e\u0301 decomposed accent",
    "İstanbul",
    "",
]


def fp16_values(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Every parameter and BN statistic random (zero-initialised BN scales or
    biases would hide whole branches from the tests)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if p.dim() == 1 and leaf == "weight":  # LayerNorm / BatchNorm scale
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif leaf in ("bias", "in_proj_bias") or name.endswith("class_embedding"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("logit_scale"):
                p.fill_(float(np.log(100.0)))
            elif "positional_embedding" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            elif "token_embedding" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(fan_in))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    fp16_values(module)


def tokenize(sentences):
    tok = SimpleTokenizer()
    rows = []
    for s in sentences:
        ids = [tok.sot_token_id] + tok.encode(s) + [tok.eot_token_id]
        assert len(ids) <= CONTEXT, s
        rows.append(ids + [0] * (CONTEXT - len(ids)))
    out = torch.tensor(rows, dtype=torch.long)
    assert torch.equal(out, open_clip.tokenize(sentences)), "open_clip.tokenize disagrees with SimpleTokenizer"
    return out


def save_npy(path, arr) -> None:
    arr = arr.detach().cpu().numpy() if isinstance(arr, torch.Tensor) else np.asarray(arr)
    arr = np.ascontiguousarray(arr)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    np.save(path, arr)


def scene(name: str) -> Image.Image:
    return Image.open(os.path.join(IMAGES, name)).convert("RGB")


def checked(name: str, a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    rel = ((a - b).abs().max() / b.abs().max()).item()
    print(f"  {name}: max|diff|/max|ref| = {rel:.2e}")
    assert rel < tol, f"{name}: {rel}"


def non_degenerate(name: str, depth: torch.Tensor, bins) -> None:
    d = depth[torch.isfinite(depth)]
    lo, hi = d.min().item(), d.max().item()
    print(f"  {name}: depth {lo:.3f} .. {hi:.3f} m, std {d.std().item():.3f}")
    assert min(bins) <= lo < hi <= max(bins) and hi - lo > 0.02 * (max(bins) - min(bins)), name


# ----------------------------------------------------------------------------- tokenizer


def write_tokenizer(out: str) -> None:
    d = os.path.join(out, "tokenizer")
    os.makedirs(d, exist_ok=True)
    tok = SimpleTokenizer()
    ids = tokenize(SENTENCES)
    rows = []
    for s, row in zip(SENTENCES, ids.tolist()):
        n = row.index(tok.eot_token_id) + 1
        rows.append({"text": s, "ids": row[:n]})
    with open(os.path.join(d, "sentences.json"), "w", encoding="utf-8") as f:
        json.dump({"context_length": CONTEXT, "sentences": rows}, f, ensure_ascii=False, indent=1)
        f.write("\n")

    # A Hugging Face tokenizer.json over the first 2000 merges (the format,
    # not the size, is what is tested), and what transformers makes of it.
    from transformers import CLIPTokenizer
    merges_all = gzip.open(open_clip.tokenizer.default_bpe()).read().decode("utf-8").split("\n")[1:2001]
    byte_chars = list(open_clip.tokenizer.bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges_all]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump({t: i for i, t in enumerate(vocab)}, f, ensure_ascii=False)
        with open(os.path.join(tmp, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "\n".join(merges_all) + "\n")
        hf = CLIPTokenizer(vocab=os.path.join(tmp, "vocab.json"), merges=os.path.join(tmp, "merges.txt"))
        hf.save_pretrained(tmp)
        shutil.copy(os.path.join(tmp, "tokenizer.json"), os.path.join(d, "tokenizer.json"))
    hf_rows = []
    for s in SENTENCES:
        hf_rows.append({"text": s, "ids": hf(s)["input_ids"]})
    with open(os.path.join(d, "tokenizer_json_ids.json"), "w", encoding="utf-8") as f:
        json.dump({"sentences": hf_rows}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"tokenizer: {len(SENTENCES)} sentences, tokenizer.json with {len(vocab)} tokens")


# ----------------------------------------------------------------------------- ResNet CLIP


class TracedClip(ref.ClipRef):
    """ClipRef plus the integer buffers OpenAI's JIT archives carry."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.register_buffer("input_resolution", torch.tensor(cfg["vision_cfg"]["image_size"]))
        self.register_buffer("context_length", torch.tensor(cfg["text_cfg"]["context_length"]))
        self.register_buffer("vocab_size", torch.tensor(cfg["text_cfg"]["vocab_size"]))

    def encode_image(self, image):
        return self.visual.embedding(image)

    def forward(self, image, text):
        return self.encode_image(image), self.encode_text(text)


def openai_fp16(eager: torch.nn.Module, traced: torch.nn.Module) -> None:
    """OpenAI's convert_weights: conv/linear weights and biases, the packed
    attention projections and the two projections to float16; norms and
    embeddings stay float32. Which is which is read from the eager module."""
    half = set()
    for name, _ in eager.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        parent = eager.get_submodule(name.rsplit(".", 1)[0]) if "." in name else eager
        if isinstance(parent, (torch.nn.Conv2d, torch.nn.Linear)) or leaf in ("in_proj_weight", "in_proj_bias", "proj", "text_projection"):
            half.add(name)
    for name, p in traced.named_parameters():
        if name in half:
            p.data = p.data.half()


def strip_debug_info(path: str) -> None:
    """Drops the archive's `*.debug_pkl` entries: optional source maps that
    would carry this machine's file paths."""
    import zipfile
    with zipfile.ZipFile(path) as z:
        entries = [(i, z.read(i.filename)) for i in z.infolist() if not i.filename.endswith(".debug_pkl")]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for info, data in entries:
            info.date_time = (1980, 1, 1, 0, 0, 0)
            z.writestr(info, data)


def write_rn(out: str) -> None:
    d = os.path.join(out, "rn")
    os.makedirs(os.path.join(d, "expected"), exist_ok=True)
    torch.manual_seed(0)
    model = TracedClip(RN_CFG).eval()
    randomise(model, 11)
    sd = {k: v.clone() for k, v in model.state_dict().items()}

    # Cross-check the reference against OpenCLIP's own model on the same weights.
    oc = open_clip.model.CLIP(**{k: v for k, v in RN_CFG.items()}).eval()
    missing = oc.load_state_dict({k: v for k, v in sd.items() if k not in ("input_resolution", "context_length", "vocab_size")}, strict=False)
    assert not missing.missing_keys and not missing.unexpected_keys, missing

    templates, objects, classes = ref.DEFAULT_TEMPLATES, ref.DEFAULT_OBJECTS, ref.DEFAULT_CLASSES
    sentences = [s for group in ref.prompts(templates, objects, classes) for s in group]
    ids = tokenize(sentences)
    img640 = scene("scene_640x480.png")
    crop = (60, 56, 604, 472)
    with torch.no_grad():
        print("rn:")
        checked("text embeddings vs OpenCLIP", model.encode_text(ids), oc.encode_text(ids))
        px64 = ref.preprocess(scene("scene_224.png"), (64, 64), None, CLIP_MEAN, CLIP_STD)
        checked("pooled image embedding vs OpenCLIP", model.visual.embedding(px64), oc.encode_image(px64))
        text_f = ref.text_features(model, tokenize, templates, objects, classes)
        pixels = ref.preprocess(img640, (416, 544), crop)
        trunk = oc.visual.stem(pixels)
        for layer in (oc.visual.layer1, oc.visual.layer2, oc.visual.layer3, oc.visual.layer4):
            trunk = layer(trunk)
        tokens, grid = ref.image_tokens(model, pixels, "sequence_linear")
        checked("layer4 tokens vs OpenCLIP's trunk", tokens, trunk.flatten(2).transpose(1, 2))
        assert grid == (13, 17), grid
        depth_grid = ref.depth_grid(model, pixels, text_f, RN_SETTINGS)
        depth_crop = ref.upsample(depth_grid, 416, 544, True)[0, 0]
        depth = ref.full_frame(depth_crop, (480, 640), crop)
        non_degenerate("rn depth (crop)", depth, ref.DEFAULT_BINS)
        no_flip = ref.depth_grid(model, pixels, text_f, dict(RN_SETTINGS, flip_average=False))

    e = os.path.join(d, "expected")
    save_npy(os.path.join(e, "prompt_ids.npy"), ids.to(torch.int64))
    save_npy(os.path.join(e, "text_features.npy"), text_f.t())  # (K, E)
    save_npy(os.path.join(e, "image_tokens_416x544.npy"), tokens)
    save_npy(os.path.join(e, "depth_grid_416x544.npy"), depth_grid[:, 0])
    save_npy(os.path.join(e, "depth_grid_noflip_416x544.npy"), no_flip[:, 0])
    # The frame's depth is NaN outside the crop: only the crop is stored.
    save_npy(os.path.join(e, "depth_crop_416x544.npy"), depth_crop)
    save_npy(os.path.join(e, "pixel_values_64.npy"), px64)
    with torch.no_grad():
        save_npy(os.path.join(e, "image_embedding_64.npy"), model.visual.embedding(px64))

    with open(os.path.join(d, "depthclip.yaml"), "w") as f:
        f.write(RN_YAML)
    with open(os.path.join(d, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": RN_CFG, "preprocess_cfg": {"mean": list(ref.IMAGENET_MEAN), "std": list(ref.IMAGENET_STD)}}, f, indent=2)
        f.write("\n")

    # OpenCLIP .bin: torch.save of the state dict (float16; no integer buffers).
    bin_sd = {k: v.half() for k, v in sd.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    torch.save(bin_sd, os.path.join(d, "open_clip_pytorch_model.bin"))

    # OpenAI's TorchScript archive: a traced module, weights partly float16.
    example_img = torch.zeros(1, 3, 64, 64)
    example_ids = torch.zeros(1, CONTEXT, dtype=torch.long)
    traced = torch.jit.trace_module(model, {"forward": (example_img, example_ids), "encode_text": (example_ids,),
                                            "encode_image": (example_img,)})
    openai_fp16(model, traced)
    path = os.path.join(d, "RN-tiny.pt")
    torch.jit.save(traced, path)
    strip_debug_info(path)
    back = torch.jit.load(path, map_location="cpu").state_dict()
    assert set(back) == set(sd), set(back) ^ set(sd)
    for k, v in back.items():
        assert torch.equal(v.float(), sd[k].float()), k
    assert any(v.dtype == torch.float16 for v in back.values()) and any(v.dtype == torch.float32 for v in back.values())
    print(f"  {len(back)} tensors in the TorchScript archive")


# ----------------------------------------------------------------------------- ViT CLIP


def write_vit(out: str) -> None:
    from transformers import CLIPConfig, CLIPModel

    d = os.path.join(out, "vit")
    os.makedirs(os.path.join(d, "expected"), exist_ok=True)
    v, t = VIT_CFG["vision_cfg"], VIT_CFG["text_cfg"]
    hf_cfg = CLIPConfig(
        text_config=dict(vocab_size=t["vocab_size"], hidden_size=t["width"], intermediate_size=4 * t["width"],
                         num_hidden_layers=t["layers"], num_attention_heads=t["heads"], max_position_embeddings=CONTEXT,
                         hidden_act="quick_gelu", eos_token_id=2, bos_token_id=0, pad_token_id=1),
        vision_config=dict(hidden_size=v["width"], intermediate_size=4 * v["width"], num_hidden_layers=v["layers"],
                           num_attention_heads=v["width"] // v["head_width"], image_size=v["image_size"],
                           patch_size=v["patch_size"], hidden_act="quick_gelu"),
        projection_dim=VIT_CFG["embed_dim"],
    )
    torch.manual_seed(0)
    hf = CLIPModel(hf_cfg).eval()
    model = ref.ClipRef(VIT_CFG).eval()
    randomise(model, 23)
    sd = model.state_dict()
    hf_sd = ref.openai_to_hf(dict(sd))
    res = hf.load_state_dict(hf_sd, strict=False)
    assert not res.unexpected_keys and all(k.endswith("position_ids") for k in res.missing_keys), res
    assert ref.hf_to_openai(hf_sd).keys() == sd.keys()

    classes = ref.DEFAULT_CLASSES
    sentences = [s for group in ref.prompts(VIT_TEMPLATES, VIT_OBJECTS, classes) for s in group]
    ids = tokenize(sentences)
    img640 = scene("scene_640x480.png")
    with torch.no_grad():
        print("vit:")
        checked("text embeddings vs transformers", model.encode_text(ids), hf.get_text_features(input_ids=ids).pooler_output
                if hasattr(hf.get_text_features(input_ids=ids), "pooler_output") else hf.get_text_features(input_ids=ids))
        px64 = ref.preprocess(scene("scene_224.png"), (64, 64), None, CLIP_MEAN, CLIP_STD)
        hv = hf.vision_model(pixel_values=px64).last_hidden_state
        hf_tokens = hf.visual_projection(hf.vision_model.post_layernorm(hv[:, 1:]))
        tokens64, _ = ref.image_tokens(model, px64, "sequence_linear")
        checked("native-size tokens vs transformers", tokens64, hf_tokens)
        oc = open_clip.model.CLIP(**VIT_CFG).eval()
        oc.load_state_dict(dict(sd))
        checked("text embeddings vs OpenCLIP", model.encode_text(ids), oc.encode_text(ids))
        checked("pooled image embedding vs OpenCLIP", model.visual.embedding(px64), oc.encode_image(px64))

        text_f = ref.text_features(model, tokenize, VIT_TEMPLATES, VIT_OBJECTS, classes)
        pixels = ref.preprocess(img640, (96, 128), None, CLIP_MEAN, CLIP_STD)
        tokens, grid = ref.image_tokens(model, pixels, "sequence_linear")
        assert grid == (6, 8)
        tokens_grid, _ = ref.image_tokens(model, pixels, "grid_bilinear")
        depth_grid = ref.depth_grid(model, pixels, text_f, VIT_SETTINGS)
        depth = ref.upsample(depth_grid, 240, 320, True)[0, 0]
        non_degenerate("vit depth", depth, VIT_BINS)

    e = os.path.join(d, "expected")
    save_npy(os.path.join(e, "prompt_ids.npy"), ids.to(torch.int64))
    save_npy(os.path.join(e, "text_features.npy"), text_f.t())
    save_npy(os.path.join(e, "pixel_values_96x128.npy"), pixels)
    save_npy(os.path.join(e, "image_tokens_64.npy"), tokens64)
    save_npy(os.path.join(e, "image_tokens_96x128.npy"), tokens)
    save_npy(os.path.join(e, "image_tokens_96x128_grid_bilinear.npy"), tokens_grid)
    save_npy(os.path.join(e, "depth_grid_96x128.npy"), depth_grid[:, 0])
    save_npy(os.path.join(e, "depth_320x240.npy"), depth)

    with open(os.path.join(d, "depthclip.yaml"), "w") as f:
        f.write(VIT_YAML)
    # Hugging Face layout: model.safetensors (float32) + config.json.
    hf_dir = os.path.join(d, "hf")
    os.makedirs(hf_dir, exist_ok=True)
    hf.save_pretrained(hf_dir, safe_serialization=True)
    for extra in os.listdir(hf_dir):
        if extra not in ("model.safetensors", "config.json"):
            os.remove(os.path.join(hf_dir, extra))
    back = load_file(os.path.join(hf_dir, "model.safetensors"))
    for k, val in hf_sd.items():
        assert torch.equal(back[k], val), k
    # OpenCLIP layout: open_clip_model.safetensors (float16) + open_clip_config.json.
    oc_dir = os.path.join(d, "open_clip")
    os.makedirs(oc_dir, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in sd.items()}, os.path.join(oc_dir, "open_clip_model.safetensors"))
    with open(os.path.join(oc_dir, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": VIT_CFG, "preprocess_cfg": {"mean": list(CLIP_MEAN), "std": list(CLIP_STD)}}, f, indent=2)
        f.write("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(HERE, "..", "fixtures", "depthclip"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    write_tokenizer(args.out)
    write_rn(args.out)
    write_vit(args.out)
    print(f"written to {os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()

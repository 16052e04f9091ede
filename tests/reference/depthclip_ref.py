"""An independent PyTorch implementation of DepthCLIP (zero-shot depth from a
frozen CLIP), written for this project from the paper ("Can Language
Understand Depth?", ACM MM 2022) and the behaviour of the authors' release
(`DepthCLIP_code/monoclip.py` and its modified `clip/model.py`).

Module and parameter names are OpenAI CLIP's state-dict names (`visual.*`,
`transformer.resblocks.*`, `token_embedding`, `ln_final`, `text_projection`),
so an OpenAI / OpenCLIP state dict loads with `load_state_dict(strict=True)`.
Nothing here uses torch.nn.MultiheadAttention: attention is spelled out so the
arithmetic the Rust port must reproduce is visible.

What the model computes:
  text   prompts "template.format(object, distance)" -> CLIP text tower (causal
         mask, ln_final, the EOT token, text_projection) -> L2-normalised,
         averaged over templates and objects, normalised again: (E, K).
  image  ResNet: the layer4 map (B, C, H/32, W/32) as tokens (attention pooling
         is not used); ViT: patch tokens through ln_post and proj, with the
         position embedding resized to the input's grid.
  head   tokens L2-normalised; when C = s * E every s-th channel is kept (the
         release's `F.interpolate(img_f, scale_factor=0.5)` on 2048 -> 1024);
         logits = logit_scale * <f, t> / temperature; softmax over the K
         distance classes; depth = sum_k p_k * bin_k.
  output optional flip averaging on the token grid, then bilinear upsampling
         (align_corners=True, as the release's evaluation) to the crop's size.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DEFAULT_TEMPLATES = ["This {} is {}"]
DEFAULT_OBJECTS = ["object"]
DEFAULT_CLASSES = ["giant", "extremely close", "close", "not in distance", "a little remote", "far", "unseen"]
DEFAULT_BINS = [1.00, 1.50, 2.00, 2.25, 2.50, 2.75, 3.00]


# ----------------------------------------------------------------------------- image tower: ResNet


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> (avgpool when strided) -> 1x1, all convs stride 1; the
    shortcut is avgpool -> 1x1 -> BN when the shape changes."""

    def __init__(self, inplanes: int, planes: int, stride: int):
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.stride = stride
        self.downsample = None
        if stride > 1 or inplanes != out:
            # Keys "downsample.0" (conv) and "downsample.1" (BN), as OpenAI's.
            self.downsample = nn.ModuleDict({"0": nn.Conv2d(inplanes, out, 1, bias=False), "1": nn.BatchNorm2d(out)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        if self.stride > 1:
            y = F.avg_pool2d(y, self.stride)
        y = self.bn3(self.conv3(y))
        if self.downsample is not None:
            s = x
            if self.stride > 1:
                s = F.avg_pool2d(s, self.stride)
            x = self.downsample["1"](self.downsample["0"](s))
        return F.relu(y + x)


class AttentionPool2d(nn.Module):
    """CLIP's attention pooling: the mean token as query over mean + map tokens."""

    def __init__(self, grid: int, dim: int, heads: int, out_dim: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.zeros(grid * grid + 1, dim))
        self.k_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.c_proj = nn.Linear(dim, out_dim)
        self.heads = heads
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
        pos = self.positional_embedding
        if (h, w) != (self.grid, self.grid):
            spatial = pos[1:].t().reshape(1, c, self.grid, self.grid)
            spatial = F.interpolate(spatial, size=(h, w), mode="bilinear", align_corners=True)
            pos = torch.cat([pos[:1], spatial.reshape(c, h * w).t()], dim=0)
        tokens = tokens + pos
        hd = c // self.heads
        q = self.q_proj(tokens[:, :1]).reshape(b, 1, self.heads, hd).transpose(1, 2)
        k = self.k_proj(tokens).reshape(b, -1, self.heads, hd).transpose(1, 2)
        v = self.v_proj(tokens).reshape(b, -1, self.heads, hd).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
        out = (att @ v).transpose(1, 2).reshape(b, c)
        return self.c_proj(out)


class ModifiedResNet(nn.Module):
    def __init__(self, layers: Sequence[int], width: int, heads: int, out_dim: int, image_size: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        inplanes = width
        for i, blocks in enumerate(layers):
            planes = width * (2 ** i)
            stride = 1 if i == 0 else 2
            stage = []
            for j in range(blocks):
                stage.append(Bottleneck(inplanes, planes, stride if j == 0 else 1))
                inplanes = planes * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.attnpool = AttentionPool2d(image_size // 32, width * 32, heads, out_dim)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = F.relu(bn(conv(x)))
        x = F.avg_pool2d(x, 2)
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
        return x

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H/32, W/32) as (B, N, C), row-major: the release's image features."""
        return self.feature_map(x).flatten(2).transpose(1, 2)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        return self.attnpool(self.feature_map(x))


# ----------------------------------------------------------------------------- transformers (both towers)


class Attention(nn.Module):
    """Multi-head attention with PyTorch's packed in_proj / out_proj names;
    the scores and softmax are PyTorch's scaled_dot_product_attention
    (`explicit = True` spells them out: the same arithmetic)."""

    explicit = False

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.in_proj_weight = nn.Parameter(torch.zeros(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        self.heads = heads

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        b, t, d = x.shape
        hd = d // self.heads
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, hd).transpose(1, 2) for z in (q, k, v))
        if self.explicit:
            scores = (q / math.sqrt(hd)) @ k.transpose(-1, -2)
            if causal:
                scores = scores + torch.full((t, t), float("-inf")).triu(1)
            y = torch.softmax(scores, dim=-1) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, quick_gelu: bool):
        super().__init__()
        self.c_fc = nn.Linear(dim, hidden)
        self.c_proj = nn.Linear(hidden, dim)
        self.quick_gelu = quick_gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        h = h * torch.sigmoid(1.702 * h) if self.quick_gelu else F.gelu(h)
        return self.c_proj(h)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, quick_gelu: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim, quick_gelu)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, dim: int, layers: int, heads: int, quick_gelu: bool):
        super().__init__()
        self.resblocks = nn.ModuleList([Block(dim, heads, quick_gelu) for _ in range(layers)])

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, causal)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, image_size: int, patch: int, width: int, layers: int, heads: int, out_dim: int, quick_gelu: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((image_size // patch) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, quick_gelu)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, out_dim))
        self.patch = patch
        self.grid = image_size // patch

    def position_embedding(self, gh: int, gw: int, mode: str) -> torch.Tensor:
        pos = self.positional_embedding
        n = gh * gw
        if (gh, gw) == (self.grid, self.grid):
            return pos
        if mode == "sequence_linear":
            # The release: the whole (1 + N, D) table, class position included,
            # resampled as one 1-D sequence (mode="linear", align_corners=False).
            return F.interpolate(pos.t().unsqueeze(0), size=[1 + n], mode="linear").squeeze(0).t()
        if mode == "grid_bilinear":
            spatial = pos[1:].t().reshape(1, -1, self.grid, self.grid)
            spatial = F.interpolate(spatial, size=(gh, gw), mode="bilinear", align_corners=False)
            return torch.cat([pos[:1], spatial.reshape(-1, n).t()], dim=0)
        raise ValueError(mode)

    def tokens(self, x: torch.Tensor, mode: str = "sequence_linear") -> torch.Tensor:
        x = self.conv1(x)
        b, d, gh, gw = x.shape
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(b, 1, d), x], dim=1)
        x = x + self.position_embedding(gh, gw, mode)
        x = self.transformer(self.ln_pre(x), causal=False)
        return self.ln_post(x[:, 1:]) @ self.proj

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        b, d, _, _ = x.shape
        x = torch.cat([self.class_embedding.expand(b, 1, d), x.flatten(2).transpose(1, 2)], dim=1)
        x = self.transformer(self.ln_pre(x + self.positional_embedding), causal=False)
        return self.ln_post(x[:, 0]) @ self.proj


class ClipRef(nn.Module):
    """A whole CLIP with OpenAI's state-dict names."""

    def __init__(self, cfg: Dict):
        super().__init__()
        v, t = cfg["vision_cfg"], cfg["text_cfg"]
        embed, quick = cfg["embed_dim"], cfg.get("quick_gelu", False)
        if isinstance(v["layers"], (list, tuple)):
            heads = v["width"] * 32 // v.get("head_width", 64)
            self.visual = ModifiedResNet(v["layers"], v["width"], heads, embed, v["image_size"])
        else:
            heads = v["width"] // v.get("head_width", 64)
            self.visual = VisionTransformer(v["image_size"], v["patch_size"], v["width"], v["layers"], heads, embed, quick)
        self.token_embedding = nn.Embedding(t["vocab_size"], t["width"])
        self.positional_embedding = nn.Parameter(torch.zeros(t["context_length"], t["width"]))
        self.transformer = Transformer(t["width"], t["layers"], t["heads"], quick)
        self.ln_final = nn.LayerNorm(t["width"])
        self.text_projection = nn.Parameter(torch.zeros(t["width"], embed))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(ids) + self.positional_embedding
        x = self.ln_final(self.transformer(x, causal=True))
        eot = ids.argmax(dim=-1)  # the end-of-text token has the highest id
        return x[torch.arange(x.shape[0]), eot] @ self.text_projection


# ----------------------------------------------------------------------------- DepthCLIP


def prompts(templates: Sequence[str], objects: Sequence[str], classes: Sequence[str]) -> List[List[str]]:
    """Per distance class, every template x object sentence."""
    return [[tpl.format(obj, cls) for tpl in templates for obj in objects] for cls in classes]


def text_features(model: ClipRef, tokenize, templates, objects, classes) -> torch.Tensor:
    """(E, K): per class, the mean of the normalised sentence embeddings, normalised."""
    cols = []
    for sentences in prompts(templates, objects, classes):
        e = model.encode_text(tokenize(sentences))
        e = e / e.norm(dim=-1, keepdim=True)
        e = e.mean(dim=0)
        cols.append(e / e.norm())
    return torch.stack(cols, dim=1)


def depth_from_tokens(tokens: torch.Tensor, text_f: torch.Tensor, bins: Sequence[float], temperature: float,
                      logit_scale: float, grid: Tuple[int, int]) -> torch.Tensor:
    """(B, N, C) tokens -> (B, 1, gh, gw) depth."""
    f = tokens / tokens.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    c, e = f.shape[-1], text_f.shape[0]
    if c != e:
        assert c % e == 0, (c, e)
        f = f[..., :: c // e]  # = F.interpolate(f, scale_factor=e / c) (nearest) for an integer ratio
    logits = logit_scale * (f @ text_f) / temperature  # (B, N, K)
    p = torch.softmax(logits, dim=-1)
    depth = p @ torch.tensor(bins, dtype=p.dtype)
    return depth.reshape(tokens.shape[0], 1, *grid)


def image_tokens(model: ClipRef, pixels: torch.Tensor, vit_position: str) -> Tuple[torch.Tensor, Tuple[int, int]]:
    if isinstance(model.visual, ModifiedResNet):
        fmap = model.visual.feature_map(pixels)
        return fmap.flatten(2).transpose(1, 2), (fmap.shape[2], fmap.shape[3])
    p = model.visual.patch
    return model.visual.tokens(pixels, vit_position), (pixels.shape[2] // p, pixels.shape[3] // p)


def depth_grid(model: ClipRef, pixels: torch.Tensor, text_f, cfg: Dict) -> torch.Tensor:
    tokens, grid = image_tokens(model, pixels, cfg["vit_position_embedding"])
    depth = depth_from_tokens(tokens, text_f, cfg["bins"], cfg["temperature"], cfg["logit_scale"], grid)
    if cfg["flip_average"]:
        ft, _ = image_tokens(model, torch.flip(pixels, [3]), cfg["vit_position_embedding"])
        fd = depth_from_tokens(ft, text_f, cfg["bins"], cfg["temperature"], cfg["logit_scale"], grid)
        depth = 0.5 * (depth + torch.flip(fd, [3]))
    return depth


def upsample(depth: torch.Tensor, h: int, w: int, align_corners: bool) -> torch.Tensor:
    return F.interpolate(depth, size=(h, w), mode="bilinear", align_corners=align_corners)


# ----------------------------------------------------------------------------- preprocessing


def preprocess(img: Image.Image, size_hw: Tuple[int, int], crop: Optional[Tuple[int, int, int, int]],
               mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """PIL crop (left, top, right, bottom), Pillow bicubic to (H, W) when the
    size differs, /255, per-channel mean/std: (1, 3, H, W)."""
    img = img.convert("RGB")
    if crop is not None:
        img = img.crop(crop)
    h, w = size_hw
    if img.size != (w, h):
        img = img.resize((w, h), Image.BICUBIC)
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1).copy()).unsqueeze(0)


def full_frame(depth_crop: torch.Tensor, frame_hw: Tuple[int, int], crop) -> torch.Tensor:
    """The crop's depth placed in a frame-sized map, NaN elsewhere (no reading)."""
    out = torch.full(frame_hw, float("nan"))
    left, top, right, bottom = crop
    out[top:bottom, left:right] = depth_crop
    return out


# ----------------------------------------------------------------------------- name conversions


def openai_to_hf(sd: Dict[str, torch.Tensor], prefix_text: str = "") -> Dict[str, torch.Tensor]:
    """OpenAI names -> Hugging Face CLIPModel names (ViT towers only): in_proj
    split into q/k/v, projections transposed."""
    out = {}
    for k, v in sd.items():
        if k in ("input_resolution", "context_length", "vocab_size"):
            continue
        out.update(_to_hf(k, v))
    return out


def _block_to_hf(rest: str, v: torch.Tensor) -> Dict[str, torch.Tensor]:
    i, sub = rest.split(".", 1)
    base = f"encoder.layers.{i}."
    if sub == "attn.in_proj_weight":
        q, k, vv = v.chunk(3, dim=0)
        return {base + "self_attn.q_proj.weight": q, base + "self_attn.k_proj.weight": k, base + "self_attn.v_proj.weight": vv}
    if sub == "attn.in_proj_bias":
        q, k, vv = v.chunk(3, dim=0)
        return {base + "self_attn.q_proj.bias": q, base + "self_attn.k_proj.bias": k, base + "self_attn.v_proj.bias": vv}
    table = {"attn.out_proj.": "self_attn.out_proj.", "ln_1.": "layer_norm1.", "ln_2.": "layer_norm2.",
             "mlp.c_fc.": "mlp.fc1.", "mlp.c_proj.": "mlp.fc2."}
    for a, b in table.items():
        if sub.startswith(a):
            return {base + b + sub[len(a):]: v}
    raise KeyError(rest)


def _to_hf(k: str, v: torch.Tensor) -> Dict[str, torch.Tensor]:
    if k.startswith("visual.transformer.resblocks."):
        return {"vision_model." + n: t for n, t in _block_to_hf(k[len("visual.transformer.resblocks."):], v).items()}
    if k.startswith("transformer.resblocks."):
        return {"text_model." + n: t for n, t in _block_to_hf(k[len("transformer.resblocks."):], v).items()}
    simple = {
        "visual.class_embedding": "vision_model.embeddings.class_embedding",
        "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
        "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
        "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
        "positional_embedding": "text_model.embeddings.position_embedding.weight",
        "logit_scale": "logit_scale",
    }
    if k in simple:
        return {simple[k]: v}
    for a, b in (("visual.ln_pre.", "vision_model.pre_layrnorm."), ("visual.ln_post.", "vision_model.post_layernorm."),
                 ("ln_final.", "text_model.final_layer_norm.")):
        if k.startswith(a):
            return {b + k[len(a):]: v}
    if k == "visual.proj":
        return {"visual_projection.weight": v.t().contiguous()}
    if k == "text_projection":
        return {"text_projection.weight": v.t().contiguous()}
    raise KeyError(k)


def hf_to_openai(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The inverse of openai_to_hf (for loading HF weights into ClipRef)."""
    out: Dict[str, torch.Tensor] = {}
    pending: Dict[str, Dict[str, torch.Tensor]] = {}
    inv_table = {"self_attn.out_proj.": "attn.out_proj.", "layer_norm1.": "ln_1.", "layer_norm2.": "ln_2.",
                 "mlp.fc1.": "mlp.c_fc.", "mlp.fc2.": "mlp.c_proj."}
    for k, v in sd.items():
        if k.endswith("position_ids"):
            continue
        for tower, root in (("vision_model.encoder.layers.", "visual.transformer.resblocks."),
                            ("text_model.encoder.layers.", "transformer.resblocks.")):
            if k.startswith(tower):
                i, sub = k[len(tower):].split(".", 1)
                if sub.startswith("self_attn.") and sub.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                    which, kind = sub.split(".")[1][0], sub.split(".")[2]
                    pending.setdefault(f"{root}{i}.attn.in_proj_{kind}", {})[which] = v
                else:
                    for a, b in inv_table.items():
                        if sub.startswith(a):
                            out[f"{root}{i}.{b}{sub[len(a):]}"] = v
                break
        else:
            simple = {
                "vision_model.embeddings.class_embedding": "visual.class_embedding",
                "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
                "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
                "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
                "text_model.embeddings.position_embedding.weight": "positional_embedding",
                "logit_scale": "logit_scale",
            }
            if k in simple:
                out[simple[k]] = v
                continue
            for a, b in (("vision_model.pre_layrnorm.", "visual.ln_pre."), ("vision_model.post_layernorm.", "visual.ln_post."),
                         ("text_model.final_layer_norm.", "ln_final.")):
                if k.startswith(a):
                    out[b + k[len(a):]] = v
                    break
            else:
                if k == "visual_projection.weight":
                    out["visual.proj"] = v.t().contiguous()
                elif k == "text_projection.weight":
                    out["text_projection"] = v.t().contiguous()
                else:
                    raise KeyError(k)
    for k, parts in pending.items():
        out[k] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out

"""An independent PyTorch implementation of DepthBLIP-2 (seed paper 002,
"DepthBLIP-2: Leveraging Language to Guide BLIP-2 in Understanding Depth
Information"), written for this project from the paper and the behaviour of
the authors' release (`models/model.py`, `main.py`, `utils/loss.py`,
`datasets/datasets_list.py`) and of LAVIS's BLIP-2 (`eva_vit.py`,
`clip_vit.py`, `Qformer.py`, `blip2_qformer.py`'s `extract_features`).

Module and parameter names are LAVIS's state-dict names (`visual_encoder.*`,
`ln_vision`, `query_tokens`, `Qformer.bert.*`), so a LAVIS checkpoint loads
with `load_state_dict`. Attention is spelled out (no nn.MultiheadAttention
in the forward pass) so the arithmetic the Rust port reproduces is visible.

What the model computes:
  image   EVA ViT-g/14 (q and v biases, k without; exact GELU; LayerNorm eps
          1e-6) or LAVIS's CLIP ViT-L/14 (packed in_proj, QuickGELU, ln_pre,
          no ln_post; eps 1e-5), all (HW + 1) tokens of the last layer, then
          `ln_vision`. Other input sizes: the position grid resized bicubically
          (EVA: align_corners=False, as LAVIS's and transformers' EVA; CLIP:
          align_corners=True, as LAVIS's clip_vit).
  fusion  per prompt "this object is <distance>" (LAVIS's caption processor
          lowercases it), [CLS] tokens [SEP] by BERT's WordPiece: the Q-Former
          in the feature extractor's multimodal mode: 32 learned queries and
          the prompt tokens in one BERT self-attention (text positions from 0,
          the padding masked with -10000), the queries alone cross-attending
          to the image tokens every `cross_attention_freq` layers, queries and
          text through their own feed-forward layers; the query outputs kept.
  head    the query outputs averaged (P_f, (K, C)), reshaped per class to
          (groups, h, w) with C = groups * h * w (the release: 3 x 16 x 16),
          reduced over the groups (the release: max), divided by the
          temperature, softmax over the K classes, depth = sum_k p_k * bin_k.
  bins    fixed, or adaptive: bins = min + mlp(b)^2 * (max - min) with the
          MLP over the bin vector b (the release's flag-2 layout: Linear
          7-64-128-256-128-64-7, ReLU, dropout 0.5 after the third and fourth
          ReLU, sigmoid).
  output  flip averaging on the map, bilinear upsampling (align_corners=True)
          to the crop, as the release's evaluation.
  loss    the release's `CustomLoss`: alpha * mean|gt - pred| + (1 - alpha) *
          RMSE over the valid pixels, predictions clamped to (lo, hi).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CLASSES = ["giant", "extremely close", "close", "not in distance", "a little remote", "far", "unseen"]
RELEASE_BINS = [1.00, 1.75, 2.25, 2.50, 2.75, 3.00, 3.50]
NYU_CROP = (60, 56, 604, 472)


# ----------------------------------------------------------------------------- text


def pre_caption(caption: str, max_words: int = 50) -> str:
    """LAVIS's BlipCaptionProcessor (prompt "") on one caption."""
    caption = re.sub(r"([.!\"()*#:;~])", " ", caption.lower())
    caption = re.sub(r"\s{2,}", " ", caption)
    caption = caption.rstrip("\n")
    caption = caption.strip(" ")
    words = caption.split(" ")
    if len(words) > max_words:
        caption = " ".join(words[:max_words])
    return caption


def prompts(templates: Sequence[str], objects: Sequence[str], classes: Sequence[str]) -> List[List[str]]:
    """Per class, every template x object sentence."""
    return [[t.format(o, c) for t in templates for o in objects] for c in classes]


# ----------------------------------------------------------------------------- image towers


class EvaAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (c // self.heads) ** -0.5, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class EvaMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class EvaBlock(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EvaAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = EvaMlp(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)


class EvaViT(nn.Module):
    """LAVIS's `eva_vit.VisionTransformer` as BLIP-2 builds it (no rel-pos
    bias, no layer scale, no final norm)."""

    def __init__(self, dim: int, layers: int, heads: int, mlp: int, patch: int = 14, image: int = 224):
        super().__init__()
        self.patch = patch
        self.grid = image // patch
        self.patch_embed = PatchEmbed(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid + 1, dim))
        self.blocks = nn.ModuleList([EvaBlock(dim, heads, mlp) for _ in range(layers)])

    def positions(self, gh: int, gw: int) -> torch.Tensor:
        if (gh, gw) == (self.grid, self.grid):
            return self.pos_embed
        return resized_positions(self.pos_embed[0], self.grid, gh, gw, align_corners=False)[None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1) + self.positions(h // self.patch, w // self.patch)
        for blk in self.blocks:
            x = blk(x)
        return x


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class PackedAttention(nn.Module):
    """`nn.MultiheadAttention`'s parameters (in_proj_weight, in_proj_bias,
    out_proj), its arithmetic spelled out."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.zeros(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (c // self.heads) ** -0.5, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.out_proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class ClipBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = PackedAttention(dim, heads)
        self.ln_1 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(dim, 4 * dim)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(4 * dim, dim))]))
        self.ln_2 = nn.LayerNorm(dim)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class ClipTransformer(nn.Module):
    def __init__(self, dim: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.Sequential(*[ClipBlock(dim, heads) for _ in range(layers)])


class ClipViT(nn.Module):
    """LAVIS's `clip_vit.VisionTransformer` (OpenAI's visual tower without
    ln_post and proj; the last of ViT-L's 24 layers dropped)."""

    def __init__(self, dim: int, layers: int, heads: int, patch: int = 14, image: int = 224):
        super().__init__()
        self.patch = patch
        self.grid = image // patch
        self.conv1 = nn.Conv2d(3, dim, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(dim))
        self.positional_embedding = nn.Parameter(torch.zeros(self.grid * self.grid + 1, dim))
        self.ln_pre = nn.LayerNorm(dim)
        self.transformer = ClipTransformer(dim, layers, heads)

    def positions(self, gh: int, gw: int) -> torch.Tensor:
        if (gh, gw) == (self.grid, self.grid):
            return self.positional_embedding
        return resized_positions(self.positional_embedding, self.grid, gh, gw, align_corners=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        x = self.conv1(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.class_embedding.expand(b, 1, -1), x), dim=1) + self.positions(h // self.patch, w // self.patch)
        x = self.ln_pre(x)
        for blk in self.transformer.resblocks:
            x = blk(x)
        return x


def resized_positions(table: torch.Tensor, grid: int, gh: int, gw: int, align_corners: bool) -> torch.Tensor:
    """(1 + g*g, D) -> (1 + gh*gw, D): the class row kept, the grid resized
    bicubically (LAVIS resizes at load, square only; the same call here for
    any grid)."""
    d = table.shape[-1]
    grid_part = table[1:].reshape(1, grid, grid, d).permute(0, 3, 1, 2)
    grid_part = F.interpolate(grid_part, size=(gh, gw), mode="bicubic", align_corners=align_corners)
    return torch.cat((table[:1], grid_part.permute(0, 2, 3, 1).reshape(gh * gw, d)), dim=0)


# ----------------------------------------------------------------------------- Q-Former (BERT with queries)


class BertSelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_width: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(kv_width, hidden)
        self.value = nn.Linear(kv_width, hidden)

    def forward(self, x, kv, mask):
        b, n, c = x.shape
        hd = c // self.heads
        split = lambda t: t.reshape(b, t.shape[1], self.heads, hd).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(kv)), split(self.value(kv))
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
        if mask is not None:
            scores = scores + mask
        return (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)


class BertDenseNorm(nn.Module):
    """BERT's `*Output`: dense, then LayerNorm of (that + the residual)."""

    def __init__(self, inp: int, hidden: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(inp, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_width: int, eps: float):
        super().__init__()
        self.self = BertSelfAttention(hidden, heads, kv_width)
        self.output = BertDenseNorm(hidden, hidden, eps)

    def forward(self, x, kv, mask):
        return self.output(self.self(x, kv, mask), x)


class Intermediate(nn.Module):
    def __init__(self, hidden: int, inner: int):
        super().__init__()
        self.dense = nn.Linear(hidden, inner)

    def forward(self, x):
        return F.gelu(self.dense(x))


class QFormerLayer(nn.Module):
    def __init__(self, cfg: dict, index: int):
        super().__init__()
        h, eps = cfg["hidden"], cfg["eps"]
        self.attention = BertAttention(h, cfg["heads"], h, eps)
        self.has_cross = index % cfg["cross_attention_freq"] == 0
        if self.has_cross:
            self.crossattention = BertAttention(h, cfg["heads"], cfg["encoder_width"], eps)
        self.intermediate = Intermediate(h, cfg["intermediate"])
        self.output = BertDenseNorm(cfg["intermediate"], h, eps)
        self.intermediate_query = Intermediate(h, cfg["intermediate"])
        self.output_query = BertDenseNorm(cfg["intermediate"], h, eps)

    def forward(self, x, mask, image, n_query):
        a = self.attention(x, x, mask)
        q = a[:, :n_query]
        if self.has_cross:
            q = self.crossattention(q, image, None)
        q = self.output_query(self.intermediate_query(q), q)
        if a.shape[1] == n_query:
            return q
        t = a[:, n_query:]
        return torch.cat((q, self.output(self.intermediate(t), t)), dim=1)


class BertEmbeddings(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg["vocab"], cfg["hidden"])
        self.position_embeddings = nn.Embedding(cfg["max_positions"], cfg["hidden"])
        self.LayerNorm = nn.LayerNorm(cfg["hidden"], eps=cfg["eps"])


class BertEncoder(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.layer = nn.ModuleList([QFormerLayer(cfg, i) for i in range(cfg["layers"])])


class Bert(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)


class QFormer(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.bert = Bert(cfg)

    def multimodal(self, query: torch.Tensor, ids: torch.Tensor, text_mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """`Qformer.bert(ids, query_embeds=..., attention_mask=..., encoder_hidden_states=image)`
        -> the query rows of the last hidden state (B, Q, H)."""
        emb = self.bert.embeddings
        b, n_query, _ = query.shape
        text = emb.word_embeddings(ids) + emb.position_embeddings(torch.arange(ids.shape[1]))[None]
        x = emb.LayerNorm(torch.cat((query, text), dim=1))
        mask = torch.cat((torch.ones(b, n_query, dtype=text_mask.dtype), text_mask), dim=1)
        ext = (1.0 - mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.bert.encoder.layer:
            x = layer(x, ext, image, n_query)
        return x[:, :n_query]


# ----------------------------------------------------------------------------- BLIP-2


class Blip2(nn.Module):
    """The parts of LAVIS's Blip2Qformer the multimodal features read."""

    def __init__(self, vision: dict, qformer: dict, queries: int):
        super().__init__()
        if vision["kind"] == "eva":
            self.visual_encoder = EvaViT(vision["width"], vision["layers"], vision["heads"], vision["mlp"], vision["patch"], vision["image"])
        else:
            self.visual_encoder = ClipViT(vision["width"], vision["layers"], vision["heads"], vision["patch"], vision["image"])
        self.ln_vision = nn.LayerNorm(vision["width"], eps=vision.get("ln_vision_eps", 1e-5))
        self.query_tokens = nn.Parameter(torch.zeros(1, queries, qformer["hidden"]))
        self.Qformer = QFormer(qformer)

    def image_embeds(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.ln_vision(self.visual_encoder(pixels))

    def multimodal(self, image_embeds: torch.Tensor, ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        b = image_embeds.shape[0]
        return self.Qformer.multimodal(self.query_tokens.expand(b, -1, -1), ids, text_mask, image_embeds)


def tokenize(tokenizer, sentences: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
    """BERT ids and attention mask, padded to the longest (LAVIS's call)."""
    t = tokenizer([pre_caption(s) for s in sentences], return_tensors="pt", padding=True)
    return t["input_ids"], t["attention_mask"]


def class_embeddings(model: Blip2, image_embeds: torch.Tensor, tokenizer, class_prompts: List[List[str]]) -> torch.Tensor:
    """P_f: per class, the multimodal query outputs averaged over the queries
    (and over the class's prompts when there are several): (B, K, C)."""
    out = []
    for sentences in class_prompts:
        per_prompt = []
        for s in sentences:
            ids, mask = tokenize(tokenizer, [s] * image_embeds.shape[0])
            per_prompt.append(model.multimodal(image_embeds, ids, mask).mean(dim=1))
        out.append(torch.stack(per_prompt, 0).mean(0))
    return torch.stack(out, dim=1)


def head(p_f: torch.Tensor, groups: int, height: int, temperature: float, bins: torch.Tensor, reduce: str = "max") -> torch.Tensor:
    """(B, K, C) -> depth (B, 1, h, w) on the map."""
    b, k, c = p_f.shape
    maps = p_f.reshape(b, k, groups, height, c // (groups * height))
    logits = maps.max(dim=2).values if reduce == "max" else maps.mean(dim=2)
    p = F.softmax(logits / temperature, dim=1)
    return (p * bins.view(1, -1, 1, 1)).sum(1, keepdim=True)


def probabilities(p_f: torch.Tensor, groups: int, height: int, temperature: float, reduce: str = "max") -> torch.Tensor:
    b, k, c = p_f.shape
    maps = p_f.reshape(b, k, groups, height, c // (groups * height))
    logits = maps.max(dim=2).values if reduce == "max" else maps.mean(dim=2)
    return F.softmax(logits / temperature, dim=1)


# ----------------------------------------------------------------------------- adaptive bins


def bins_mlp(k: int, layout: int = 2, dropout: float = 0.5) -> nn.Sequential:
    """The release's MLP (`DepthBLIP(..., flag)`; main.py uses flag=2).
    Sequential indices are the state-dict names its .pth files carry."""
    if layout == 2:
        return nn.Sequential(
            nn.Linear(k, 64), nn.ReLU(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 256), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(256, 128), nn.ReLU(), nn.Dropout(dropout), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, k), nn.Sigmoid(),
        )
    return nn.Sequential(
        nn.Linear(k, 64), nn.ReLU(), nn.Linear(64, 128), nn.ReLU(), nn.Dropout(dropout), nn.Linear(128, 256), nn.ReLU(),
        nn.Dropout(dropout), nn.Linear(256, 128), nn.ReLU(), nn.Dropout(dropout), nn.Linear(128, 64), nn.ReLU(),
        nn.Dropout(dropout), nn.Linear(64, k), nn.Sigmoid(),
    )


def adaptive_bins(mlp: nn.Sequential, bin_list: Sequence[float]) -> torch.Tensor:
    b = torch.tensor(bin_list, dtype=torch.float32).reshape(1, -1)
    lo, hi = min(bin_list), max(bin_list)
    return (lo + mlp(b) ** 2 * (hi - lo)).reshape(-1)


def l1_rmse(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, alpha: float = 0.5, clamp=(1e-3, 10.0)) -> torch.Tensor:
    """The release's CustomLoss on the valid pixels."""
    g = gt[valid].clamp(*clamp)
    p = pred[valid].clamp(*clamp)
    rmse = torch.sqrt(torch.mean((g - p) ** 2))
    l1 = torch.mean(torch.abs(g - p))
    return alpha * l1 + (1 - alpha) * rmse


# ----------------------------------------------------------------------------- input and output


def pixels(image: Image.Image, size: Tuple[int, int], crop=None, mean=IMAGENET_MEAN, std=IMAGENET_STD, resample=Image.BILINEAR) -> torch.Tensor:
    """The release's input: the crop, `transforms.Resize((224, 224))` (PIL
    bilinear), /255, ImageNet mean/std. size = (width, height)."""
    image = image.convert("RGB")
    if crop is not None:
        image = image.crop(crop)
    if image.size != size:
        image = image.resize(size, resample)
    x = np.asarray(image, dtype=np.float32) / 255.0
    x = (x - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())


def flip_average(depth_fn, x: torch.Tensor) -> torch.Tensor:
    d = depth_fn(x)
    return 0.5 * (d + torch.flip(depth_fn(torch.flip(x, [3])), [3]))


# ----------------------------------------------------------------------------- LAVIS <-> Hugging Face names


def lavis_to_hf(name: str) -> Optional[str]:
    """A LAVIS (EVA ViT-g) BLIP-2 name -> Blip2ForImageTextRetrieval's, for
    the tensors both have (None for LAVIS-only ones)."""
    rules = [
        (r"^visual_encoder\.cls_token$", "vision_model.embeddings.class_embedding"),
        (r"^visual_encoder\.pos_embed$", "vision_model.embeddings.position_embedding"),
        (r"^visual_encoder\.patch_embed\.proj\.", "vision_model.embeddings.patch_embedding."),
        (r"^visual_encoder\.blocks\.(\d+)\.norm1\.", r"vision_model.encoder.layers.\1.layer_norm1."),
        (r"^visual_encoder\.blocks\.(\d+)\.norm2\.", r"vision_model.encoder.layers.\1.layer_norm2."),
        (r"^visual_encoder\.blocks\.(\d+)\.attn\.qkv\.weight$", r"vision_model.encoder.layers.\1.self_attn.qkv.weight"),
        (r"^visual_encoder\.blocks\.(\d+)\.attn\.(q|v)_bias$", r"vision_model.encoder.layers.\1.self_attn.\2_bias"),
        (r"^visual_encoder\.blocks\.(\d+)\.attn\.proj\.", r"vision_model.encoder.layers.\1.self_attn.projection."),
        (r"^visual_encoder\.blocks\.(\d+)\.mlp\.", r"vision_model.encoder.layers.\1.mlp."),
        (r"^ln_vision\.", "vision_model.post_layernorm."),
        (r"^query_tokens$", "query_tokens"),
        (r"^Qformer\.bert\.embeddings\.LayerNorm\.", "qformer.layernorm."),
        (r"^Qformer\.bert\.embeddings\.(word|position)_embeddings\.", r"embeddings.\1_embeddings."),
        (r"^Qformer\.bert\.encoder\.layer\.(\d+)\.(attention|crossattention)\.self\.", r"qformer.encoder.layer.\1.\2.attention."),
        (r"^Qformer\.bert\.encoder\.layer\.(\d+)\.", r"qformer.encoder.layer.\1."),
        (r"^vision_proj\.", "vision_projection."),
        (r"^text_proj\.", "text_projection."),
        (r"^itm_head\.", "itm_head."),
    ]
    for pattern, repl in rules:
        if re.search(pattern, name):
            return re.sub(pattern, repl, name)
    return None

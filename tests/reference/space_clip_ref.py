"""Independent PyTorch reference implementation of SPACE-CLIP (inference).

Built from the project's model specification (the SPACE-CLIP paper and
the authors' public release, whose behaviour it reproduces). The module
names of the decoder reproduce the official checkpoint key names exactly, so
a ``state_dict`` of :class:`SpaceClipRef` is interchangeable with an official
``checkpoint["model"]`` (after the key normalisation done by
:func:`normalize_state_dict_keys`).

Pipeline (eval mode, batch B):

    PIL image --squash-resize 224x224 (PIL bicubic)--> /255 --> (x - mean) / std
      --> frozen ViT (HF CLIPVisionModel / SiglipVisionModel, all hidden states)
      --> FiLM-modulated semantic taps + raw structural taps --> dual decoder
      --> depth head (B, 1, 224, 224), metres, >= 0
      --> bilinear resize (align_corners=False) to the output size
      --> clamp to [min_depth, max_depth]

Only torch, transformers, numpy, pillow and pyyaml are needed. Nothing is
downloaded: models are built from config objects / local files.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from transformers import CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)

# Decoder defaults of the official configuration.
DEFAULT_DECODER_CONFIG = {
    "clip_model_name": "openai/clip-vit-base-patch16",
    "main_path_indices": [12, 9, 6, 3],
    "structural_path_indices": [2, 1, 0],
    "decoder_channels": [256, 128, 64, 32],
    "film_param_hidden_dim": 256,
    "use_film": True,
    "use_structural_pathway": True,
    "use_multiscale_supervision": True,
    "decoder_dropout": 0.1,
    "min_depth": 0.001,
    "max_depth": 10.0,
}

BACKBONE_PREFIX = "clip_vision_model."


# ---------------------------------------------------------------------------
# Configuration helpers
# ---------------------------------------------------------------------------

def load_yaml_config(path: str) -> dict:
    import yaml

    with open(path, "r", encoding="utf-8") as f:
        cfg = yaml.safe_load(f) or {}
    merged = dict(DEFAULT_DECODER_CONFIG)
    merged.update(cfg)
    return merged


def backbone_type_for(cfg: dict) -> str:
    """'clip' or 'siglip': explicit ``vision_backbone_type`` wins, otherwise the
    model name decides (a name containing 'siglip' selects SigLIP)."""
    explicit = str(cfg.get("vision_backbone_type", "auto")).strip().lower()
    if explicit in ("clip", "siglip"):
        return explicit
    return "siglip" if "siglip" in str(cfg.get("clip_model_name", "")).lower() else "clip"


def normalization_for(cfg: dict) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    if backbone_type_for(cfg) == "siglip":
        mean, std = SIGLIP_MEAN, SIGLIP_STD
    else:
        mean, std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    mean = tuple(float(v) for v in cfg.get("vision_image_mean", mean))
    std = tuple(float(v) for v in cfg.get("vision_image_std", std))
    return mean, std


def load_vision_config(path: str) -> Union[CLIPVisionConfig, SiglipVisionConfig]:
    with open(path, "r", encoding="utf-8") as f:
        d = json.load(f)
    # A full CLIPConfig / SiglipConfig holds the tower under "vision_config".
    if "vision_config" in d:
        d = d["vision_config"]
    d = {k: v for k, v in d.items() if k not in ("transformers_version", "architectures")}
    model_type = d.pop("model_type", "clip_vision_model")
    if model_type.startswith("siglip"):
        return SiglipVisionConfig(**d)
    return CLIPVisionConfig(**d)


# ---------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------

def preprocess(
    image: Image.Image,
    size: int = 224,
    mean: Sequence[float] = OPENAI_CLIP_MEAN,
    std: Sequence[float] = OPENAI_CLIP_STD,
) -> torch.Tensor:
    """RGB PIL image -> float32 tensor (3, size, size).

    Squash-resize (aspect ratio not kept) with PIL bicubic, divide by 255 in
    float32, then ``(x - mean) / std`` per channel in float32.
    """
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BICUBIC)
    arr = np.asarray(image, dtype=np.float32) / np.float32(255.0)  # (H, W, 3)
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (x - m) / s


def _pil_bicubic_filter(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    return np.where(
        x < 1.0,
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0,
        np.where(x < 2.0, (((x - 5.0) * x + 8.0) * x - 4.0) * a, 0.0),
    )


def _pil_fixed_point_weights(in_size: int, out_size: int, precision_bits: int = 22) -> np.ndarray:
    """(out_size, in_size) int64 matrix of PIL's 8-bit resampling weights."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)  # antialiasing when shrinking
    support = 2.0 * filterscale  # bicubic support = 2
    w = np.zeros((out_size, in_size), dtype=np.float64)
    for o in range(out_size):
        center = (o + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)  # int() truncates toward zero, as C does
        hi = min(int(center + support + 0.5), in_size)
        xs = np.arange(lo, hi, dtype=np.float64)
        k = _pil_bicubic_filter((xs - center + 0.5) / filterscale)
        total = k.sum()
        if total != 0.0:
            k = k / total
        w[o, lo:hi] = k
    one = float(1 << precision_bits)
    # C cast (int) truncates toward zero: round half away from zero.
    return np.where(w < 0, np.trunc(w * one - 0.5), np.trunc(w * one + 0.5)).astype(np.int64)


def pil_bicubic_resize(
    rgb: np.ndarray, width: int, height: int, pillow13_order: bool = True, precision_bits: int = 22
) -> np.ndarray:
    """Bit-exact numpy restatement of ``PIL.Image.resize(.., BICUBIC)`` for
    8-bit RGB (documents what a port must reproduce):

    - separable, two passes; each pass uses fixed-point weights (22
      fractional bits, rounded half away from zero), an accumulator started
      at 2**21, an arithmetic shift right by 22 and a clamp to [0, 255]; the
      intermediate image is stored as uint8;
    - weights: Keys cubic with a = -0.5, support 2 * max(in/out, 1) (so
      antialiased when shrinking), centre (o + 0.5) * in/out, taps
      [int(c - s + 0.5), int(c + s + 0.5)) clipped to the image, tap value
      filter((i - c + 0.5) / max(in/out, 1)), normalised to sum 1;
    - pass order: Pillow <= 12 always runs the horizontal pass first.
      Pillow 13 runs the vertical pass first when
      ``in_h - out_h > 0 and in_h - out_h > 2 * (in_w - out_w)`` (pixel
      differences). For landscape frames squashed to 224x224 (e.g. 640x480,
      1242x375) both give horizontal first;
    - output size equal to the input size returns the input unchanged.
    """
    src = np.asarray(rgb, dtype=np.uint8)
    h, w = src.shape[:2]
    if (w, h) == (width, height):
        return src.copy()
    half = 1 << (precision_bits - 1)

    def horizontal(x: np.ndarray) -> np.ndarray:
        if w == width:
            return x
        k = _pil_fixed_point_weights(w, width, precision_bits)
        return np.clip((np.einsum("ow,hwc->hoc", k, x) + half) >> precision_bits, 0, 255)

    def vertical(x: np.ndarray) -> np.ndarray:
        if h == height:
            return x
        k = _pil_fixed_point_weights(h, height, precision_bits)
        return np.clip((np.einsum("oh,hwc->owc", k, x) + half) >> precision_bits, 0, 255)

    x = src.astype(np.int64)
    vertical_first = pillow13_order and (h - height) > 0 and (h - height) > 2 * (w - width)
    x = horizontal(vertical(x)) if vertical_first else vertical(horizontal(x))
    return x.astype(np.uint8)


# ---------------------------------------------------------------------------
# Decoder building blocks (module names = official checkpoint names)
# ---------------------------------------------------------------------------

def _conv3x3(cin: int, cout: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=bias)


def _resize_to(x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False)


class Up(nn.Module):
    """ConvTranspose2d(k2, s2, bias) -> Conv3x3(no bias) -> BN -> ReLU.
    Names: ``upsample``, ``conv.0``, ``conv.1``."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.upsample = nn.ConvTranspose2d(cin, cout, kernel_size=2, stride=2, bias=True)
        self.conv = nn.Sequential(_conv3x3(cout, cout), nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.upsample(x))


class Res(nn.Module):
    """Residual block: conv1-norm1-ReLU-Dropout-conv2-norm2, + input, ReLU."""

    def __init__(self, c: int, dropout: float):
        super().__init__()
        self.conv1 = _conv3x3(c, c)
        self.norm1 = nn.BatchNorm2d(c)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _conv3x3(c, c)
        self.norm2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.dropout(y)
        y = self.norm2(self.conv2(y))
        return F.relu(y + x)


class StructBlock(nn.Module):
    """Structural pathway stage: Up(in, out); concat the (resized) skip;
    Conv3x3(out + skip -> out) -> BN -> ReLU."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.upsample_low = Up(cin, cout)
        self.fusion_conv = nn.Sequential(_conv3x3(cout + cskip, cout), nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.upsample_low(low)
        skip = _resize_to(skip, up.shape[-2:])
        return self.fusion_conv(torch.cat([up, skip], dim=1))


class MainBlock(nn.Module):
    """Main (semantic) pathway stage with gated skips.

    up = Up(low, out); skips resized to up; skip *= 1 + sigmoid(Conv1x1(up));
    concat [up, skip_clip, skip_struct]; Conv3x3 -> BN -> ReLU -> Res.
    """

    def __init__(self, clow: int, cskip_clip: int, cskip_struct: int, cout: int, dropout: float):
        super().__init__()
        self.cskip_struct = cskip_struct
        self.upsample_low = Up(clow, cout)
        self.skip_clip_gate = nn.Sequential(nn.Conv2d(cout, cskip_clip, kernel_size=1, bias=True), nn.Sigmoid())
        if cskip_struct > 0:
            self.skip_struct_gate = nn.Sequential(
                nn.Conv2d(cout, cskip_struct, kernel_size=1, bias=True), nn.Sigmoid()
            )
        else:
            self.skip_struct_gate = None
        self.fusion_conv = nn.Sequential(
            _conv3x3(cout + cskip_clip + cskip_struct, cout),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            Res(cout, dropout),
        )

    def forward(
        self, low: torch.Tensor, skip_clip: torch.Tensor, skip_struct: Optional[torch.Tensor]
    ) -> torch.Tensor:
        up = self.upsample_low(low)
        hw = up.shape[-2:]
        parts = [up]
        skip_clip = _resize_to(skip_clip, hw)
        parts.append(skip_clip * (1.0 + self.skip_clip_gate(up)))
        if self.skip_struct_gate is not None and skip_struct is not None and skip_struct.shape[1] > 0:
            skip_struct = _resize_to(skip_struct, hw)
            parts.append(skip_struct * (1.0 + self.skip_struct_gate(up)))
        return self.fusion_conv(torch.cat(parts, dim=1))


def _aux_head(c: int) -> nn.Sequential:
    mid = max(c // 2, 16)
    return nn.Sequential(
        _conv3x3(c, mid),
        nn.BatchNorm2d(mid),
        nn.ReLU(),
        nn.Conv2d(mid, 1, kernel_size=1, bias=True),
        nn.ReLU(),
    )


# ---------------------------------------------------------------------------
# Full model
# ---------------------------------------------------------------------------

class SpaceClipRef(nn.Module):
    """SPACE-CLIP for inference. ``state_dict()`` keys follow the official
    checkpoint layout (backbone under ``clip_vision_model.``)."""

    def __init__(
        self,
        cfg: dict,
        vision_config: Union[CLIPVisionConfig, SiglipVisionConfig],
        attn_implementation: str = "eager",
    ):
        super().__init__()
        full = dict(DEFAULT_DECODER_CONFIG)
        full.update(cfg)
        self.cfg = full
        self.backbone_type = backbone_type_for(full)
        vision_config._attn_implementation = attn_implementation
        if self.backbone_type == "siglip":
            if not isinstance(vision_config, SiglipVisionConfig):
                raise ValueError("SigLIP backbone selected but the vision config is not a SiglipVisionConfig")
            self.clip_vision_model = SiglipVisionModel(vision_config)
        else:
            if not isinstance(vision_config, CLIPVisionConfig):
                raise ValueError("CLIP backbone selected but the vision config is not a CLIPVisionConfig")
            self.clip_vision_model = CLIPVisionModel(vision_config)
        for p in self.clip_vision_model.parameters():
            p.requires_grad_(False)

        d = int(vision_config.hidden_size)
        self.embed_dim = d
        self.patch_size = int(vision_config.patch_size)
        self.image_size = int(vision_config.image_size)
        self.has_cls = self.backbone_type == "clip"
        self.main_idx: List[int] = list(full["main_path_indices"])
        self.struct_idx: List[int] = list(full["structural_path_indices"])
        self.use_film = bool(full["use_film"])
        self.use_struct = bool(full["use_structural_pathway"])
        self.use_aux = bool(full["use_multiscale_supervision"])
        ch: List[int] = [int(c) for c in full["decoder_channels"]]
        self.channels = ch
        dropout = float(full["decoder_dropout"])
        film_hidden = int(full["film_param_hidden_dim"])
        self.min_depth = float(full["min_depth"])
        self.max_depth = float(full["max_depth"])
        self.mean, self.std = normalization_for(full)

        # Registration order reproduces the official state_dict order.
        if self.use_film:
            self.film_param_generators = nn.ModuleList(
                nn.Sequential(nn.Linear(d, film_hidden), nn.ReLU(), nn.Linear(film_hidden, 2 * d))
                for _ in self.main_idx
            )
        self.main_path_projections = nn.ModuleList(nn.Conv2d(d, c, kernel_size=1, bias=True) for c in ch)
        self.main_decoder_blocks = nn.ModuleList()
        n_struct = len(self.struct_idx) if self.use_struct else 0
        if self.use_struct:
            self.structural_path_projections = nn.ModuleList(
                nn.Conv2d(d, c, kernel_size=1, bias=True) for c in ch[:n_struct]
            )
            self.structural_decoder_blocks = nn.ModuleList()
        for i, c in enumerate(ch):
            if i < n_struct:
                self.structural_decoder_blocks.append(StructBlock(d if i == 0 else ch[i - 1], c, c))
                cstruct = c
            else:
                cstruct = 0
            self.main_decoder_blocks.append(MainBlock(ch[0] if i == 0 else ch[i - 1], c, cstruct, c, dropout))
        last = ch[-1]
        self.depth_prediction_head = nn.Sequential(
            _conv3x3(last, last // 2),
            nn.BatchNorm2d(last // 2),
            nn.ReLU(),
            _conv3x3(last // 2, 1, bias=True),
            nn.ReLU(),
        )
        self.aux_depth_heads = nn.ModuleList()
        if self.use_aux and len(ch) > 1:
            for c in ch[:-1]:
                self.aux_depth_heads.append(_aux_head(c))
        self.eval()

    # -- stages --------------------------------------------------------------

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return preprocess(image, self.image_size, self.mean, self.std)

    @torch.no_grad()
    def encode(self, pixel_values: torch.Tensor) -> Tuple[Tuple[torch.Tensor, ...], torch.Tensor]:
        """(B, 3, S, S) -> (hidden_states: num_layers + 1 tensors (B, T, D), pooler (B, D))."""
        h, w = pixel_values.shape[-2:]
        if (h, w) != (self.image_size, self.image_size):
            raise ValueError(f"backbone input must be {self.image_size}x{self.image_size}, got {h}x{w}")
        out = self.clip_vision_model(pixel_values=pixel_values, output_hidden_states=True, return_dict=True)
        return tuple(out.hidden_states), out.pooler_output

    def _to_map(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.has_cls:
            tokens = tokens[:, 1:, :]
        b, n, d = tokens.shape
        g = self.image_size // self.patch_size
        assert n == g * g, (n, g)
        return tokens.transpose(1, 2).reshape(b, d, g, g)

    def decode(
        self,
        hidden_states: Sequence[torch.Tensor],
        pooler: torch.Tensor,
        return_aux: bool = False,
    ):
        """Hidden states + pooler -> raw head map (B, 1, S, S) (and the aux
        maps at their native resolutions when ``return_aux``)."""
        main_feats = []
        for i, idx in enumerate(self.main_idx):
            tokens = hidden_states[idx]
            if self.has_cls:
                tokens = tokens[:, 1:, :]
            if self.use_film:
                gb = self.film_param_generators[i](pooler)
                gamma, beta = gb[:, : self.embed_dim], gb[:, self.embed_dim :]
                tokens = gamma.unsqueeze(1) * tokens + beta.unsqueeze(1)
            b, n, d = tokens.shape
            g = self.image_size // self.patch_size
            fmap = tokens.transpose(1, 2).reshape(b, d, g, g)
            main_feats.append(self.main_path_projections[i](fmap))

        struct_feats = []
        s = None
        if self.use_struct:
            for j, idx in enumerate(self.struct_idx):
                struct_feats.append(self.structural_path_projections[j](self._to_map(hidden_states[idx])))
            s = self._to_map(hidden_states[self.struct_idx[0]])

        x = main_feats[0]
        stage_outputs = []
        for i, block in enumerate(self.main_decoder_blocks):
            if self.use_struct and i < len(self.structural_decoder_blocks):
                s = self.structural_decoder_blocks[i](s, struct_feats[i])
                skip_struct = s
            else:
                skip_struct = None
            x = block(x, main_feats[i], skip_struct)
            stage_outputs.append(x)

        depth = self.depth_prediction_head(x)
        if not return_aux:
            return depth
        aux = [head(f) for head, f in zip(self.aux_depth_heads, stage_outputs[:-1])]
        return depth, aux

    def postprocess(self, head_map: torch.Tensor, output_size: Tuple[int, int]) -> torch.Tensor:
        """Bilinear (align_corners=False) resize to ``output_size`` = (H, W),
        then clamp to [min_depth, max_depth]."""
        out = _resize_to(head_map, tuple(output_size))
        return out.clamp(self.min_depth, self.max_depth)

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor, output_size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        hs, pooled = self.encode(pixel_values)
        head = self.decode(hs, pooled)
        if output_size is None:
            output_size = tuple(pixel_values.shape[-2:])
        return self.postprocess(head, output_size)

    @torch.no_grad()
    def predict(self, image: Image.Image, output_size: Optional[Tuple[int, int]] = None) -> Dict[str, torch.Tensor]:
        """One PIL image -> dict with pixel_values, hidden_states, pooler,
        head (raw 224 map) and depth (resized to output_size, default the
        image's own (H, W), and clamped)."""
        px = self.preprocess(image).unsqueeze(0)
        hs, pooled = self.encode(px)
        head = self.decode(hs, pooled)
        if output_size is None:
            output_size = (image.height, image.width)
        depth = self.postprocess(head, output_size)
        return {
            "pixel_values": px[0],
            "hidden_states": torch.stack([h[0] for h in hs]),
            "pooler": pooled[0],
            "head": head[0, 0],
            "depth": depth[0, 0],
        }

    # -- parameter bookkeeping ------------------------------------------------

    def decoder_parameters(self) -> Iterable[nn.Parameter]:
        return (p for n, p in self.named_parameters() if not n.startswith(BACKBONE_PREFIX))


# ---------------------------------------------------------------------------
# Checkpoint loading
# ---------------------------------------------------------------------------

def normalize_state_dict_keys(sd: Dict[str, torch.Tensor], wrapped: bool = True) -> Dict[str, torch.Tensor]:
    """Accept the key variants of official checkpoints and return one layout.

    - a leading ``module.`` (DataParallel) is removed;
    - backbone keys come in two spellings: ``clip_vision_model.vision_model.
      <hf name>`` (transformers 4.x and 5.0-5.5, whose CLIPVisionModel /
      SiglipVisionModel wrap a ``vision_model``) and ``clip_vision_model.<hf
      name>`` (transformers 5.6 and later, no wrapper). ``wrapped=True``
      returns the first spelling, ``wrapped=False`` the second.
    """
    wrap = BACKBONE_PREFIX + "vision_model."
    out = {}
    for k, v in sd.items():
        if k.startswith("module."):
            k = k[len("module."):]
        if k.startswith(BACKBONE_PREFIX):
            if k.startswith(wrap):
                k = BACKBONE_PREFIX + k[len(wrap):]
            if wrapped:
                k = wrap + k[len(BACKBONE_PREFIX):]
        out[k] = v
    return out


def backbone_is_wrapped(model: "SpaceClipRef") -> bool:
    """True when the installed transformers nests the vision tower under
    ``vision_model`` (so state_dict keys read ``clip_vision_model.vision_model.*``)."""
    return hasattr(model.clip_vision_model, "vision_model")


def load_checkpoint_file(path: str) -> Dict[str, torch.Tensor]:
    """Read the model tensors from a ``.pt`` training checkpoint
    ({"model": ..., "optimizer": ..., "epoch": ...} or a bare state_dict) or
    a ``.safetensors`` file."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(ckpt, dict) and "model" in ckpt:
        return ckpt["model"]
    return ckpt


def build_from_dir(fixture_dir: str, attn_implementation: str = "eager") -> SpaceClipRef:
    """Build an (uninitialised) model from ``config.yaml`` and the vision
    config JSON (``clip_config.json`` or ``siglip_config.json``) in a folder."""
    cfg = load_yaml_config(os.path.join(fixture_dir, "config.yaml"))
    for name in ("clip_config.json", "siglip_config.json"):
        p = os.path.join(fixture_dir, name)
        if os.path.exists(p):
            return SpaceClipRef(cfg, load_vision_config(p), attn_implementation)
    raise FileNotFoundError(f"no clip_config.json / siglip_config.json in {fixture_dir}")


def load_model(fixture_dir: str, checkpoint: str, attn_implementation: str = "eager") -> SpaceClipRef:
    model = build_from_dir(fixture_dir, attn_implementation)
    sd = normalize_state_dict_keys(load_checkpoint_file(checkpoint), backbone_is_wrapped(model))
    model.load_state_dict(sd, strict=True)
    model.eval()
    return model

"""Frozen FLSL backbones and their token grids for analysis tools."""
from __future__ import annotations

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from flsl_mm.models.backbones.flsl_vit import FLSLViT

IMAGENET_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
IMAGENET_STD = np.array([58.395, 57.12, 57.375], np.float32)


def load_backbone(config: str, checkpoint: str | None = None, student: bool = False,
                  random_init: bool = False, seed: int = 0) -> FLSLViT:
    """The (teacher, by default) backbone of an FLSL pretraining config.

    ``random_init`` (or no checkpoint) gives the backbone at its initialisation for
    ``seed``: the baseline every probe is compared with.
    """
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(config)
    if cfg.model.get('type') != 'FLSL':
        raise ValueError(f'{config}: not an FLSL pretraining config '
                         f"(model type {cfg.model.get('type')!r})")
    torch.manual_seed(seed)
    backbone_cfg = dict(cfg.model.backbone, drop_path_rate=0.0, out_type='tokens')
    backbone_cfg.pop('init_cfg', None)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        backbone = MODELS.build(backbone_cfg)
    if checkpoint is not None and not random_init:
        ckpt = torch.load(checkpoint, map_location='cpu', weights_only=False)
        state = ckpt.get('state_dict', ckpt)
        prefix = 'backbone.' if student else 'teacher.module.backbone.'
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not sub:
            raise ValueError(f'{checkpoint}: no {prefix}* weights (is it an flsl_mm '
                             'pretraining checkpoint?)')
        missing, unexpected = backbone.load_state_dict(sub, strict=False)
        if missing or unexpected:
            raise ValueError(f'{checkpoint}: does not fit the config backbone '
                             f'(missing {missing[:3]}, unexpected {unexpected[:3]})')
    return backbone.eval()


def to_input(img_bgr: np.ndarray) -> torch.Tensor:
    """BGR uint8 HxWx3 -> normalised RGB 1x3xHxW."""
    rgb = img_bgr[..., ::-1].astype(np.float32)
    x = (rgb - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]


@torch.no_grad()
def extract_tokens(backbone: FLSLViT, img_bgr: np.ndarray, block: int = -1
                   ) -> np.ndarray:
    """``(h, w, C)`` tokens after ``block`` (-1: the last block, with the final
    LayerNorm as in pretraining). The image must be a multiple of the patch."""
    tokens, (h, w) = backbone.prepare_tokens(to_input(img_bgr))
    last = len(backbone.blocks) - 1
    block = block % len(backbone.blocks)
    for i, blk in enumerate(backbone.blocks[:block + 1]):
        tokens = blk(tokens)
    if block == last:
        tokens = backbone.norm(tokens)
    return tokens[0].reshape(h, w, -1).numpy()

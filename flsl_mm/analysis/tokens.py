"""Frozen FLSL backbones and their token grids for analysis tools."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from flsl_mm.models.backbones.flsl_vit import FLSLViT


@dataclass(frozen=True)
class InputNorm:
    """The pretraining config's input normalisation (its data preprocessor)."""
    mean: np.ndarray
    std: np.ndarray
    to_rgb: bool

    @classmethod
    def from_config(cls, cfg: Config, source: str = 'config') -> 'InputNorm':
        pre = cfg.model.get('data_preprocessor') or {}
        if 'mean' not in pre or 'std' not in pre:
            raise ValueError(f'{source}: model.data_preprocessor has no mean/std; '
                             'the analysis tools normalise inputs as training did')
        # DeviceViewPreprocessor gets RGB images (the loader's PIL decode) and
        # has no to_rgb: the network saw RGB, so a BGR image is flipped
        to_rgb = pre.get('type') == 'DeviceViewPreprocessor' or \
            bool(pre.get('to_rgb', pre.get('bgr_to_rgb', False)))
        return cls(np.asarray(pre['mean'], np.float32),
                   np.asarray(pre['std'], np.float32), to_rgb)

    def __call__(self, img_bgr: np.ndarray) -> torch.Tensor:
        """BGR uint8 HxWx3 (as loaded by cv2/mmcv) -> normalised 1x3xHxW."""
        img = img_bgr[..., ::-1] if self.to_rgb else img_bgr
        x = (img.astype(np.float32) - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]


def load_backbone_weights(backbone: FLSLViT, checkpoint: str,
                          student: bool = False) -> str:
    """Load backbone weights from any checkpoint the converter reads (an flsl_mm
    pretraining checkpoint: teacher, or student with ``student``; the authors'
    release; a DINO / timm ViT, class token dropped, ``.pth`` or ``.safetensors``;
    a converted backbone), without running its pickle
    (:func:`flsl_mm.checkpoints.load_checkpoint_file`). Returns the format; every
    mismatch is an error naming the file."""
    from flsl_mm.checkpoints import UnsafeCheckpointError, load_checkpoint_file
    try:
        ckpt = load_checkpoint_file(checkpoint, map_location='cpu')
    except (FileNotFoundError, UnsafeCheckpointError):
        raise
    except Exception as exc:
        raise ValueError(f'{checkpoint}: cannot be read as a torch checkpoint '
                         f'({exc})') from exc
    return load_backbone_state(backbone, ckpt, checkpoint, student)


def load_backbone_state(backbone: FLSLViT, ckpt: dict, source: str,
                        student: bool = False) -> str:
    """:func:`load_backbone_weights` from a loaded checkpoint (or a model's
    ``{'state_dict': model.state_dict()}``); errors name ``source``."""
    from flsl_mm.models.utils.convert import CheckpointFormatError, extract_backbone
    try:
        conv = extract_backbone(ckpt, student=student)
    except CheckpointFormatError as exc:
        raise ValueError(f'{source}: {exc}') from exc
    state = conv.state_dict
    own_pe = backbone.pos_embed
    if 'pos_embed' in state and state['pos_embed'].shape != own_pe.shape:
        raise ValueError(f'{source}: position embedding {tuple(state["pos_embed"].shape)}'
                         f' does not fit the backbone\'s {tuple(own_pe.shape)} '
                         '(another img_size / patch size?)')
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if set(missing) == {'norm.weight', 'norm.bias'} and not unexpected:
        raise ValueError(f'{source}: has no final norm (a backbone converted for '
                         'detection?) but the config\'s backbone has one: use the '
                         'pretraining checkpoint, convert with --keep-final-norm, or '
                         'set model.backbone.final_norm=False')
    if missing or unexpected:
        raise ValueError(f'{source}: does not fit the config backbone '
                         f'(missing {missing[:3]}, unexpected {unexpected[:3]})')
    return conv.source_format


def build_dense_backbone(cfg: Config, source: str = 'config') -> FLSLViT:
    """The backbone of an FLSL or DINO pretraining config built for dense use
    (patch tokens only: a DINO class token is left out, as by the converter; drop
    path 0), in eval mode, with ``input_norm`` set from the config. Its weights
    are an initialisation drawn from torch's global generator."""
    from mmpretrain.registry import MODELS
    if cfg.model.get('type') not in ('FLSL', 'DINO'):
        raise ValueError(f'{source}: not an FLSL or DINO pretraining config '
                         f"(model type {cfg.model.get('type')!r})")
    backbone_cfg = dict(cfg.model.backbone, drop_path_rate=0.0, out_type='tokens',
                        with_cls_token=False)
    backbone_cfg.pop('init_cfg', None)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        backbone = MODELS.build(backbone_cfg)
    backbone.input_norm = InputNorm.from_config(cfg, source)
    return backbone.eval()


def load_backbone(config: str, checkpoint: str | None = None, student: bool = False,
                  random_init: bool = False, seed: int = 0) -> FLSLViT:
    """The (teacher, by default) backbone of an FLSL or DINO pretraining config,
    for dense use: patch tokens only (a DINO class token is dropped).

    The backbone carries ``input_norm`` (:class:`InputNorm` of the config's data
    preprocessor); its patch size is the config's. ``random_init`` (or no
    checkpoint) gives the backbone at its initialisation for ``seed``: the baseline
    every probe is compared with.
    """
    cfg = Config.fromfile(config)
    torch.manual_seed(seed)
    backbone = build_dense_backbone(cfg, config)
    if checkpoint is not None and not random_init:
        load_backbone_weights(backbone, checkpoint, student=student)
    return backbone


def extract_tokens(backbone: FLSLViT, img_bgr: np.ndarray, block: int = -1
                   ) -> np.ndarray:
    """``(h, w, C)`` tokens after ``block`` (-1: the last block, with the final
    LayerNorm as in pretraining). The image must be a multiple of the patch; it is
    normalised with ``backbone.input_norm`` (set by :func:`load_backbone`)."""
    return extract_token_batch(backbone, [img_bgr], block)[0]


@torch.no_grad()
def extract_token_batch(backbone: FLSLViT, imgs_bgr: list[np.ndarray],
                        block: int = -1) -> np.ndarray:
    """:func:`extract_tokens` of images of one size in one forward:
    ``(B, h, w, C)`` float32."""
    norm = getattr(backbone, 'input_norm', None)
    if norm is None:
        raise ValueError('extract_tokens: the backbone has no input_norm; build it '
                         'with load_backbone(config, ...)')
    device = next(backbone.parameters()).device
    x = torch.cat([norm(img) for img in imgs_bgr]).to(device)
    tokens, (h, w) = backbone.prepare_tokens(x)
    last = len(backbone.blocks) - 1
    block = block % len(backbone.blocks)
    for i, blk in enumerate(backbone.blocks[:block + 1]):
        tokens = blk(tokens)
    if block == last:
        tokens = backbone.norm(tokens)
    return tokens.reshape(len(imgs_bgr), h, w, -1).float().cpu().numpy()

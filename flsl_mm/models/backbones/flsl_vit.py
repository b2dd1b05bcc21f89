"""FLSL Vision Transformer backbone: a ViT without class token (FLSL_SPEC §1).

With ``with_cls_token=True`` and ``pos_embed_type='learnable'`` it is DINO's ViT
(Caron et al., ICCV 2021; ``docs/dino.md``), the baseline FLSL is compared with.
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from timm.layers import PatchEmbed, trunc_normal_
from timm.models.vision_transformer import Block

from flsl_mm.registry import MODELS
from ..utils.pos_embed import get_2d_sincos_pos_embed, resize_pos_embed


@MODELS.register_module()
class FLSLViT(BaseModule):
    """ViT of FLSL: patch tokens only, fixed 2-D sin-cos position embedding.

    The same ViT with a class token and a learned position embedding is DINO's
    (``with_cls_token=True, pos_embed_type='learnable'``, ``out_type='cls_token'``).

    Built from timm's ``Block`` (fused ``scaled_dot_product_attention``); state-dict
    names are those of the official FLSL / DINO ViTs (``patch_embed.proj``,
    ``blocks.i.attn.qkv``, ``blocks.i.mlp.fc1``, ``norm``, ...).

    Args:
        arch: ``'tiny'``, ``'small'`` or ``'base'`` (or a dict with ``embed_dims``,
            ``num_layers``, ``num_heads``).
        patch_size: 16 or 8.
        img_size: the size whose token grid the fixed embedding is made for (224);
            other inputs get the embedding resized as the reference does.
        drop_path_rate: stochastic depth, linear over depth.
        final_norm: apply the final LayerNorm to the all-token output
            (``post_layernorm`` of the reference).
        out_type: ``'tokens'`` -> ``B x N x C`` patch tokens after the final norm
            (FLSL pretraining; a class token is not returned);
            ``'cls_token'`` -> ``B x C``: the class token after the final norm
            (DINO pretraining, needs ``with_cls_token``);
            ``'featmap'`` -> tuple of ``B x C x H/p x W/p`` maps of the blocks in
            ``out_indices`` (dense tasks, taken before the final norm).
        out_indices: blocks whose outputs are returned in ``'featmap'`` mode
            (ignored in ``'tokens'`` mode), in this order; negative indices count
            from the end, out-of-range or repeated ones are refused. Blocks after
            the last one asked for do not run and are frozen.
        frozen_stages: number of leading blocks (with the patch embedding) frozen.
        with_cls_token: prepend a learned class token (DINO); its position slot
            comes first in ``pos_embed`` (``1 x (1 + N) x C``).
        pos_embed_type: ``'sincos'`` (fixed buffer, FLSL; the class slot is zero)
            or ``'learnable'`` (a parameter, trunc-normal std .02 like the class
            token, DINO).
    """

    arch_zoo = {
        'tiny': dict(embed_dims=192, num_layers=12, num_heads=3),
        'small': dict(embed_dims=384, num_layers=12, num_heads=6),
        'base': dict(embed_dims=768, num_layers=12, num_heads=12),
    }

    def __init__(self,
                 arch: str | dict = 'small',
                 patch_size: int = 16,
                 img_size: int = 224,
                 in_channels: int = 3,
                 mlp_ratio: float = 4.0,
                 qkv_bias: bool = True,
                 drop_path_rate: float = 0.0,
                 final_norm: bool = True,
                 out_type: str = 'tokens',
                 out_indices: Sequence[int] = (3, 5, 7, 11),
                 frozen_stages: int = -1,
                 with_cls_token: bool = False,
                 pos_embed_type: str = 'sincos',
                 init_cfg: dict | list | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if isinstance(arch, str):
            if arch not in self.arch_zoo:
                raise KeyError(f'FLSLViT: unknown arch {arch!r}; choose one of '
                               f'{sorted(self.arch_zoo)} or pass a dict')
            arch = self.arch_zoo[arch]
        if out_type not in ('tokens', 'featmap', 'cls_token'):
            raise ValueError("out_type must be 'tokens', 'featmap' or 'cls_token', "
                             f'got {out_type!r}')
        if out_type == 'cls_token' and not with_cls_token:
            raise ValueError("FLSLViT: out_type='cls_token' needs with_cls_token=True")
        if pos_embed_type not in ('sincos', 'learnable'):
            raise ValueError("FLSLViT: pos_embed_type must be 'sincos' or 'learnable', "
                             f'got {pos_embed_type!r}')
        self.embed_dims = int(arch['embed_dims'])
        self.num_layers = int(arch['num_layers'])
        self.num_heads = int(arch['num_heads'])
        self.patch_size = patch_size
        self.grid_size = img_size // patch_size
        self.out_type = out_type
        self.out_indices = (self._check_out_indices(out_indices, self.num_layers)
                            if out_type == 'featmap' else [])
        if out_type == 'featmap' and final_norm:
            raise ValueError(
                "FLSLViT: out_type='featmap' returns block outputs before the final "
                'norm, so final_norm=True would add parameters that never get a '
                'gradient (DDP then fails); set final_norm=False for dense tasks')
        self.frozen_stages = frozen_stages

        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size,
                                      in_chans=in_channels,
                                      embed_dim=self.embed_dims, strict_img_size=False,
                                      dynamic_img_pad=False)
        self.with_cls_token = with_cls_token
        self.num_prefix_tokens = int(with_cls_token)
        self.pos_embed_type = pos_embed_type
        if pos_embed_type == 'sincos':
            pos = get_2d_sincos_pos_embed(self.embed_dims, self.grid_size)
            if with_cls_token:
                pos = torch.cat([pos.new_zeros(1, self.embed_dims), pos])
            # Fixed, not trained; persistent so that checkpoints carry it like the
            # reference's (frozen) parameter does.
            self.register_buffer('pos_embed', pos.unsqueeze(0), persistent=True)
        else:
            num = self.grid_size**2 + self.num_prefix_tokens
            self.pos_embed = nn.Parameter(torch.zeros(1, num, self.embed_dims))
            trunc_normal_(self.pos_embed, std=.02)
        if with_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
            trunc_normal_(self.cls_token, std=.02)

        dpr = torch.linspace(0, drop_path_rate, self.num_layers).tolist()
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList([
            Block(dim=self.embed_dims, num_heads=self.num_heads, mlp_ratio=mlp_ratio,
                  qkv_bias=qkv_bias, drop_path=dpr[i], norm_layer=norm_layer)
            for i in range(self.num_layers)
        ])
        self.norm = norm_layer(self.embed_dims) if final_norm else nn.Identity()
        self._init_reference_weights()
        if out_type == 'featmap':
            # blocks after the last requested one never run: keep them out of
            # training (DDP refuses parameters without gradients)
            for blk in self.blocks[max(self.out_indices) + 1:]:
                blk.requires_grad_(False)
        self._freeze_stages()

    @staticmethod
    def _check_out_indices(out_indices: Sequence[int], num_layers: int) -> list[int]:
        """Blocks to return, negative indices resolved; in the order asked for."""
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        resolved = []
        for i in out_indices:
            if not -num_layers <= i < num_layers:
                raise ValueError(f'FLSLViT: out_indices {tuple(out_indices)} has {i}, '
                                 f'out of range for {num_layers} blocks')
            resolved.append(i % num_layers)
        if len(set(resolved)) != len(resolved):
            raise ValueError(f'FLSLViT: out_indices {tuple(out_indices)} names a '
                             'block twice')
        return resolved

    # ------------------------------------------------------------------ init
    def _init_reference_weights(self) -> None:
        """trunc_normal(.02) Linear weights, zero biases, LayerNorm (1, 0)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def init_weights(self) -> None:
        # Random init happens in __init__ (the reference's); only a Pretrained
        # init_cfg has anything left to do here.
        if self.init_cfg is not None:
            super().init_weights()

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        modules = [self.patch_embed] + list(self.blocks[:self.frozen_stages])
        for m in modules:
            m.eval()
            for p in m.parameters():
                p.requires_grad = False
        for name in ('pos_embed', 'cls_token'):  # learned ones (DINO)
            p = getattr(self, name, None)
            if isinstance(p, nn.Parameter):
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self

    # --------------------------------------------------------------- forward
    def interpolate_pos_encoding(self, h: int, w: int) -> torch.Tensor:
        """Position embedding for an ``h x w`` token grid (FLSL_SPEC §1); the
        class slot, if any, first and unchanged (as DINO)."""
        prefix = self.pos_embed[:, :self.num_prefix_tokens]
        patch = resize_pos_embed(self.pos_embed[:, self.num_prefix_tokens:],
                                 self.grid_size, (h, w))
        return torch.cat([prefix, patch], dim=1) if self.num_prefix_tokens else patch

    def prepare_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch embedding (+ class token first) + position embedding."""
        if x.shape[-2] % self.patch_size or x.shape[-1] % self.patch_size:
            raise ValueError(f'FLSLViT: input {tuple(x.shape[-2:])} is not divisible '
                             f'by the patch size {self.patch_size}; pad it first')
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        tokens = self.patch_embed(x)  # B x N x C (timm flattens row-major)
        if self.with_cls_token:
            tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1)
                                .to(tokens.dtype), tokens], dim=1)
        return tokens + self.interpolate_pos_encoding(h, w).to(tokens.dtype), (h, w)

    def forward(self, x: torch.Tensor):
        tokens, (h, w) = self.prepare_tokens(x)
        if self.out_type != 'featmap':
            for blk in self.blocks:
                tokens = blk(tokens)
            if self.out_type == 'cls_token':  # DINO: the norm of the class token
                return self.norm(tokens[:, 0])
            return self.norm(tokens[:, self.num_prefix_tokens:])
        maps = {}
        last = max(self.out_indices)
        for i, blk in enumerate(self.blocks[:last + 1]):
            tokens = blk(tokens)
            if i in self.out_indices:
                patch = tokens[:, self.num_prefix_tokens:]
                b, _, c = patch.shape
                maps[i] = patch.transpose(1, 2).reshape(b, c, h, w).contiguous()
        return tuple(maps[i] for i in self.out_indices)

    def get_layer_depth(self, param_name: str, prefix: str = '') -> tuple[int, int]:
        """Layer id for layer-wise lr decay (ViTDet / BEiT convention)."""
        num_layers = self.num_layers + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):]
        if name.startswith(('patch_embed', 'pos_embed', 'cls_token')):
            return 0, num_layers
        if name.startswith('blocks.'):
            return int(name.split('.')[1]) + 1, num_layers
        return num_layers - 1, num_layers

"""Turn pretraining checkpoints into FLSLViT backbone weights for detection.

Three sources are understood (see ``docs/checkpoints.md``):

* ``flsl_mm``: a checkpoint written by our FLSL or DINO pretraining; the teacher's
  backbone (``teacher.module.backbone.*``) by default, the student's
  (``backbone.*``) on request;
* ``authors``: the FLSL release, ``{'teacher': {...}, 'student': {...}}`` with
  ``backbone.*`` (teacher) / ``module.backbone.*`` (student, DDP) and ``head.*``;
* ``vit``: a plain ViT state dict (DINO, DeiT, timm), possibly under ``model`` or
  ``state_dict``;
* ``converted``: this converter's own output (or a whole mmdet / mmseg model
  checkpoint), ``backbone.*`` without a teacher.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


from ..backbones.flsl_vit import FLSLViT

_VIT_PREFIXES = ('patch_embed.', 'pos_embed', 'blocks.', 'norm.')


class CheckpointFormatError(ValueError):
    """The checkpoint is not one we can convert, or does not fit the arch."""


@dataclass
class Conversion:
    state_dict: dict
    source_format: str
    dropped: list = field(default_factory=list)


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def detect_format(ckpt: dict) -> str:
    if not isinstance(ckpt, dict):
        raise CheckpointFormatError(f'expected a dict, got {type(ckpt).__name__}')
    if 'teacher' in ckpt and 'student' in ckpt:
        return 'authors'
    sd = ckpt.get('state_dict', ckpt)
    if any(k.startswith('teacher.module.backbone.') for k in sd):
        return 'flsl_mm'
    inner = ckpt.get('model', ckpt.get('state_dict', ckpt))
    if isinstance(inner, dict) and any(k.startswith('blocks.') for k in inner):
        return 'vit'
    if any(k.startswith('backbone.blocks.') for k in sd):
        return 'converted'
    raise CheckpointFormatError(
        'unrecognised checkpoint: expected an flsl_mm pretraining checkpoint '
        "(teacher.module.backbone.*), the authors' release ({'teacher', "
        "'student'}), a ViT state dict (blocks.*) or a converted backbone "
        "(backbone.blocks.*)")


def _drop_class_token(state: dict, dropped: list) -> None:
    """Dense backbones have no class token: drop it and its position slot (DINO
    checkpoints, ours or the authors', and other ViTs; docs/checkpoints.md)."""
    had_token = state.pop('cls_token', None) is not None
    if had_token:
        dropped.append('cls_token')
    pe = state.get('pos_embed')
    if pe is None:
        return
    n = pe.shape[1]
    square = math.isqrt(n) ** 2 == n
    if had_token or (not square and math.isqrt(n - 1) ** 2 == n - 1):
        state['pos_embed'] = pe[:, 1:]
        dropped.append('pos_embed[:, 0] (class token slot)')


def extract_backbone(ckpt: dict, student: bool = False) -> Conversion:
    """Backbone weights under FLSLViT names, with what was left out."""
    fmt = detect_format(ckpt)
    if fmt == 'flsl_mm':
        sd = ckpt.get('state_dict', ckpt)
        prefix = 'backbone.' if student else 'teacher.module.backbone.'
        out = _strip(sd, prefix)
        dropped = [k for k in sd if not k.startswith(prefix)]
    elif fmt == 'authors':
        sd = ckpt['student' if student else 'teacher']
        sd = {k[len('module.'):] if k.startswith('module.') else k: v
              for k, v in sd.items()}
        out = _strip(sd, 'backbone.')
        dropped = [k for k in sd if not k.startswith('backbone.')]
    elif fmt == 'converted':
        sd = ckpt.get('state_dict', ckpt)
        out = _strip(sd, 'backbone.')
        dropped = [k for k in sd if not k.startswith('backbone.')]
    else:
        sd = ckpt.get('model', ckpt.get('state_dict', ckpt))
        out = {k: v for k, v in sd.items() if k.startswith(_VIT_PREFIXES)}
        dropped = [k for k in sd if k not in out]
    _drop_class_token(out, dropped)
    if not out:
        raise CheckpointFormatError(f'no backbone weights found ({fmt} format, '
                                    f'{"student" if student else "teacher"})')
    return Conversion(out, fmt, dropped)


def describe(state: dict) -> dict:
    """Width, patch size and depth of the ViT in ``state``."""
    w = state.get('patch_embed.proj.weight')
    if w is None:
        raise CheckpointFormatError('no patch_embed.proj.weight in the checkpoint')
    depth = 1 + max(int(k.split('.')[1]) for k in state if k.startswith('blocks.'))
    return dict(embed_dims=w.shape[0], patch_size=w.shape[-1], num_layers=depth)


def check_arch(state: dict, arch: str, patch_size: int) -> None:
    """Refuse weights of another ViT with a message saying what they are."""
    found = describe(state)
    want = dict(FLSLViT.arch_zoo[arch], patch_size=patch_size)
    want.pop('num_heads')
    if any(found[k] != want[k] for k in want):
        raise CheckpointFormatError(
            f'arch mismatch: the checkpoint holds a ViT with width '
            f'{found["embed_dims"]}, patch {found["patch_size"]}, '
            f'{found["num_layers"]} blocks, but vit-{arch}/{patch_size} needs width '
            f'{want["embed_dims"]}, patch {want["patch_size"]}, '
            f'{want["num_layers"]} blocks')


# (prefix, group) in the order they are tested; the first match names a dropped key
_DROPPED_GROUPS = (
    ('teacher.module.head.', 'teacher head'),
    ('teacher.', 'EMA bookkeeping'),
    ('module.backbone.', 'student backbone'),
    ('backbone.', 'student backbone'),
    ('module.head.', 'student head'),
    ('head.', 'head'),
    ('loss_module.', 'loss state'),
    ('data_preprocessor.', 'data preprocessor'),
    ('norm.', 'final norm (unused by dense backbones)'),
    ('pos_embed[', 'class-token position slot'),
    ('cls_token', 'class token'),
)


def summarise_dropped(dropped: list[str], source_format: str,
                      student: bool = False) -> dict[str, int]:
    """Count dropped keys by what they were (student backbone, heads, loss state, ...).

    In an flsl_mm checkpoint, ``backbone.*`` is the student (when the teacher is
    converted) and ``head.*`` the student head; with ``student=True`` the teacher's
    backbone is what ``teacher.module.backbone.*`` holds.
    """
    groups: dict[str, int] = {}
    for key in dropped:
        if key.startswith('teacher.module.backbone.'):
            name = 'teacher backbone'
        else:
            name = next((g for prefix, g in _DROPPED_GROUPS if key.startswith(prefix)),
                        'other')
            if name == 'head' and source_format == 'flsl_mm':
                name = 'student head'
            if name == 'head' and source_format == 'authors':
                name = 'student head' if student else 'teacher head'
        groups[name] = groups.get(name, 0) + 1
    return groups


def convert_for_detection(ckpt: dict, arch: str, patch_size: int,
                          student: bool = False, keep_final_norm: bool = False
                          ) -> tuple[dict, Conversion]:
    """mmdet checkpoint ``{'state_dict': {'backbone.*': ...}, 'meta': ...}``.

    The final LayerNorm is dropped unless ``keep_final_norm``: dense backbones
    read block outputs and build without it (``final_norm=False``).
    """
    conv = extract_backbone(ckpt, student=student)
    check_arch(conv.state_dict, arch, patch_size)
    state = dict(conv.state_dict)
    if not keep_final_norm:
        for k in [k for k in state if k.startswith('norm.')]:
            state.pop(k)
            conv.dropped.append(k + ' (final norm, unused by dense backbones)')
    out = {'backbone.' + k: v.clone() for k, v in state.items()}
    meta = dict(source_format=conv.source_format, arch=arch, patch_size=patch_size,
                branch='student' if student else 'teacher')
    return dict(state_dict=out, meta=meta), conv


__all__ = ['CheckpointFormatError', 'Conversion', 'detect_format',
           'extract_backbone', 'describe', 'check_arch', 'convert_for_detection',
           'summarise_dropped']

"""Views made on the training device from the plan the loader made of its draws
(docs/pretraining.md, "Views")."""
from __future__ import annotations

from typing import Sequence

import torch

from flsl_mm.datasets.pil_tables import hsv_tables
from flsl_mm.datasets.view_plan import ViewPlan
from flsl_mm.registry import MODELS
from . import view_ops as ops
from .multi_view import MultiViewDataPreprocessor


@MODELS.register_module()
class DeviceViewPreprocessor(MultiViewDataPreprocessor):
    """Turn a batch of decoded images and its view plan into the normalised
    view batches that FLSL / DINO take, on the training device.

    The loader's ``FLSLMultiView`` / ``DINOMultiCrop`` with ``on_device=True``
    draw each view's parameters; ``pack_images_collate`` turns a batch of them
    into three buffers (images, the plan's int32 and float32 arrays,
    :mod:`flsl_mm.datasets.view_plan`) and ``pin_memory=True`` lets each reach
    the GPU in one asynchronous copy. Here: each view's crop and PIL's bicubic
    resize (flip included), per group of images of similar shapes and per
    output size, then per group of views of one size colour jitter in each
    view's order, grayscale, blur, solarisation, all PIL's operations value for
    value (:mod:`.view_ops`), and ``(x - mean) / std``: the views are those of
    the CPU path, bitwise. Nothing random happens here and nothing is read back
    to the host: every shape is in the plan's host half.

    Output: ``inputs`` is the list ``[view_0, view_1, ...]`` of contiguous
    ``(B, 3, S, S)`` float tensors, as the CPU path's; ``query_index`` as
    :class:`MultiViewDataPreprocessor`.

    Args:
        mean / std: RGB normalisation (ImageNet's, as the CPU path's configs).
        non_blocking: copy the pinned batches to the device asynchronously.
    """

    def __init__(self,
                 mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375),
                 non_blocking: bool = True) -> None:
        super().__init__(mean=mean, std=std, to_rgb=False, non_blocking=non_blocking)
        # PIL's HSV conversions (the hue), moved with the model: no iteration
        # waits for their copy; not saved in checkpoints
        rgb_to_hs, hsv_to_rgb = hsv_tables()
        self.register_buffer('rgb_to_hs', torch.from_numpy(rgb_to_hs), persistent=False)
        self.register_buffer('hsv_to_rgb', torch.from_numpy(hsv_to_rgb),
                             persistent=False)

    def forward(self, data: dict, training: bool = False) -> dict:
        images = data.get('inputs')
        if not (isinstance(images, dict) and isinstance(images.get('plan'), ViewPlan)):
            raise TypeError(
                'DeviceViewPreprocessor takes the batches of pack_images_collate '
                "(decoded images and their view plan): set the loader's collate_fn="
                "dict(type='pack_images_collate') and use the view transform with "
                "on_device=True, packed with algorithm_keys=[..., 'view_params']")
        buffers = self.cast_data([images['images'], images['ints'], images['floats']])
        views = make_views(*buffers, images['plan'], (self.rgb_to_hs, self.hsv_to_rgb))
        out = self._output([v.permute(0, 3, 1, 2) for v in views], data)
        # the loader path's memory layout: one compiled step serves both paths
        out['inputs'] = [v.contiguous() for v in out['inputs']]
        return out


def _arrays(ints: torch.Tensor, floats: torch.Tensor, plan: ViewPlan):
    """``plan.layout``'s arrays: views into the two device buffers."""
    def get(name: str) -> torch.Tensor:
        kind, offset, shape = plan.layout[name]
        buffer = floats if kind == 'float' else ints
        numel = 1
        for n in shape:
            numel *= n
        return buffer[offset:offset + numel].view(shape)
    return get


def make_views(images: torch.Tensor, ints: torch.Tensor, floats: torch.Tensor,
               plan: ViewPlan, hsv_luts=None) -> list[torch.Tensor]:
    """The views of a batch: per view a ``(B, S, S, 3)`` float tensor of 0..255
    RGB values (not normalised), from the device buffers of
    :func:`~flsl_mm.datasets.view_plan.make_view_plan` and its host half
    (``hsv_luts``: :func:`~.view_ops.hsv_luts` on the device, made if not
    given)."""
    get = _arrays(ints, floats, plan)
    batch = plan.batch
    rows = {s: torch.empty((len(members) * batch, s, s, 3), dtype=torch.uint8,
                           device=images.device) for s, members in plan.size_groups}
    groups = [images[o:o + n * h * w * 3].view(n, h, w, 3) for o, n, h, w in plan.groups]
    first_size = plan.sizes[0]
    first_pos = dict(plan.size_groups)[first_size].index(0)
    first_view = rows[first_size][first_pos * batch:(first_pos + 1) * batch]
    for j, job in enumerate(plan.jobs):
        source = groups[job.source] if job.source >= 0 else first_view
        name = f'job{j}'
        crops = ops.resized_crops(
            source, get(f'{name}.image'), get(f'{name}.rows'), get(f'{name}.cols'),
            (get(f'{name}.h_idx'), get(f'{name}.h_w')),
            (get(f'{name}.v_idx'), get(f'{name}.v_w')), job.v_first)
        rows[job.size].index_copy_(0, get(f'{name}.out').long(), crops)
    views: list[torch.Tensor | None] = [None] * len(plan.sizes)
    for size, members in plan.size_groups:
        x = photometric(rows[size].float(), get, size, plan, hsv_luts)
        for v, chunk in zip(members, x.split(batch)):
            views[v] = chunk
    return views


def photometric(x: torch.Tensor, get, size: int, plan: ViewPlan, hsv_luts=None
                ) -> torch.Tensor:
    """Colour jitter (each row in its drawn order), grayscale, blur,
    solarisation of the rows ``x`` ``(N, S, S, 3)`` of one view size."""
    factors, hue = get(f'{size}.factors'), get(f'{size}.hue')
    for position, op, _ in plan.jitter[size]:
        rows = get(f'{size}.jitter{position}{op}').long()
        sub = x.index_select(0, rows)
        if op == 3:
            out = ops.adjust_hue(sub, hue.index_select(0, rows), hsv_luts)
        else:
            out = ops.JITTER_OPS[op](sub, factors.index_select(0, rows)[:, op])
        x.index_copy_(0, rows, out)
    gray = get(f'{size}.gray').bool().view(-1, 1, 1, 1)
    x = torch.where(gray, ops.grayscale(x), x)
    if plan.blur[size]:
        rows = get(f'{size}.blur_rows').long()
        x.index_copy_(0, rows, ops.gaussian_blur(x.index_select(0, rows),
                                                 get(f'{size}.blur_weights')))
    solarize = get(f'{size}.solarize').bool().view(-1, 1, 1, 1)
    return torch.where(solarize, ops.solarize(x), x)


__all__ = ['DeviceViewPreprocessor', 'make_views', 'photometric']

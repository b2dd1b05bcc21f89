"""The device view path's batch plan: every number the training device needs to
make a batch's views, computed on the host from the loader's draws and packed in
two flat buffers (docs/pretraining.md, "Views").

:func:`make_view_plan` runs in the loader worker (``pack_images_collate``), so
the main process does no per-image work and the device gets three pinned
buffers per batch: the images (uint8, padded per group of similar shapes), the
plan's integers (int32: crop boxes, PIL's resampling taps and weights, the rows
of each photometric operation, blur weights, hue steps) and its floats
(float32: the jitter factors, PIL's C ``float``). What is not a tensor
(shapes, counts, offsets: :class:`ViewPlan`) travels with the batch as Python
values, so every shape on the device is known to the host without reading the
device.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .pil_tables import box_blur_weights, hue_shift, resample_tables, vertical_first
from .transforms.view_params import FROM_FIRST_VIEW


def image_groups(shapes: Sequence[tuple[int, int]], max_padding: float = 1.5
                 ) -> list[list[int]]:
    """Indices of the images grouped for padding into one tensor: sorted by
    shape, a group grows while its padded size stays within ``max_padding``
    times its images' pixels (one very large image gets a group of its own
    instead of making the whole batch that large)."""
    order = sorted(range(len(shapes)), key=lambda i: tuple(shapes[i]))
    groups: list[list[int]] = []
    for i in order:
        if groups:
            cand = groups[-1] + [i]
            height = max(shapes[j][0] for j in cand)
            width = max(shapes[j][1] for j in cand)
            if height * width * len(cand) <= max_padding * sum(
                    shapes[j][0] * shapes[j][1] for j in cand):
                groups[-1] = cand
                continue
        groups.append([i])
    return groups


@dataclass
class ResizeJob:
    """Crops of one source, one output size, one pass order: ``source`` is an
    image group's index, or -1 for the first view (before its photometric
    augmentation); ``block`` the padded crop extent ``(h, w)``; ``taps`` those
    of the horizontal and vertical passes."""
    source: int
    size: int
    v_first: bool
    count: int
    block: tuple[int, int]
    taps: tuple[int, int]


@dataclass
class ViewPlan:
    """The host half of a batch's plan (the device half is two buffers, see
    the module docstring). ``layout``: name -> (buffer, offset, shape) of each
    array in the buffers."""
    batch: int
    sizes: list[int]  # per view
    groups: list[tuple[int, int, int, int]]  # (offset, images, height, width)
    jobs: list[ResizeJob]
    size_groups: list[tuple[int, list[int]]]  # (size, views of that size)
    jitter: dict[int, list[tuple[int, int, int]]]  # size -> (position, op, rows)
    blur: dict[int, int]  # size -> rows blurred
    image_bytes: int = 0  # of the image buffer
    members: list[list[int]] = field(default_factory=list)  # samples per group
    layout: dict[str, tuple[str, int, tuple]] = field(default_factory=dict)


class _Buffers:
    """Arrays appended to one int32 and one float32 buffer, with their layout."""

    def __init__(self) -> None:
        self.parts = {'int': [], 'float': []}
        self.sizes = {'int': 0, 'float': 0}
        self.layout: dict[str, tuple[str, int, tuple]] = {}

    def add(self, name: str, array: np.ndarray) -> None:
        kind = 'float' if array.dtype.kind == 'f' else 'int'
        array = np.ascontiguousarray(array, dtype=np.float32 if kind == 'float'
                                     else np.int32)
        self.layout[name] = (kind, self.sizes[kind], tuple(array.shape))
        self.parts[kind].append(array.reshape(-1))
        self.sizes[kind] += array.size

    def packed(self, kind: str) -> np.ndarray:
        dtype = np.float32 if kind == 'float' else np.int32
        parts = self.parts[kind]
        return np.concatenate(parts) if parts else np.zeros(0, dtype)


def _check(params: Sequence[dict]) -> tuple[list[int], list[int]]:
    num_views = len(params[0]['size'])
    if any(len(p['size']) != num_views for p in params):
        raise ValueError('DeviceViewPreprocessor: the samples of a batch have '
                         'different numbers of views')
    sizes = [int(s) for s in params[0]['size']]
    sources = [int(s) for s in params[0]['source']]
    if any(list(p['source']) != sources or list(p['size']) != sizes for p in params):
        raise ValueError('DeviceViewPreprocessor: the views of a batch\'s samples '
                         'differ in size or source')
    return sizes, sources


def make_view_plan(shapes: Sequence[tuple[int, int]], params: Sequence[dict]
                   ) -> tuple[ViewPlan, np.ndarray, np.ndarray]:
    """The plan of a batch of images of ``shapes`` (``(H, W)``) with the drawn
    views ``params`` (per sample, :func:`~.transforms.view_params.
    pack_view_params`'s arrays): the :class:`ViewPlan` and its int32 and
    float32 buffers. The images go into groups of similar shapes
    (:func:`image_groups`; ``ViewPlan.groups`` says where each group starts in
    the image buffer, :func:`pack_groups` fills it)."""
    sizes, sources = _check(params)
    batch, num_views = len(params), len(sizes)
    buffers = _Buffers()
    # rows of each size's tensor: (view, sample), view-major
    size_groups = [(s, [v for v in range(num_views) if sizes[v] == s])
                   for s in sorted(set(sizes))]
    row = {}
    for s, members in size_groups:
        for i, v in enumerate(members):
            for b in range(batch):
                row[v, b] = i * batch + b
    groups, offset = [], 0
    for members in image_groups(shapes):
        height = max(shapes[b][0] for b in members)
        width = max(shapes[b][1] for b in members)
        groups.append((offset, members, height, width))
        offset += len(members) * height * width * 3
    # resize jobs: crops of the images (per group), then of the first view
    jobs = []
    from_image = [v for v in range(num_views) if sources[v] != FROM_FIRST_VIEW]
    from_first = [v for v in range(num_views) if sources[v] == FROM_FIRST_VIEW]
    stages = [(g, members, from_image) for g, (_, members, _, _) in enumerate(groups)]
    stages.append((-1, list(range(batch)), from_first))
    for source, members, views in stages:
        for s in sorted({sizes[v] for v in views}):
            crops = [(v, b, i) for v in views if sizes[v] == s
                     for i, b in enumerate(members)]
            boxes = np.array([params[b]['box'][v] for v, b, _ in crops]).reshape(-1, 4)
            first = vertical_first(boxes[:, 2], boxes[:, 3], s)
            for v_first in (False, True):
                pick = np.flatnonzero(first == v_first)
                if pick.size == 0:
                    continue
                jobs.append(_resize_job(buffers, len(jobs), source, s, v_first,
                                        [crops[i] for i in pick], boxes[pick],
                                        params, row))
    jitter, blur = {}, {}
    for s, members in size_groups:
        rows = {k: np.stack([params[b][k][v] for v in members for b in range(batch)])
                for k in ('jitter_on', 'jitter_order', 'jitter', 'gray',
                          'blur_radius', 'solarize')}
        jitter[s] = []
        for position in range(4):
            for op in range(4):
                picked = np.flatnonzero(rows['jitter_on']
                                        & (rows['jitter_order'][:, position] == op))
                if picked.size:
                    buffers.add(f'{s}.jitter{position}{op}', picked)
                    jitter[s].append((position, op, int(picked.size)))
        # brightness / contrast / saturation factors as PIL's C float; the hue
        # as torchvision's 8-bit step
        buffers.add(f'{s}.factors', rows['jitter'][:, :3].astype(np.float32))
        buffers.add(f'{s}.hue', hue_shift(rows['jitter'][:, 3]))
        buffers.add(f'{s}.gray', rows['gray'].astype(np.int32))
        buffers.add(f'{s}.solarize', rows['solarize'].astype(np.int32))
        blurred = np.flatnonzero(rows['blur_radius'] > 0)
        blur[s] = int(blurred.size)
        if blurred.size:
            buffers.add(f'{s}.blur_rows', blurred)
            buffers.add(f'{s}.blur_weights',
                        box_blur_weights(rows['blur_radius'][blurred]))
    plan = ViewPlan(batch=batch, sizes=sizes,
                    groups=[(o, len(m), h, w) for o, m, h, w in groups], jobs=jobs,
                    size_groups=size_groups, jitter=jitter, blur=blur,
                    image_bytes=offset, members=[m for _, m, _, _ in groups],
                    layout=buffers.layout)
    return plan, buffers.packed('int'), buffers.packed('float')


def _resize_job(buffers: _Buffers, index: int, source: int, size: int, v_first: bool,
                crops, boxes: np.ndarray, params, row) -> ResizeJob:
    """One :class:`ResizeJob`'s arrays: the crops' pixels of the source (rows and
    columns, clamped into each crop, so the block is padded by repetition),
    PIL's taps of both passes (the horizontal table reversed for a flipped
    crop: a flip of the output), and where each crop goes."""
    top, left, height, width = boxes.T
    block_h, block_w = int(height.max()), int(width.max())
    rows = top[:, None] + np.minimum(np.arange(block_h)[None], height[:, None] - 1)
    cols = left[:, None] + np.minimum(np.arange(block_w)[None], width[:, None] - 1)
    h_idx, h_w = resample_tables(width, size)
    v_idx, v_w = resample_tables(height, size)
    flips = np.array([bool(params[b]['flip'][v]) for v, b, _ in crops])
    h_idx[flips], h_w[flips] = h_idx[flips, ::-1], h_w[flips, ::-1]
    name = f'job{index}'
    buffers.add(f'{name}.image', np.array([i for _, _, i in crops]))
    buffers.add(f'{name}.rows', rows)
    buffers.add(f'{name}.cols', cols)
    buffers.add(f'{name}.h_idx', h_idx)
    buffers.add(f'{name}.h_w', h_w)
    buffers.add(f'{name}.v_idx', v_idx)
    buffers.add(f'{name}.v_w', v_w)
    buffers.add(f'{name}.out', np.array([row[v, b] for v, b, _ in crops]))
    return ResizeJob(source=source, size=size, v_first=v_first, count=len(crops),
                     block=(block_h, block_w), taps=(h_w.shape[-1], v_w.shape[-1]))


def pack_groups(images, plan: ViewPlan, out: np.ndarray | None = None) -> np.ndarray:
    """The images (``3xHxW`` uint8 tensors or ``HxWx3`` arrays) in ``plan``'s
    groups: per group an ``(images, H, W, 3)`` block, zero-padded, one flat
    uint8 array (into ``out`` when given)."""
    flat = np.zeros(plan.image_bytes, np.uint8) if out is None else out
    for (offset, count, height, width), members in zip(plan.groups, plan.members):
        block = flat[offset:offset + count * height * width * 3].reshape(
            count, height, width, 3)
        block[...] = 0
        for i, b in enumerate(members):
            img = images[b]
            hwc = img.permute(1, 2, 0).numpy() if hasattr(img, 'permute') else img
            block[i, :hwc.shape[0], :hwc.shape[1]] = hwc
    return flat


__all__ = ['image_groups', 'ResizeJob', 'ViewPlan', 'make_view_plan', 'pack_groups']

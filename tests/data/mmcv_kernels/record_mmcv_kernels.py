"""Record what mmcv 2.1.0's *compiled* CPU kernels return, for the tests of the
ops flsl_mm runs without them (``tests/test_compat_ops.py``).

Run once in an environment with compiled mmcv (``bash tools/install.sh --mmcv
compiled``), without flsl_mm imported (so that nothing is dispatched elsewhere):

    python tests/data/mmcv_kernels/record_mmcv_kernels.py

It writes ``mmcv_2.1.0_cpu_kernels.npz`` beside itself: inputs and outputs (a
numpy archive, no pickle: nested dicts and lists flattened to ``a/0/b`` keys;
:func:`load_record` gives them back as dicts, lists, tensors and Python scalars) of

* ``mmcv.ops.nms``: random boxes with distinct and with tied scores, IoU
  thresholds 0.3 / 0.5 / 0.7, ``offset`` 0 and 1, an IoU equal to the threshold,
  no boxes; ``nms`` with ``score_threshold`` / ``max_num``; ``batched_nms`` with
  class offsets, its per-class loop (``split_thr``) and class-agnostic;
* ``mmcv.ops.roi_align``: values and input gradients, ``aligned`` True / False,
  ``sampling_ratio`` 0 / 2, strides 4 / 16, RoIs over the border, entirely
  outside, sub-pixel, zero-size and the whole image; ``RoIAlign`` as mmdet's
  RoI extractors build it;
* ``mmcv.ops.soft_nms`` (linear, gaussian, naive; offsets, min scores, ties, no
  boxes) and ``batched_nms`` with ``type='soft_nms'``; ``mmcv.ops.nms_match``.

(Compiled mmcv 2.1.0 has no CPU kernels for the focal losses and the
multi-scale deformable attention: those are checked against mmdet's / mmcv's
own pure-PyTorch definitions, ``tests/test_compat_ops.py``.)
"""
import os
import sys
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent / 'mmcv_2.1.0_cpu_kernels.npz'


def _flatten(value, key: str, out: dict) -> None:
    if isinstance(value, dict):
        for name, item in value.items():
            if '/' in name or name.isdigit():
                raise ValueError(f'{key}/{name}: not a record key')
            _flatten(item, f'{key}/{name}' if key else name, out)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _flatten(item, f'{key}/{i}', out)
    elif isinstance(value, torch.Tensor):
        if value.dim() == 0:  # 0-d arrays are read back as Python scalars
            raise ValueError(f'{key}: a 0-d tensor; store it as a Python number')
        out[key] = value.detach().cpu().numpy()
    else:
        out[key] = np.asarray(value)


def save_record(record: dict, path: Path) -> None:
    flat: dict = {}
    _flatten(record, '', flat)
    np.savez_compressed(path, **flat)


def _lists(node):
    if not isinstance(node, dict):
        return node
    node = {name: _lists(item) for name, item in node.items()}
    if node and all(name.isdigit() for name in node):
        return [node[str(i)] for i in range(len(node))]
    return node


def load_record(path: Path = OUT) -> dict:
    """The record as written: tensors (dtype and shape kept), Python scalars
    and strings, in their dicts and lists (tuples come back as lists)."""
    root: dict = {}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            *parents, name = key.split('/')
            node = root
            for part in parents:
                node = node.setdefault(part, {})
            value = data[key]
            node[name] = value.item() if value.ndim == 0 else torch.from_numpy(value)
    return _lists(root)


def random_boxes(n, seed, ties=False, size=100.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 3 + 0.5
    if ties:  # few distinct values: a freshly initialised RPN
        scores = torch.randint(0, 5, (n,), generator=g).float()
    else:
        scores = torch.randperm(n, generator=g).float() / n + 0.01
    return torch.cat([xy, xy + wh], dim=1), scores


def awkward_rois(feat_hw, stride, seed):
    h, w = feat_hw[0] * stride, feat_hw[1] * stride
    g = torch.Generator().manual_seed(seed)
    n = 40
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w, h])
    wh = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) / 2 + 1
    special = torch.tensor([
        [-20., -15., 30., 25.],             # over the top-left border
        [w - 10, h - 12, w + 40, h + 30],   # over the bottom-right border
        [-200., -200., -150., -150.],       # entirely outside
        [12.3, 7.7, 12.6, 8.1],             # sub-pixel
        [5., 5., 5., 5.],                   # zero size
        [0., 0., w, h],                     # the whole image
    ])
    boxes = torch.cat([torch.cat([xy, xy + wh], 1), special])
    batch = torch.randint(0, 2, (len(boxes), 1), generator=g).float()
    return torch.cat([batch, boxes], 1)


def nms_cases(ops):
    cases = []
    for seed in range(20):
        for iou in (0.3, 0.5, 0.7):
            ties = seed % 2 == 1
            offset = (seed // 2) % 2
            boxes, scores = random_boxes(300, seed=seed * 10 + int(iou * 10), ties=ties)
            dets, keep = ops.nms(boxes, scores, iou, offset=offset)
            cases.append(dict(boxes=boxes, scores=scores, iou=iou, offset=offset,
                              dets=dets, keep=keep))
    equal = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 5.]])  # IoU = 0.5
    for iou in (0.5, 0.49):
        scores = torch.tensor([0.9, 0.8])
        dets, keep = ops.nms(equal, scores, iou)
        cases.append(dict(boxes=equal, scores=scores, iou=iou, offset=0, dets=dets,
                          keep=keep))
    dets, keep = ops.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    cases.append(dict(boxes=torch.zeros(0, 4), scores=torch.zeros(0), iou=0.5,
                      offset=0, dets=dets, keep=keep))
    return cases


def wrapper_cases(ops):
    boxes, scores = random_boxes(600, seed=3)
    labels = torch.randint(0, 5, (600,), generator=torch.Generator().manual_seed(1))
    cfg = dict(type='nms', iou_threshold=0.5)
    out = dict(boxes=boxes, scores=scores, labels=labels)
    out['nms_thr_max'] = ops.nms(boxes, scores, 0.5, score_threshold=0.3, max_num=50)
    out['batched'] = ops.batched_nms(boxes, scores, labels, cfg)
    out['batched_split'] = ops.batched_nms(boxes, scores, labels,
                                           dict(cfg, split_thr=100))
    out['batched_agnostic'] = ops.batched_nms(boxes, scores, labels, cfg,
                                              class_agnostic=True)
    return out


def roi_align_cases(ops):
    cases = []
    for aligned in (True, False):
        for sampling_ratio in (0, 2):
            for stride in (4, 16):
                feat_hw = (96 // stride + 3, 128 // stride + 1)
                g = torch.Generator().manual_seed(stride + sampling_ratio)
                feats = torch.randn(2, 4, *feat_hw, generator=g)
                rois = awkward_rois(feat_hw, stride, seed=stride)
                grad_out = torch.randn(len(rois), 4, 7, 7, generator=g)
                x = feats.clone().requires_grad_(True)
                y = ops.roi_align(x, rois, (7, 7), 1.0 / stride, sampling_ratio,
                                  'avg', aligned)
                (y * grad_out).sum().backward()
                cases.append(dict(aligned=aligned, sampling_ratio=sampling_ratio,
                                  stride=stride, feats=feats, rois=rois,
                                  grad_out=grad_out, out=y.detach(), grad=x.grad))
    return cases


def roi_align_module_case(ops):
    feats = torch.randn(1, 16, 20, 24, generator=torch.Generator().manual_seed(2))
    rois = awkward_rois((20, 24), 8, seed=8)
    rois[:, 0] = 0
    layer = ops.RoIAlign(7, spatial_scale=1 / 8, sampling_ratio=0)
    return dict(feats=feats, rois=rois, out=layer(feats, rois))


def soft_nms_cases(ops):
    """soft-NMS (mmcv's CPU kernel): the three decays, thresholds, offsets,
    min scores, distinct and tied scores; no boxes; batched_nms with it."""
    cases = []
    for seed in range(6):
        for method in ('linear', 'gaussian', 'naive'):
            boxes, scores = random_boxes(120, seed=100 + seed, ties=seed % 2 == 1)
            iou, sigma = (0.3, 0.5) if seed < 3 else (0.5, 0.8)
            min_score = 1e-3 if seed % 3 else 0.3
            offset = seed % 2
            dets, keep = ops.soft_nms(boxes, scores, iou, sigma, min_score, method,
                                      offset)
            cases.append(dict(boxes=boxes, scores=scores, iou=iou, sigma=sigma,
                              min_score=min_score, method=method, offset=offset,
                              dets=dets, keep=keep))
    dets, keep = ops.soft_nms(torch.zeros(0, 4), torch.zeros(0), 0.3)
    cases.append(dict(boxes=torch.zeros(0, 4), scores=torch.zeros(0), iou=0.3,
                      sigma=0.5, min_score=1e-3, method='linear', offset=0,
                      dets=dets, keep=keep))
    return cases


def soft_nms_batched_case(ops):
    boxes, scores = random_boxes(300, seed=7)
    labels = torch.randint(0, 4, (300,), generator=torch.Generator().manual_seed(7))
    cfg = dict(type='soft_nms', iou_threshold=0.5, min_score=0.05)
    dets, keep = ops.batched_nms(boxes, scores, labels, cfg)
    return dict(boxes=boxes, scores=scores, labels=labels, dets=dets, keep=keep)


def nms_match_cases(ops):
    """nms_match (mmcv's CPU kernel): groups of each kept box."""
    cases = []
    for seed in range(6):
        boxes, scores = random_boxes(150, seed=200 + seed, ties=seed % 2 == 1)
        iou = (0.3, 0.5, 0.7)[seed % 3]
        dets = torch.cat([boxes, scores[:, None]], 1)
        cases.append(dict(dets=dets, iou=iou, groups=ops.nms_match(dets, iou)))
    return cases


def main() -> int:
    if 'flsl_mm' in sys.modules:
        raise SystemExit('run without flsl_mm imported')
    from mmcv import __version__ as mmcv_version
    from mmcv import ops
    from mmcv.utils import ext_loader
    ext = ext_loader.load_ext('_ext', ['nms'])
    if 'flsl_mm' in (getattr(ext, '__file__', '') or ''):
        raise SystemExit('mmcv._ext is flsl_mm\'s stand-in: compiled mmcv needed')
    torch.set_num_threads(1)
    record = dict(
        mmcv=str(mmcv_version), torch=str(torch.__version__),
        ext=os.path.basename(ext.__file__),
        nms=nms_cases(ops), nms_wrappers=wrapper_cases(ops),
        roi_align=roi_align_cases(ops), roi_align_module=roi_align_module_case(ops),
        soft_nms=soft_nms_cases(ops), soft_nms_batched=soft_nms_batched_case(ops),
        nms_match=nms_match_cases(ops))
    save_record(record, OUT)
    print(f'wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB): mmcv {mmcv_version} '
          f'({record["ext"]}), torch {torch.__version__}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

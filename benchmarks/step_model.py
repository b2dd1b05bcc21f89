#!/usr/bin/env python
"""FLOP and memory model of one FLSL pretraining step, per GPU, for the
published configs (ViT-S/16, ViT-S/8, ViT-B/16 at 64 images per GPU, their
views), and what an H100 could do with it.

* FLOPs per image: counted by ``torch.utils.flop_counter.FlopCounterMode`` over
  one real training step (student forward on its views, teacher forward on its
  view, the two mean-shift steps, both heads, the loss, and the student's
  backward) at a small batch, divided by the batch. Attention runs PyTorch's
  math kernel while counting, so that its matrix products are counted (a fused
  kernel does the same products; flash attention's backward recomputes some
  more, not counted: these are model FLOPs).
* Memory per GPU: a memory tracker (:class:`PeakMemory`: every storage the
  step allocates, followed until freed) over one training step (bf16
  autocast, fused AdamW as the published configs) on the CPU at two small
  batches, after a warm-up step (the optimiser state exists), then
  extrapolated linearly to the config's batch: parameters (student + teacher),
  buffers, optimiser state, and the peak of what the step allocates
  (activations saved for backward, gradients, temporaries). CPU kernels are
  not CUDA's (attention: PyTorch's CPU flash kernel, which like CUDA's keeps no
  N x N matrix; no cuBLAS workspace, no allocator rounding): an estimate.
* images/s per GPU at 30 %, 50 % and 70 % of an H100 SXM's dense bf16 peak
  (989.4 TFLOP/s), next to the 1,111 images/s target (300 epochs of ImageNet on
  one 8-GPU node in 12 hours).

    python benchmarks/step_model.py [--batches 1 2] [--out step_model.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIGS = ['configs/pretrain/flsl_vit-small-p16_8xb64-300e_in1k.py',
           'configs/pretrain/flsl_vit-small-p8_8xb64-300e_in1k.py',
           'configs/pretrain/flsl_vit-base-p16_8xb64-300e_in1k.py']
H100_BF16_DENSE = 989.4e12  # FLOP/s, H100 SXM5 tensor cores, no sparsity
TARGET = 1111  # images/s per GPU: 300 x 1,281,167 images / (12 h x 8 GPUs)
FRACTIONS = (0.3, 0.5, 0.7)


def views_of(cfg) -> dict:
    """The config's views: sizes, query counts per student view, batch."""
    from flsl_mm.datasets import query_mask
    view = next(t for t in cfg.train_dataloader.dataset.pipeline
                if t['type'] == 'FLSLMultiView')
    patch = view.get('patch_size', 16)
    g, loc = view.get('global_size', 224), view.get('local_size', 96)
    masks = [query_mask(g // patch, view.get('global_window', 3))] * \
        view.get('num_global_crops', 1)
    masks += [query_mask(loc // patch, view.get('local_window', 2))] * \
        view.get('num_local_crops', 2)
    return dict(patch=patch, teacher=g,
                students=[g] * view.get('num_global_crops', 1)
                + [loc] * view.get('num_local_crops', 2),
                queries=[int(m.sum()) for m in masks], masks=masks,
                batch=cfg.train_dataloader.batch_size)


def build(cfg):
    """The config's model (its loss schedules at their start values)."""
    import torch
    from mmengine.logging import MessageHub
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    MessageHub.get_current_instance().update_info('max_iters', 1000)
    return model


def batch_of(views: dict, batch: int):
    import torch
    inputs = [torch.randn(batch, 3, views['teacher'], views['teacher'])]
    inputs += [torch.randn(batch, 3, s, s) for s in views['students']]
    index = [torch.from_numpy(m.nonzero()[0]).expand(batch, -1).contiguous()
             for m in views['masks']]
    return inputs, index


def step(model, opt, inputs, index, autocast: bool):
    """One training step: losses, backward, optimiser step, teacher update."""
    import torch
    model.schedule_applied()
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        losses = model.loss(inputs, None, query_index=index)
    loss = sum(v for k, v in losses.items() if k.startswith('loss'))
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    model.update_teacher()


def count_flops(model, views, batch: int) -> dict:
    """Forward and backward FLOPs of one step at ``batch``, per image."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    inputs, index = batch_of(views, batch)
    model.monitors_due = False
    with sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as fwd:
            losses = model.loss(inputs, None, query_index=index)
            loss = sum(v for k, v in losses.items() if k.startswith('loss'))
        with FlopCounterMode(display=False) as bwd:
            loss.backward()
    model.zero_grad(set_to_none=True)
    model.update_teacher()  # the step the loss call counted
    return dict(forward=fwd.get_total_flops() / batch,
                backward=bwd.get_total_flops() / batch)


class PeakMemory:
    """A memory tracker for any device: the bytes of the tensor storages
    allocated while active that are still alive, and their peak (storages are
    followed by weak references, as PyTorch's own trackers do)."""

    def __init__(self) -> None:
        import weakref

        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.weak import WeakIdKeyDictionary
        tracker = self
        self.live = self.peak = 0
        self.phase, self.phases = None, {}  # the peak of each named phase
        self._storages = WeakIdKeyDictionary()

        def release(nbytes):
            tracker.live -= nbytes

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                import torch
                out = func(*args, **(kwargs or {}))
                for t in (out if isinstance(out, (tuple, list)) else [out]):
                    if not isinstance(t, torch.Tensor):
                        continue
                    storage = t.untyped_storage()
                    if storage in tracker._storages or storage.nbytes() == 0:
                        continue
                    tracker._storages[storage] = storage.nbytes()
                    tracker.live += storage.nbytes()
                    weakref.finalize(storage, release, storage.nbytes())
                tracker.peak = max(tracker.peak, tracker.live)
                if tracker.phase is not None:
                    tracker.phases[tracker.phase] = max(
                        tracker.phases.get(tracker.phase, 0), tracker.live)
                return out
        self.mode = Mode()

    def start(self, phase: str) -> None:
        """From now on the peak counts for ``phase``."""
        self.phase = phase
        self.phases[phase] = self.live

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


def track_memory(model, opt, views, batch: int) -> dict:
    """One bf16 step at ``batch`` (MiB): what existed before (parameters,
    buffers, optimiser state) and the peak of what the step allocates
    (activations, gradients, temporaries)."""
    import torch
    inputs, index = batch_of(views, batch)
    step(model, opt, inputs, index, autocast=True)  # the optimiser state exists
    tracker = PeakMemory()
    model.schedule_applied()
    with tracker:
        tracker.start('forward_backward')
        with torch.autocast('cpu', dtype=torch.bfloat16):
            losses = model.loss(inputs, None, query_index=index)
        sum(v for k, v in losses.items() if k.startswith('loss')).backward()
        del losses
        tracker.start('optimizer')
        opt.step()
        opt.zero_grad(set_to_none=True)
        model.update_teacher()
    mib = 2.0**-20
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    state = sum(t.numel() * t.element_size() for s in opt.state.values()
                for t in s.values() if hasattr(t, 'numel'))
    grads = sum(p.numel() * p.element_size() for p in model.parameters()
                if p.requires_grad)
    static = params + buffers + state
    return dict(param=params * mib, buffer=buffers * mib, opt=state * mib,
                grad=grads * mib, static=static * mib,
                forward_backward=tracker.phases['forward_backward'] * mib,
                optimizer=tracker.phases['optimizer'] * mib)


def model_row(config: str, batches: tuple[int, int]) -> dict:
    import torch
    from mmengine.config import Config
    cfg = Config.fromfile(str(REPO / config))
    views = views_of(cfg)
    model = build(cfg)
    student = sum(p.numel() for p in model.backbone.parameters()) + \
        sum(p.numel() for p in model.head.parameters())
    flops = count_flops(model, views, batches[0])
    model = build(cfg)  # fresh for the memory (same weights)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                            lr=1e-4, fused=True)
    mem = {b: track_memory(model, opt, views, b) for b in batches}
    (b0, m0), (b1, m1) = sorted(mem.items())
    big = views['batch']
    # the forward + backward peak grows with the batch, the optimiser's does not
    slope = (m1['forward_backward'] - m0['forward_backward']) / (b1 - b0)
    fixed = m0['forward_backward'] - slope * b0
    peak = m0['static'] + max(fixed + slope * big, m0['optimizer'])
    per_image = flops['forward'] + flops['backward']
    return dict(
        config=Path(config).name, patch=views['patch'],
        arch=cfg.model.backbone.arch, teacher_view=views['teacher'],
        student_views=views['students'], queries=views['queries'], batch=big,
        student_params_m=round(student / 1e6, 2),
        gflops_per_image=round(per_image / 1e9, 2),
        gflops_forward=round(flops['forward'] / 1e9, 2),
        gflops_backward=round(flops['backward'] / 1e9, 2),
        memory_mib=dict(
            params=round(m0['param'], 1), grads=round(m0['grad'], 1),
            optimizer=round(m0['opt'], 1), buffers=round(m0['buffer'], 1),
            per_image=round(slope, 1), step_fixed=round(fixed, 1),
            optimizer_step_peak=round(m0['optimizer'], 1),
            peak_at_batch=round(peak, 0),
            measured={str(b): {k: round(v, 1) for k, v in m.items()}
                      for b, m in mem.items()}),
        images_per_s={f'{int(f * 100)}%': round(f * H100_BF16_DENSE / per_image)
                      for f in FRACTIONS},
        target_mfu=round(TARGET * per_image / H100_BF16_DENSE, 4))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--configs', nargs='+', default=CONFIGS)
    p.add_argument('--batches', type=int, nargs=2, default=[1, 2],
                   help='the two small batches measured on the CPU')
    p.add_argument('--out', help='write the rows as JSON here')
    args = p.parse_args(argv)
    import torch

    import flsl_mm  # noqa: F401
    start = time.time()
    rows = [model_row(c, tuple(args.batches)) for c in args.configs]
    print(f'FLSL step model (torch {torch.__version__}, CPU-measured, '
          f'{time.time() - start:.0f} s); H100 SXM dense bf16 peak 989.4 TFLOP/s, '
          f'target {TARGET} img/s per GPU')
    print('| model | views (queries) | GFLOP / image (fwd + bwd) | memory / GPU at '
          'batch 64: params + grads + AdamW, peak | img/s at 30 / 50 / 70 % of peak '
          '| target = MFU |')
    print('|---|---|---|---|---|---|')
    for r in rows:
        m = r['memory_mib']
        ips = ' / '.join(f'{v:,}' for v in r['images_per_s'].values())
        name = f"ViT-{str(r['arch'])[0].upper()}/{r['patch']}"
        print(f"| {name} | {r['teacher_view']} + {' + '.join(map(str, r['student_views']))}"
              f" ({' + '.join(map(str, r['queries']))}) | {r['gflops_per_image']} "
              f"({r['gflops_forward']} + {r['gflops_backward']}) | "
              f"{m['params']:.0f} + {m['grads']:.0f} + {m['optimizer']:.0f} MiB; "
              f"{m['peak_at_batch'] / 1024:.1f} GiB ({m['per_image']:.0f} MiB / image) | "
              f"{ips} | {100 * r['target_mfu']:.1f} % |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python
"""One FLSL training step three ways, on the CPU or a GPU: what decides its GPU
speed, measured in one run.

A full step from a collated batch: the data preprocessor (and the views, on the
device path), the student and teacher forwards, the loss, backward, the
per-parameter clipping, the optimiser step and the EMA update; ViT-S/16 of the
published config (K 4096, views 224 + 224 + 2 x 96, 16 + 9 + 9 queries), batch
``--batch``, on generated 375 x 500 JPEGs through the real pipelines:

* ``loader views``: the published config's path (views made by the loader
  workers with PIL; ``flsl_collate``, ``MultiViewDataPreprocessor``, fused
  AdamW, flsl_mm's hooks' clipping and EMA);
* ``device views``: the ``-gpuaug`` path (``pack_images_collate``,
  ``DeviceViewPreprocessor``);
* ``reference-style``: the same model with the released code's per-iteration
  habits as FLSL_SPEC sections 4, 6 and 7 describe its training loop -- the
  query masks turned into indices on the host every iteration, mmpretrain's
  ``SelfSupDataPreprocessor``, the loss read on the host every iteration
  (finiteness check and logging of the three terms), the per-parameter
  clipping with each norm read and compared on the host, unfused AdamW, the EMA
  as a Python loop over the parameters. Not the authors' code: their habits,
  on our model, to count what they cost.

Per way: host synchronisations per step (what would stall a GPU, counted by
``HostSyncCounter``), host-to-device copies per step, graph breaks of the
model step under ``torch.compile`` (``torch._dynamo.explain``), recompilations
over the timed steps with ``--compile-backend`` (the schedules change every
step), and the time per step (eager, and compiled).

    python benchmarks/pretrain_step.py [--batch 8] [--iters 3] [--device cpu|cuda]
        [--compile-backend inductor|aot_eager|none] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIG = REPO / 'configs/pretrain/flsl_vit-small-p16_8xb64-300e_in1k.py'
WAYS = ('loader views', 'device views', 'reference-style')


def build(device: str, fused: bool, compile_backend: str | None = None):
    """The published ViT-S/16 FLSL model on ``device`` and its AdamW."""
    import torch
    from mmengine.config import Config
    from mmengine.logging import MessageHub
    from mmengine.registry import MODELS
    cfg = Config.fromfile(str(CONFIG))
    model_cfg = cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else dict(cfg.model)
    model_cfg.pop('data_preprocessor')
    if compile_backend:
        model_cfg['compile'] = dict(backend=compile_backend)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg).to(device)
    MessageHub.get_current_instance().update_info('max_iters', 1000)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                            lr=1e-4, weight_decay=0.04, fused=fused)
    return model, opt


def batches(paths, on_device: bool, batch: int, count: int, reference: bool):
    from mmengine.dataset import default_collate

    from view_loader import SeededImages, collate_of, pipeline
    data = SeededImages(pipeline('flsl', on_device), paths)
    collate = default_collate if reference else collate_of('flsl', on_device)
    return [collate([data[i * batch + j] for j in range(batch)]) for i in range(count)]


def reference_clip(params, clip: float) -> None:
    """Per-parameter clipping as DINO-lineage code writes it: each norm read on
    the host, a host branch per parameter."""
    for p in params:
        if p.grad is not None:
            norm = p.grad.data.norm(2)
            norms = norm.item()  # noqa: F841  (the released loop keeps them)
            coef = clip / (norm + 1e-6)
            if coef < 1:
                p.grad.data.mul_(coef)


def run(way: str, model, opt, pre, batch, device: str, sync) -> dict:
    """One full training step of ``way``; returns the losses (device tensors)."""
    import torch
    from flsl_mm.engine.hooks.grad_hooks import clip_grad_per_param
    model.schedule_applied()
    data = pre(batch, training=True)
    losses = model(**data, mode='loss')
    loss = sum(v for k, v in losses.items() if k.startswith('loss'))
    if way == 'reference-style':
        if not math.isfinite(loss.item()):
            raise FloatingPointError('non-finite loss')
        {k: v.item() for k, v in losses.items() if k.startswith('loss')}  # logging
    loss.backward()
    params = [p for p in model.parameters() if p.requires_grad]
    if way == 'reference-style':
        reference_clip(params, 3.0)
    else:
        clip_grad_per_param(params, 3.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    if way == 'reference-style':
        m = 1 - float(model.teacher.student_weight(model.teacher.host_steps, 1000))
        with torch.no_grad():
            for t, s in zip(model.teacher.module.parameters(),
                            model._student().parameters()):
                t.data.mul_(m).add_((1 - m) * s.detach().data)
        model.teacher.host_steps += 1
        model._calls_since['FLSLTeacherUpdateHook'] = 0
    else:
        model.update_teacher()
    return losses


def graph_breaks(way: str, model, pre, batch) -> int:
    """Graph breaks of the model step under ``torch.compile``: the views ->
    losses step (``_step``; the device views stay eager: their shapes follow
    each batch's plan), or for the reference style its forward with the
    host reads."""
    import torch
    import torch._dynamo
    data = pre(batch, training=True)
    model.monitors_due = False
    if way == 'reference-style':
        def forward(inputs, samples):
            model.schedule_applied()
            model._calls_since['FLSLTeacherUpdateHook'] = 0
            losses = model.loss(inputs, samples)
            loss = sum(v for k, v in losses.items() if k.startswith('loss'))
            if not math.isfinite(loss.item()):
                raise FloatingPointError
            return loss
        explained = torch._dynamo.explain(forward)(data['inputs'], data['data_samples'])
    else:
        tensors = model._step_inputs(data['inputs'], data['data_samples'],
                                     data.get('query_index'))
        schedule = {k: torch.full((), v, device=data['inputs'][0].device)
                    for k, v in model.scheduled_values().items()}
        explained = torch._dynamo.explain(model._step)(*tensors, schedule)
    torch._dynamo.reset()
    return explained.graph_break_count


def measure(way: str, paths, args, sync) -> dict:
    import torch

    from flsl_mm.utils.host_syncs import HostSyncCounter
    from view_loader import preprocessor_of
    on_device = way == 'device views'
    reference = way == 'reference-style'
    model, opt = build(args.device, fused=not reference)
    if reference:
        from mmpretrain.models import SelfSupDataPreprocessor
        pre = SelfSupDataPreprocessor(mean=[123.675, 116.28, 103.53],
                                      std=[58.395, 57.12, 57.375], to_rgb=True,
                                      non_blocking=True).to(args.device)
    else:
        pre = preprocessor_of(on_device, args.device)
    data = batches(paths, on_device, args.batch, args.iters + 2, reference)
    model.monitors_due = False  # a step between logging intervals
    run(way, model, opt, pre, data[0], args.device, sync)  # warm-up: optimiser state
    counter = HostSyncCounter()
    counter.mark_host(data[1], pinned=True)
    counter.mark_optimizer_state(opt)
    counter.counting = True
    with counter:
        run(way, model, opt, pre, data[1], args.device, sync)
    times = []
    for b in data[2:]:
        sync()
        start = time.perf_counter()
        run(way, model, opt, pre, b, args.device, sync)
        sync()
        times.append(time.perf_counter() - start)
    result = dict(way=way, syncs_per_step=len(counter.events),
                  copies_per_step=len(counter.transfers) + sum(
                      e.kind == 'blocking copy' for e in counter.events),
                  s_per_step=round(sum(times) / len(times), 3),
                  graph_breaks=graph_breaks(way, model, pre, data[0]),
                  sync_kinds=sorted({e.kind for e in counter.events}))
    if args.compile_backend != 'none' and not reference:
        result.update(compiled(way, paths, args, pre, data, sync))
    del model, opt
    return result


def compiled(way, paths, args, pre, data, sync) -> dict:
    """The compiled step: compilations over warm-up + timed steps, in which
    the teacher temperature (a new epoch each step) and the monitors change."""
    model, opt = build(args.device, fused=True, compile_backend=args.compile_backend)
    start = time.perf_counter()
    run(way, model, opt, pre, data[0], args.device, sync)
    sync()
    first = time.perf_counter() - start
    times = []
    for epoch, b in enumerate(data[1:], 1):
        model.loss_module.set_epoch(epoch)
        model.monitors_due = epoch % 2 == 0
        sync()
        start = time.perf_counter()
        run(way, model, opt, pre, b, args.device, sync)
        sync()
        times.append(time.perf_counter() - start)
    return dict(compile_backend=args.compile_backend,
                recompiles=model.compiled_step.compiles - 1,
                first_compiled_step_s=round(first, 1),
                compiled_s_per_step=round(sum(times) / len(times), 3))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--iters', type=int, default=3, help='timed steps per way')
    p.add_argument('--images', type=int, default=32)
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--compile-backend', default='inductor',
                   help="torch.compile backend of the compiled step ('none': skip)")
    p.add_argument('--ways', nargs='+', default=list(WAYS), choices=WAYS)
    p.add_argument('--out', help='write the results as JSON here')
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO / 'benchmarks'))
    import torch
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: torch sees no GPU here')
    import flsl_mm  # noqa: F401
    from mmengine.registry import init_default_scope

    from view_loader import make_jpegs_once
    init_default_scope('mmpretrain')
    sync = torch.cuda.synchronize if args.device == 'cuda' else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_jpegs_once(Path(tmp), args.images, (375, 500))
        rows = [measure(way, paths, args, sync) for way in args.ways]
    threads = torch.get_num_threads()
    print(f'\nFLSL ViT-S/16 step, batch {args.batch}, {args.device} '
          f'({threads} threads), torch {torch.__version__}')
    print('| way | host syncs / step | host->device copies / step | graph breaks | '
          f'recompiles ({args.compile_backend}) | s / step eager | s / step compiled |')
    print('|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['way']} | {r['syncs_per_step']} | {r['copies_per_step']} | "
              f"{r['graph_breaks']} | {r.get('recompiles', '-')} | {r['s_per_step']} | "
              f"{r.get('compiled_s_per_step', '-')} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python
"""The whole demo chain on the embedded demo data, pretrained vs random init.

  1. demo pretraining (tools/train.py): FLSL, or DINO with --pretrain-config
  2. dense probes of the teacher, and of the random-init backbone
  3. conversion (tools/model_converters/flsl_to_mmdet.py), both backbones
  4. demo Mask R-CNN fine-tuning + tools/test.py, both -> COCO box / mask AP
  5. DAVIS demo label propagation, both -> J&F
  6. (FLSL only) pretraining ablations at the same budget, probed: upsilon = 0
     (no intra-view term), gamma = 0 (no VMR), DINO centering instead of VMR
Prints one summary table (probes, AP, J&F, wall time per stage), writes it with the
JSON results and a plot of the per-iteration losses to --out-dir.

    python tools/run_demo_chain.py [--out-dir work_dirs/demo_chain] [--det-epochs 4]
    python tools/run_demo_chain.py --pretrain-config \
        configs/pretrain/dino_vit-tiny-p16_demo.py --out-dir work_dirs/demo_chain_dino
"""
import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from flsl_mm.utils.tool_runner import last_checkpoint, run_tool  # noqa: E402
PRETRAIN = 'configs/pretrain/flsl_vit-tiny-p16_demo.py'
DET = 'configs/det_coco/mask-rcnn_flsl-vit-tiny-p16_fpn_demo.py'
ABLATIONS = {
    'upsilon=0': ['model.loss.upsilon=0.0'],
    'gamma=0': ['model.loss.gamma=0.0'],
    'centering': ['model.loss.use_centering=True'],
}


def save_random_init(path: Path, seed: int, config: str = PRETRAIN) -> None:
    """A pretraining-format checkpoint of the untrained model (same seed)."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import flsl_mm  # noqa: F401
    cfg = Config.fromfile(str(REPO / config))
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=0)), path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--pretrain-config', default=PRETRAIN,
                   help='demo pretraining config: FLSL (default) or DINO '
                   '(configs/pretrain/dino_vit-tiny-p16_demo.py)')
    p.add_argument('--out-dir', default='work_dirs/demo_chain')
    p.add_argument('--data-root', default='data/flsl_demo')
    p.add_argument('--det-epochs', type=int, default=4)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--skip-ablations', action='store_true')
    p.add_argument('--pretrain-options', nargs='*', default=[],
                   help='extra --cfg-options for every pretraining run')
    args = p.parse_args(argv)
    from mmengine.config import Config
    pretrain_cfg = args.pretrain_config
    algo = Config.fromfile(str(REPO / pretrain_cfg)).model.get('type')
    if algo not in ('FLSL', 'DINO'):
        raise SystemExit(f'--pretrain-config {pretrain_cfg}: not an FLSL or DINO '
                         f'pretraining config (model type {algo!r})')
    tag_main = algo.lower()
    out = (REPO / args.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = str((REPO / args.data_root).resolve())
    from flsl_mm.datasets import ensure_demo_data
    ensure_demo_data(data)
    pre_opts = [f'train_dataloader.dataset.data_root={data}',
                f'randomness.seed={args.seed}', *args.pretrain_options]
    det_opts = [f'train_dataloader.dataset.data_root={data}',
                f'val_dataloader.dataset.data_root={data}',
                f'test_dataloader.dataset.data_root={data}',
                f'val_evaluator.ann_file={data}/annotations/instances_val.json',
                f'test_evaluator.ann_file={data}/annotations/instances_val.json',
                f'train_cfg.max_epochs={args.det_epochs}',
                f'train_cfg.val_interval={args.det_epochs}',
                f'randomness.seed={args.seed}']
    times, results = {}, {}

    def stage(name, cmd, log):
        print(f'[chain] {name} ...', flush=True)
        stdout, secs = run_tool(cmd, out / log, REPO)
        times[name] = secs
        print(f'[chain] {name}: {secs:.0f} s', flush=True)
        return stdout

    def pretrain(tag, extra):
        work = out / f'pretrain_{tag}'
        stage(f'pretrain ({tag})', ['tools/train.py', pretrain_cfg, '--work-dir', str(work),
                                    '--cfg-options', *pre_opts, *extra],
              f'pretrain_{tag}.log')
        return last_checkpoint(work), work

    def probe(tag, ckpt):
        res_file = out / f'probe_{tag}.json'
        cmd = ['tools/analysis/dense_probe.py', pretrain_cfg]
        cmd += [str(ckpt)] if ckpt is not None else ['--random-init']
        stage(f'probe ({tag})', cmd + ['--data-root', data, '--out', str(res_file),
                                       '--seed', str(args.seed)], f'probe_{tag}.log')
        results.setdefault(tag, {}).update(json.loads(res_file.read_text()))

    def finetune(tag, pre_ckpt):
        backbone = out / f'backbone_{tag}.pth'
        stage(f'convert ({tag})', ['tools/model_converters/flsl_to_mmdet.py',
                                   str(pre_ckpt), str(backbone), '--arch', 'tiny'],
              f'convert_{tag}.log')
        work = out / f'det_{tag}'
        stage(f'fine-tune Mask R-CNN ({tag})',
              ['tools/train.py', DET, '--work-dir', str(work), '--cfg-options',
               f'model.backbone.init_cfg.checkpoint={backbone}', *det_opts],
              f'det_{tag}.log')
        stdout = stage(f'test ({tag})', ['tools/test.py', DET, str(last_checkpoint(work)),
                                         '--work-dir', str(work / 'test'),
                                         '--cfg-options', *det_opts], f'test_{tag}.log')
        metrics = json.loads(re.findall(r'^\{"coco/.*\}$', stdout, re.M)[-1])
        results.setdefault(tag, {}).update(
            box_AP=metrics['coco/bbox_mAP'], mask_AP=metrics['coco/segm_mAP'])

    def davis(tag, ckpt):
        stdout = stage(f'DAVIS demo ({tag})',
                       ['tools/analysis/davis_label_propagation.py', pretrain_cfg,
                        str(ckpt), '--demo', '--data-root', str(out / 'davis_demo'),
                        '--out-dir', str(out / f'davis_{tag}')], f'davis_{tag}.log')
        head, values = re.findall(r'^(J&F-Mean.*)\n(.*)$', stdout, re.M)[-1]
        scores = dict(zip([h.strip() for h in head.split('|')],
                          [float(v) for v in values.split('|')]))
        results.setdefault(tag, {}).update(davis_JF=scores['J&F-Mean'])

    main_ckpt, main_work = pretrain(tag_main, [])
    probe(tag_main, main_ckpt)
    probe('random', None)
    random_ckpt = out / 'random_init.pth'
    save_random_init(random_ckpt, args.seed, pretrain_cfg)
    finetune(tag_main, main_ckpt)
    finetune('random', random_ckpt)
    davis(tag_main, main_ckpt)
    davis('random', random_ckpt)
    if algo == 'DINO' and not args.skip_ablations:
        print('[chain] ablations are FLSL\'s (upsilon, gamma, centering): skipped '
              'for DINO', flush=True)
    elif not args.skip_ablations:
        for tag, extra in ABLATIONS.items():
            ckpt, _ = pretrain(tag, extra)
            probe(tag, ckpt)
    from flsl_mm.analysis.training_log import plot_training_curves
    plot_training_curves(main_work, out / 'pretrain_losses.png')

    keys = sorted({k for r in results.values() for k in r},
                  key=lambda k: (not k.startswith(('knn', 'linear', 'cluster')),
                                 k.startswith('davis'), k))
    lines = ['| metric | ' + ' | '.join(results) + ' |',
             '|---|' + '---|' * len(results)]
    for k in keys:
        cells = [f'{r[k]:.4f}' if k in r else '-' for r in results.values()]
        lines.append(f'| {k} | ' + ' | '.join(cells) + ' |')
    lines += ['', '| stage | seconds |', '|---|---|']
    lines += [f'| {k} | {v:.0f} |' for k, v in times.items()]
    lines.append(f'| total | {sum(times.values()):.0f} |')
    table = '\n'.join(lines)
    print(table)
    (out / 'summary.md').write_text(table + '\n')
    (out / 'results.json').write_text(json.dumps(dict(results=results, seconds=times),
                                                 indent=1))
    print(f'[chain] wrote {out / "summary.md"}, results.json, pretrain_losses.png')
    return 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python
"""Does FLSL learn? Pretrain a config over several seeds, with ablations and the DINO
baseline, probe each teacher densely and compare with the random-init backbone of
the same seeds.

For every seed: FLSL (the config as it is), upsilon = 0 (no intra-view term),
gamma = 0 (no VMR), DINO (``--dino-config``: DINO at the same budget), each
pretrained with ``tools/train.py`` and probed with
``tools/analysis/dense_probe.py``; the random-init backbones (``random``: the FLSL
config's ViT, fixed sin-cos position embedding; ``random-dino``: DINO's, learned
position embedding at its random init) are probed with the same seeds. Writes, to
--out-dir:

  results.json   every run's probe values (teacher; --student: the student too),
                 final monitors and wall time
  table.md       mean +- std over seeds per variant and probe, and for each probe
                 the margin over random init in units of the seed-to-seed spread
                 (the larger of the two sample standard deviations)
  curves_<variant>.png  losses and health monitors of every seed, overlaid
  probe_curves.png  the teacher's probe curves during pretraining (what the
                 study configs' DenseProbeHook logged, docs/probes.md) of every
                 trained run, with the random-init values as dashed lines

Runs already finished (their probe JSON exists) are kept, so an interrupted study
resumes where it stopped. See docs/benchmarks.md ("Does FLSL learn?").

    python tools/analysis/learning_study.py \
        configs/pretrain/flsl_vit-tiny-p16_1xb64-10e_demo-rc.py [--seeds 0 1 2]
    # on a GPU: pretraining on CUDA in fp16, probes (k-NN, linear) on CUDA too
    python tools/analysis/learning_study.py CONFIG --device cuda --amp
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from flsl_mm.utils.tool_runner import last_checkpoint, run_tool  # noqa: E402

# pretraining arms: the config they use ('flsl': the study's config, 'dino':
# --dino-config) and their overrides of it
VARIANTS = {
    'flsl': ('flsl', []),
    'upsilon=0': ('flsl', ['model.loss.upsilon=0.0']),
    'gamma=0': ('flsl', ['model.loss.gamma=0.0']),
    'dino': ('dino', []),
}
# random-init arms (probed, not trained): the backbone of that config, same seed
RANDOM = {'random': 'flsl', 'random-dino': 'dino'}
DINO_CONFIG = 'configs/pretrain/dino_vit-tiny-p16_1xb64-10e_demo-rc.py'


def arm_of(variant: str) -> str:
    """The config a variant uses: 'flsl' (the study's) or 'dino' (--dino-config)."""
    return VARIANTS[variant][0] if variant in VARIANTS else RANDOM[variant]
PROBES = ['knn_miou', 'linear_miou', 'cluster_miou', 'bbox_knn_top1@20']


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='FLSL pretraining config (demo data set)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--variants', nargs='+', default=list(VARIANTS) + list(RANDOM),
                   choices=list(VARIANTS) + list(RANDOM))
    p.add_argument('--dino-config', default=DINO_CONFIG,
                   help='DINO pretraining config of the dino / random-dino arms '
                   '(the same data as the study config)')
    p.add_argument('--out-dir', default='work_dirs/learning_study')
    p.add_argument('--device', choices=['cpu', 'cuda'], default='cpu',
                   help='where to pretrain and probe (token extraction, k-NN and '
                   'linear probes; clustering stays on the CPU)')
    p.add_argument('--amp', action='store_true',
                   help='fp16 pretraining (with --device cuda; tools/train.py --amp)')
    p.add_argument('--student', action='store_true',
                   help='also probe each run\'s student backbone (the teacher is '
                   'always probed)')
    p.add_argument('--cfg-options', nargs='+', default=[],
                   help='extra key=value overrides for every pretraining run')
    return p.parse_args(argv)


def summarise(results: dict, seeds: list[int], key: str = 'probes') -> str:
    """Markdown table: mean +- std per variant, margin over random in spreads.
    ``key`` is ``'probes'`` (teachers) or ``'probes_student'``; random init has
    one backbone (teacher = student at initialisation) and always uses ``probes``.
    Every trained variant is compared with the random init of its own config
    (``random-dino`` for DINO, when probed; ``random`` otherwise)."""
    def key_of(v):
        return 'probes' if v in RANDOM else key

    def vals_of(v, probe):
        return [results[v][str(s)][key_of(v)][probe] for s in seeds]

    variants = [v for v in results
                if all(str(s) in results[v] and key_of(v) in results[v][str(s)]
                       for s in seeds)]
    lines = ['| probe | ' + ' | '.join(variants) + ' |',
             '|---|' + '---|' * len(variants)]
    stats = {}
    for probe in PROBES:
        cells = []
        for v in variants:
            vals = vals_of(v, probe)
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            stats[v, probe] = (statistics.fmean(vals), sd)
            cells.append(f'{stats[v, probe][0]:.4f} +- {sd:.4f}')
        lines.append(f'| {probe} | ' + ' | '.join(cells) + ' |')
    def baseline(v):  # the random init of the variant's own arm, if probed
        own = next((r for r, arm in RANDOM.items() if arm == arm_of(v)), None)
        return own if own in variants else 'random'

    if 'random' in variants and len(seeds) > 1:
        lines += ['', '| probe | variant | margin over random | spread | '
                  'margin / spread |', '|---|---|---|---|---|']
        for probe in PROBES:
            for v in variants:
                if v in RANDOM:
                    continue
                base = baseline(v)
                r_mean, r_sd = stats[base, probe]
                mean, sd = stats[v, probe]
                spread = max(sd, r_sd)
                ratio = (mean - r_mean) / spread if spread > 0 else float('inf')
                name = v if base == 'random' else f'{v} vs {base}'
                lines.append(f'| {probe} | {name} | {mean - r_mean:+.4f} | '
                             f'{spread:.4f} | {ratio:+.1f} |')
    return '\n'.join(lines)


def probe_curve(rows: list[dict]) -> dict[str, list]:
    """``{probe: [[iteration, value], ...]}`` of the teacher's probes a run's
    DenseProbeHook logged (empty when the config has no hook)."""
    curve: dict[str, list] = {}
    for row in rows:
        for key, value in row.items():
            name = key[len('probe/'):]
            if key.startswith('probe/') and name.endswith('_miou') and \
                    not name.startswith(('best_', 'student_')):
                curve.setdefault(name, []).append([row['iter'], value])
    return curve


def plot_probe_curves(results: dict, out_png: Path) -> bool:
    """One panel per probe: every trained run's curve (colour per variant),
    the random-init arms' values as dashed lines. False when no run has one."""
    curves = {(v, s): e['probe_curve'] for v, seeds in results.items()
              for s, e in seeds.items() if e.get('probe_curve')}
    if not curves:
        return False
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    probes = sorted({p for c in curves.values() for p in c})
    fig, axes = plt.subplots(1, len(probes), figsize=(5 * len(probes), 3.6),
                             squeeze=False)
    colours = {}
    for ax, probe in zip(axes[0], probes):
        for (variant, seed), curve in sorted(curves.items()):
            if probe not in curve:
                continue
            colour = colours.setdefault(variant, f'C{len(colours)}')
            pts = curve[probe]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour,
                    marker='.', label=f'{variant} seed {seed}')
        for r, name in enumerate(RANDOM):
            vals = [e['probes'][probe] for e in results.get(name, {}).values()
                    if probe in e.get('probes', {})]
            if vals:
                ax.axhline(statistics.fmean(vals), color='k', ls='--' if r == 0
                           else ':', lw=1, label=f'{name} (mean of seeds)')
        ax.set_title(f'teacher {probe}')
        ax.set_xlabel('iteration')
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=70)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.amp and args.device != 'cuda':
        raise SystemExit('--amp needs --device cuda (fp16 autocast on a GPU)')
    if args.device == 'cuda':
        import torch
        if not torch.cuda.is_available():
            raise SystemExit('--device cuda: no CUDA GPU is visible to torch')
    from mmengine.config import Config

    import flsl_mm  # noqa: F401
    from flsl_mm.analysis.training_log import (final_values, plot_training_curves,
                                               read_probe_rows, read_scalars)
    from flsl_mm.datasets import ensure_demo_data
    cfg = Config.fromfile(args.config)
    dataset = cfg.train_dataloader.dataset
    data_root = str((REPO / dataset.data_root).resolve())
    ensure_demo_data(data_root, **dataset.get('demo_kwargs', {}))
    out = (REPO / args.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = str(Path(args.config).resolve())
    configs = dict(flsl=config, dino=str((REPO / args.dino_config).resolve()))
    if any(arm_of(v) == 'dino' for v in args.variants):
        dino_cfg = Config.fromfile(configs['dino'])
        if dino_cfg.model.get('type') != 'DINO':
            raise SystemExit(f'--dino-config {args.dino_config}: not a DINO config')
        dino_data = str((REPO / dino_cfg.train_dataloader.dataset.data_root).resolve())
        if dino_data != data_root:
            raise SystemExit(f'--dino-config {args.dino_config} trains on {dino_data}, '
                             f'the study config on {data_root}: the arms must see '
                             'the same data')
    study = dict(config=config, dino_config=configs['dino'],
                 cfg_options=args.cfg_options, amp=args.amp)
    study_file = out / 'study.json'
    if study_file.exists():
        before = json.loads(study_file.read_text())
        if before != study:
            raise SystemExit(f'{out} holds a study of {before}, not of {study}: '
                             'choose another --out-dir')
    else:
        study_file.write_text(json.dumps(study, indent=1))
    results_file = out / 'results.json'
    results = json.loads(results_file.read_text()) if results_file.exists() else {}

    def save():
        tmp = results_file.with_suffix('.json.tmp')
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(results_file)

    def probe(tag, seed, extra, key, entry, step, arm='flsl'):
        probe_json = out / f'{key}_{tag}.json'
        cmd = ['tools/analysis/dense_probe.py', configs[arm], *extra,
               '--seed', str(seed),
               '--data-root', data_root, '--out', str(probe_json),
               '--device', args.device]
        what = 'student probes' if key == 'probes_student' else \
            'random-init probes' if '--random-init' in extra else 'teacher probes'
        print(f'{step}: {what} ...', flush=True)
        entry['seconds'][key] = run_tool(cmd, out / f'{key}_{tag}.log', REPO,
                                         cpu_only=args.device == 'cpu')[1]
        entry[key] = json.loads(probe_json.read_text())
        print(f'{step} {what}: ' + ', '.join(f'{k} {entry[key][k]:.4f}' for k in PROBES),
              flush=True)

    todo = [(v, s) for v in args.variants for s in args.seeds]
    for i, (variant, seed) in enumerate(todo, 1):
        step = f'[study {i}/{len(todo)}] {variant} seed {seed}'
        tag = f'{variant}_seed{seed}'
        entry = results.get(variant, {}).get(str(seed))
        if entry is not None:
            print(f'{step}: done before, kept')
        elif variant in RANDOM:
            entry = dict(seconds={})
            probe(tag, seed, ['--random-init'], 'probes', entry, step,
                  arm_of(variant))
        else:
            arm, overrides = VARIANTS[variant]
            entry = dict(seconds={})
            work = out / tag
            print(f'{step}: pretrain ...', flush=True)
            cmd = ['tools/train.py', configs[arm], '--work-dir', str(work)]
            cmd += ['--amp'] if args.amp else []
            cmd += ['--cfg-options', f'randomness.seed={seed}',
                    *overrides, *args.cfg_options]
            entry['seconds']['pretrain'] = run_tool(
                cmd, out / f'pretrain_{tag}.log', REPO,
                cpu_only=args.device == 'cpu')[1]
            entry['checkpoint'] = str(last_checkpoint(work))
            entry['monitors'] = final_values(read_scalars(work))
            entry['probe_curve'] = probe_curve(read_probe_rows(work))
            probe(tag, seed, [entry['checkpoint']], 'probes', entry, step, arm)
        results.setdefault(variant, {})[str(seed)] = entry
        save()
        if args.student and variant in VARIANTS and 'probes_student' not in entry:
            ckpt = entry.get('checkpoint') or str(last_checkpoint(out / tag))
            probe(tag, seed, [ckpt, '--student'], 'probes_student', entry, step,
                  arm_of(variant))
            save()
    for variant in results:
        works = {f'seed {s}': out / f'{variant}_seed{s}' for s in args.seeds
                 if (out / f'{variant}_seed{s}').is_dir()}
        if works:
            plot_training_curves(works, out / f'curves_{variant}.png',
                                 title=f'{Path(configs[arm_of(variant)]).stem}: '
                                 f'{variant}')
    if plot_probe_curves(results, out / 'probe_curves.png'):
        print(f'[study] probe curves of the runs: {out / "probe_curves.png"}')
    table = '### Teachers\n\n' + summarise(results, args.seeds)
    if args.student:
        table += '\n\n### Students\n\n' + summarise(results, args.seeds,
                                                      'probes_student')
    print(table)
    (out / 'table.md').write_text(table + '\n')
    print(f'[study] wrote {out / "table.md"}, {results_file.name}, curves_*.png')
    return 0


if __name__ == '__main__':
    sys.exit(main())

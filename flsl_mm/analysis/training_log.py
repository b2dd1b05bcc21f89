"""Read a pretraining run's per-iteration scalars and draw its losses and health
monitors (docs/monitors.md), one run or several overlaid (seeds, ablations)."""
from __future__ import annotations

import json
from pathlib import Path

LOSSES = ['loss', 'loss_kmeans', 'loss_vmr', 'loss_meanshift']
MONITORS = ['mon_target_entropy', 'mon_coverage', 'mon_prototypes_used',
            'mon_agreement', 'mon_sa_attention_entropy', 'mon_ca_attention_entropy',
            'mon_displacement', 'mon_token_spread', 'mon_teacher_student_dist',
            'mon_teacher_init_weight']


def _step(row: dict) -> int:
    return row.get('step', row.get('iter', 0))


def read_rows(work_dir: str | Path) -> list[dict]:
    """Every logged row of a run in ``work_dir`` (mmengine's
    ``<timestamp>/vis_data/scalars.json``), across resumes: the runs are read in
    time order and a later run's rows replace those of earlier runs from its
    first step on (a resumed run repeats what followed its checkpoint; a run
    started afresh in the same folder replaces everything)."""
    found = sorted(Path(work_dir).glob('*/vis_data/scalars.json'))
    if not found:
        raise FileNotFoundError(f'{work_dir}: no */vis_data/scalars.json (not an '
                                'mmengine work dir, or the run logged nothing)')
    rows: list[dict] = []
    for path in found:
        new = [json.loads(line) for line in path.read_text().splitlines()
               if line.strip()]
        if not new:
            continue
        first = min(_step(r) for r in new)
        rows = [r for r in rows if _step(r) < first] + new
    return rows


def read_scalars(work_dir: str | Path) -> list[dict]:
    """The training rows (those with a ``loss``) of the run in ``work_dir``
    (:func:`read_rows`)."""
    return [r for r in read_rows(work_dir) if 'loss' in r]


def read_probe_rows(work_dir: str | Path) -> list[dict]:
    """The rows :class:`DenseProbeHook` logged (``probe/*`` keys, ``iter``)."""
    return [r for r in read_rows(work_dir)
            if any(k.startswith('probe/') for k in r)]


def final_values(rows: list[dict], keys: list[str] | None = None,
                 last: int = 5) -> dict[str, float]:
    """Mean of each key over the last ``last`` logged rows that have it."""
    keys = keys or LOSSES + MONITORS
    out = {}
    for key in keys:
        vals = [r[key] for r in rows if key in r][-last:]
        if vals:
            out[key] = sum(vals) / len(vals)
    return out


def timing_summary(rows: list[dict], warmup: int = 2) -> dict:
    """Speed of a run from its per-iteration rows (``LoggerHook`` interval 1,
    window 1): median seconds per iteration and data wait over the rows after
    ``warmup`` (all rows when there are not more than ``warmup + 1``), peak GPU
    memory (mmengine's ``memory``, MiB, on CUDA), first / last loss."""
    import math
    import statistics
    if not rows:
        raise ValueError('no training iteration was logged')
    timed = rows[warmup:] if len(rows) > warmup + 1 else rows
    step = statistics.median(r['time'] for r in timed)
    data = statistics.median(r.get('data_time', 0.0) for r in timed)
    losses = [r['loss'] for r in rows]
    out = dict(iters=len(rows), s_per_iter=round(step, 4),
               it_per_s=round(1 / step, 3) if step > 0 else None,
               data_wait_s=round(data, 4), loss_first=round(losses[0], 4),
               loss_last=round(losses[-1], 4),
               loss_finite=all(math.isfinite(x) for x in losses))
    memory = [r['memory'] for r in rows if 'memory' in r]
    if memory:
        out['peak_mem_mib'] = max(memory)  # torch.cuda.max_memory_allocated
    return out


def plot_training_curves(runs: dict[str, str | Path] | str | Path,
                         out_png: str | Path, title: str | None = None) -> None:
    """Losses (first row) and monitors per iteration; ``runs`` maps a label to a
    work dir (several runs are overlaid), or is one work dir."""
    plot_curves(runs, out_png, LOSSES + MONITORS, title)


def probe_keys(rows: list[dict]) -> list[str]:
    """The mIoU / top-1 keys of probe rows (``probe/knn_miou``, ...), in order."""
    keys = []
    for r in rows:
        for k in r:
            if k.startswith('probe/') and not k.startswith('probe/best_') and \
                    ('miou' in k or 'top1' in k) and k not in keys:
                keys.append(k)
    return keys


def plot_curves(runs: dict[str, str | Path] | str | Path, out_png: str | Path,
                keys: list[str], title: str | None = None, cols: int = 4) -> list[str]:
    """One panel per key (training keys: per logged iteration; ``probe/*`` keys:
    per probe), value against iteration; ``runs`` maps a label to a work dir
    (overlaid) or is one work dir. Keys no run logged are left out; returns the
    keys drawn."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    if not isinstance(runs, dict):
        runs = {'': runs}
    data = {label: read_rows(wd) for label, wd in runs.items()}
    keys = [k for k in keys if any(k in r for rows in data.values() for r in rows)]
    if not keys:
        raise ValueError(f'none of the keys was logged by {list(runs.values())}')
    cols = min(cols, len(keys))
    nrows = -(-len(keys) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3.2 * nrows),
                             squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for label, rows in data.items():
            pts = [(r.get('iter', r.get('step')), r[key]) for r in rows if key in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label or None,
                    marker='.' if len(pts) < 30 else None)
        ax.set_title(key)
        ax.set_xlabel('iteration')
    if len(data) > 1:
        axes.flat[0].legend(fontsize=8)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis('off')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=70)
    plt.close(fig)
    return keys

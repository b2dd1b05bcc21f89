import json

import pytest

from flsl_mm.analysis.training_log import (final_values, plot_training_curves,
                                           read_scalars)


def _work_dir(path, rows):
    vis = path / '20261129_000000' / 'vis_data'
    vis.mkdir(parents=True)
    lines = [json.dumps(r) for r in rows] + [json.dumps({'coco/bbox_mAP': 0.5})]
    (vis / 'scalars.json').write_text('\n'.join(lines) + '\n')
    return path


def test_read_final_and_plot(tmp_path):
    rows = [dict(iter=i, loss=10.0 - i, mon_coverage=0.1 * i) for i in range(1, 9)]
    rows[-1]['mon_teacher_student_dist'] = 2.0
    a = _work_dir(tmp_path / 'a', rows)
    got = read_scalars(a)
    assert [r['iter'] for r in got] == list(range(1, 9))  # rows without loss dropped
    fin = final_values(got, last=4)
    assert fin['loss'] == pytest.approx((5 + 4 + 3 + 2) / 4)
    assert fin['mon_coverage'] == pytest.approx(0.1 * (5 + 6 + 7 + 8) / 4)
    assert fin['mon_teacher_student_dist'] == 2.0  # only the rows that have it
    assert 'mon_agreement' not in fin
    b = _work_dir(tmp_path / 'b', rows[:4])
    out = tmp_path / 'curves.png'
    plot_training_curves({'seed 0': a, 'seed 1': b}, out, title='t')
    assert out.stat().st_size > 1000
    plot_training_curves(a, tmp_path / 'one.png')
    assert (tmp_path / 'one.png').is_file()


def test_missing_work_dir_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='scalars.json'):
        read_scalars(tmp_path / 'nothing')


def _run(work, stamp, rows):
    vis = work / stamp / 'vis_data'
    vis.mkdir(parents=True)
    (vis / 'scalars.json').write_text(''.join(json.dumps(r) + '\n' for r in rows))


def test_a_resumed_run_is_read_across_its_restarts_and_plotted(tmp_path, repo_root):
    """Preempted at iteration 6 after a checkpoint at 4: the resumed run's rows
    replace the first run's from iteration 5 on; probe rows come along; a run
    started afresh in the folder replaces everything."""
    import subprocess
    import sys

    from flsl_mm.analysis.training_log import probe_keys, read_probe_rows, read_rows
    work = tmp_path / 'run'
    probe = lambda i, v: {'probe/knn_miou': v, 'probe/best_knn_miou': v,  # noqa
                          'probe/seconds': 1.0, 'iter': i, 'step': i}
    _run(work, '20261201_000000', [probe(0, 0.2)] +
         [dict(iter=i, step=i, loss=10.0 - i) for i in range(1, 7)] + [probe(4, 0.3)])
    _run(work, '20261201_010000', [dict(iter=i, step=i, loss=20.0 - i)
                                   for i in range(5, 9)] + [probe(8, 0.5)])
    assert [(r['iter'], r['loss']) for r in read_scalars(work)] == \
        [(1, 9.0), (2, 8.0), (3, 7.0), (4, 6.0), (5, 15.0), (6, 14.0), (7, 13.0),
         (8, 12.0)]
    assert [(r['iter'], r['probe/knn_miou']) for r in read_probe_rows(work)] == \
        [(0, 0.2), (4, 0.3), (8, 0.5)]
    assert probe_keys(read_rows(work)) == ['probe/knn_miou']
    other = tmp_path / 'other'
    _run(other, '20261201_000000', [probe(0, 0.1), dict(iter=1, step=1, loss=3.0)])
    out = tmp_path / 'curves.png'
    proc = subprocess.run([sys.executable, 'tools/analysis/plot_curves.py',
                           f'{work}=FLSL', str(other), '--out', str(out)],
                          cwd=repo_root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert 'probe/knn_miou, loss of 2 run(s)' in proc.stdout
    assert out.stat().st_size > 5000
    bad = subprocess.run([sys.executable, 'tools/analysis/plot_curves.py', str(work),
                          '--keys', 'probe/linear_miou', '--out', str(out)],
                         cwd=repo_root, capture_output=True, text=True)
    assert bad.returncode == 2 and 'none of the keys was logged' in bad.stderr
    _run(work, '20261202_000000', [dict(iter=1, step=1, loss=1.0)])  # afresh
    assert [r['loss'] for r in read_scalars(work)] == [1.0]

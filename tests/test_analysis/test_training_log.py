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

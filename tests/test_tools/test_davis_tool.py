"""tools/analysis/davis_label_propagation.py end to end on a generated DAVIS-layout
set with a tiny random ViT, --eval-only, resume, and the bad-input messages."""
import csv
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from flsl_mm.datasets.davis import make_davis_demo, write_index_png

TOOL = 'tools/analysis/davis_label_propagation.py'
CFG = 'configs/pretrain/flsl_vit-tiny-p16_demo.py'


def run(repo_root, *args, ok=True):
    proc = subprocess.run([sys.executable, TOOL, *map(str, args)], cwd=repo_root,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == ok, out[-3000:]
    return out


@pytest.fixture(scope='module')
def davis(tmp_path_factory):
    # 192 x 320 frames: not square, width a multiple of 64; objects move
    return make_davis_demo(tmp_path_factory.mktemp('davis') / 'DAVIS', num_sequences=2,
                           num_frames=5, size=(192, 320))


@pytest.fixture(scope='module')
def propagated(repo_root, davis, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp('results')
    log = run(repo_root, CFG, '--random-init', '--data-root', davis,
              '--out-dir', out_dir, '--short-side', 192)
    return out_dir, log


def global_row(path):
    rows = list(csv.reader(open(path)))
    assert rows[0] == ['J&F-Mean', 'J-Mean', 'J-Recall', 'J-Decay', 'F-Mean',
                       'F-Recall', 'F-Decay']
    return rows[1]


def test_one_palette_png_per_frame_and_official_csvs(propagated, davis):
    out_dir, log = propagated
    for seq in ('demo-00', 'demo-01'):
        gts = sorted((davis / 'Annotations/480p' / seq).glob('*.png'))
        preds = sorted((out_dir / seq).glob('*.png'))
        assert [p.name for p in preds] == [g.name for g in gts]
        gt0 = np.array(Image.open(gts[0]))
        for p in preds:
            im = Image.open(p)
            assert im.mode == 'P' and im.size == (320, 192)
            assert np.array(im).max() <= gt0.max()  # ids within range
        np.testing.assert_array_equal(np.array(Image.open(preds[0])), gt0)
    row = global_row(out_dir / 'global_results-val.csv')
    assert all(0 <= float(v) <= 1 for v in (row[0], row[1], row[4]))
    per_seq = list(csv.reader(open(out_dir / 'per-sequence_results-val.csv')))
    assert per_seq[0] == ['Sequence', 'J-Mean', 'F-Mean']
    assert [r[0] for r in per_seq[1:]] == ['demo-00_1', 'demo-01_1', 'demo-01_2']
    assert 'J&F-Mean' in log and 'frames/s' in log


def test_deterministic_and_eval_only_reproduces(repo_root, propagated, davis,
                                                tmp_path):
    out_dir, _ = propagated
    again = tmp_path / 'again'
    run(repo_root, CFG, '--random-init', '--data-root', davis, '--out-dir', again,
        '--short-side', 192)
    for p in sorted(out_dir.glob('*/*.png')):
        q = again / p.parent.name / p.name
        np.testing.assert_array_equal(np.array(Image.open(p)), np.array(Image.open(q)))
    copy = tmp_path / 'copy'
    shutil.copytree(out_dir, copy)
    (copy / 'global_results-val.csv').unlink()
    run(repo_root, '--eval-only', copy, '--data-root', davis)
    assert global_row(copy / 'global_results-val.csv') == \
        global_row(out_dir / 'global_results-val.csv')


def test_complete_sequences_are_skipped_on_resume(repo_root, propagated, davis):
    out_dir, _ = propagated
    partial = out_dir / 'demo-01' / '00003.png'
    partial.unlink()  # as if interrupted there
    log = run(repo_root, CFG, '--random-init', '--data-root', davis, '--out-dir',
              out_dir, '--short-side', 192)
    assert 'demo-00: outputs complete, skipped' in log
    assert 'propagating 1 sequences, 4 frames' in log and partial.is_file()
    assert not list(out_dir.glob('*/.*.partial'))


def test_bad_inputs_are_named(repo_root, davis, tmp_path):
    bad = tmp_path / 'bad'
    shutil.copytree(davis, bad)
    (bad / 'ImageSets/2017/val.txt').unlink()
    out = run(repo_root, CFG, '--random-init', '--data-root', bad, ok=False)
    assert 'ImageSets/2017/val.txt: missing' in out
    shutil.copy(davis / 'ImageSets/2017/val.txt', bad / 'ImageSets/2017/val.txt')
    # a sequence without annotations: warned, skipped, reported
    shutil.rmtree(bad / 'Annotations/480p/demo-01')
    out = run(repo_root, CFG, '--random-init', '--data-root', bad, '--out-dir',
              tmp_path / 'o1', '--short-side', 192)
    assert 'demo-01: no frames or no annotations' in out
    assert 'skipped (no frames or annotations): demo-01' in out
    shutil.copytree(davis / 'Annotations/480p/demo-01', bad / 'Annotations/480p/demo-01')
    # frame-count mismatch
    (bad / 'Annotations/480p/demo-01/00004.png').unlink()
    out = run(repo_root, CFG, '--random-init', '--data-root', bad, ok=False)
    assert 'Annotations/480p/demo-01: 4 annotation PNGs for 5 frames' in out
    shutil.copy(davis / 'Annotations/480p/demo-01/00004.png',
                bad / 'Annotations/480p/demo-01/00004.png')
    # a non-palette first annotation
    Image.new('RGB', (320, 192)).save(bad / 'Annotations/480p/demo-00/00000.png')
    out = run(repo_root, CFG, '--random-init', '--data-root', bad, '--out-dir',
              tmp_path / 'o2', '--short-side', 192, ok=False)
    assert 'demo-00/00000.png: annotation is a RGB image' in out


def test_eval_only_names_missing_or_missized_predictions(repo_root, propagated,
                                                         davis, tmp_path):
    out_dir, _ = propagated
    copy = tmp_path / 'copy'
    shutil.copytree(out_dir, copy)
    (copy / 'demo-00' / '00002.png').unlink()
    out = run(repo_root, '--eval-only', copy, '--data-root', davis, ok=False)
    assert 'demo-00/00002.png: prediction missing' in out
    write_index_png(copy / 'demo-00' / '00002.png', np.zeros((10, 10), np.uint8))
    out = run(repo_root, '--eval-only', copy, '--data-root', davis, ok=False)
    assert 'demo-00/00002.png: prediction is 10x10, the annotation 320x192' in out


def test_demo_runs_from_a_pretraining_checkpoint(repo_root, tmp_path):
    import torch

    from flsl_mm.models import FLSL
    model = FLSL(backbone=dict(type='FLSLViT', arch='tiny'),
                 head=dict(type='FLSLHead', in_channels=192, out_channels=32))
    torch.save(dict(state_dict=model.state_dict()), tmp_path / 'epoch_20.pth')
    out = run(repo_root, CFG, tmp_path / 'epoch_20.pth', '--demo', '--data-root',
              tmp_path / 'davis_demo', '--out-dir', tmp_path / 'out')
    assert 'propagating 3 sequences, 21 frames' in out and 'J&F-Mean' in out
    # a backbone converted for detection has no final norm: refused with the fix
    subprocess.run([sys.executable, 'tools/model_converters/flsl_to_mmdet.py',
                    tmp_path / 'epoch_20.pth', tmp_path / 'det.pth', '--arch', 'tiny'],
                   cwd=repo_root, check=True, capture_output=True)
    out = run(repo_root, CFG, tmp_path / 'det.pth', '--demo', '--data-root',
              tmp_path / 'davis_demo', '--out-dir', tmp_path / 'out2', ok=False)
    assert 'has no final norm' in out and '--keep-final-norm' in out
    subprocess.run([sys.executable, 'tools/model_converters/flsl_to_mmdet.py',
                    tmp_path / 'epoch_20.pth', tmp_path / 'tok.pth', '--arch', 'tiny',
                    '--keep-final-norm'], cwd=repo_root, check=True,
                   capture_output=True)
    run(repo_root, CFG, tmp_path / 'tok.pth', '--demo', '--data-root',
        tmp_path / 'davis_demo', '--out-dir', tmp_path / 'out3')
    a = (tmp_path / 'out' / 'global_results-val.csv').read_text()
    assert (tmp_path / 'out3' / 'global_results-val.csv').read_text() == a
